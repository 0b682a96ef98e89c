"""Protocols, table templates and the papers' published numbers (torch-free)."""

from msabench.protocols import standard  # noqa: F401,E402
from msabench.protocols.base import PROTOCOLS  # noqa: F401,E402
