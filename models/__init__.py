"""Model plugins. Adding a model = one file here + one import line below (docs/adding-a-model.md).

Third-party models register through the `msabench.models` entry-point group, loaded lazily by the
model registry (`msabench.api.MODELS`) on its first lookup.
"""

from msabench.models import almt  # noqa: F401
from msabench.models import constant  # noqa: F401
from msabench.models import ef_lstm  # noqa: F401
from msabench.models import emt_dlfr  # noqa: F401
from msabench.models import graph_mfn  # noqa: F401
from msabench.models import lf_dnn  # noqa: F401
from msabench.models import lf_lstm  # noqa: F401
from msabench.models import linear_probe  # noqa: F401
from msabench.models import lmf  # noqa: F401
from msabench.models import m3sa  # noqa: F401
from msabench.models import mad  # noqa: F401
from msabench.models import mag_bert  # noqa: F401
from msabench.models import mctn  # noqa: F401
from msabench.models import mfm  # noqa: F401
from msabench.models import mfn  # noqa: F401
from msabench.models import mica  # noqa: F401
from msabench.models import misa  # noqa: F401
from msabench.models import mmim  # noqa: F401
from msabench.models import mtmd  # noqa: F401
from msabench.models import mult  # noqa: F401
from msabench.models import ridg  # noqa: F401
from msabench.models import s2lif  # noqa: F401
from msabench.models import self_mm  # noqa: F401
from msabench.models import tfn  # noqa: F401
from msabench.models import tfr_net  # noqa: F401
