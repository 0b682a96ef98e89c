"""Protocols, table templates and the papers' published numbers (torch-free)."""
