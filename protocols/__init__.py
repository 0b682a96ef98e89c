"""Protocols, table templates and the papers' published numbers (torch-free)."""

from msabench.protocols import standard  # noqa: F401,E402
from msabench.protocols import missing_rate  # noqa: F401,E402
from msabench.protocols import dg  # noqa: F401,E402
from msabench.protocols import feature_analysis  # noqa: F401,E402
from msabench.protocols.base import PROTOCOLS, kind_of, names_of_kind, protocol_of  # noqa: F401,E402
