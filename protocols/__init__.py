"""Protocols, table templates and the papers' published numbers (torch-free)."""

from msabench.protocols import (
    dg,  # noqa: F401,E402
    feature_analysis,  # noqa: F401,E402
    missing_random,  # noqa: F401,E402
    missing_rate,  # noqa: F401,E402
    standard,  # noqa: F401,E402
)
from msabench.protocols.base import PROTOCOLS, kind_of, names_of_kind, protocol_of  # noqa: F401,E402
