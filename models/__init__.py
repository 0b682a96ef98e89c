"""Model plugins. Adding a model = one file here + one import line below.

Third-party models register through the `msabench.models` entry-point group.
"""

from msabench.api.model import MODELS  # noqa: F401
from msabench.models import constant  # noqa: F401
from msabench.models import lf_dnn  # noqa: F401
from msabench.models import linear_probe  # noqa: F401
from msabench.models import tfn  # noqa: F401
