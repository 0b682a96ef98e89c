"""Paper table templates (design 10). Registered by the reports issue; empty until then."""

from __future__ import annotations

from msabench.registry import Registry

TEMPLATES: Registry = Registry("table")
