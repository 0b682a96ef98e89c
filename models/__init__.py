"""Model plugins. Adding a model = one file here + one import line below.

Third-party models register through the `msabench.models` entry-point group.
"""

from msabench.model_api import MODELS  # noqa: F401
