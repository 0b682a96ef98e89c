"""MMSA 2.2.1 with its padding choices replaced by msabench's, to trace a metric difference (issue 19).

    <mmsa-python> perf/mmsa_padding_patch.py none|text|both -- <perf/mmsa_runner.py arguments>

MMSA's LF-DNN and TFN run their text LSTM over the padded sequence and take the state after the
padding, and MMSA's loader averages audio and vision over the padded length, zeros included;
msabench masks padding in both places (documented deviations in models/lf_dnn.py and models/tfn.py).
`text` packs the text LSTM's input to the real tokens (a token is real when its feature vector is
not all zeros, as in the suite's data.pkl); `both` also averages audio and vision over their real
frames. `none` is MMSA as it is. Then perf/mmsa_runner.py runs as usual (its own patches apply).
Executed by the MMSA venv's python, never by msabench.
"""

import sys
from pathlib import Path

import numpy as np
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mmsa_runner  # noqa: E402


def packed_text_forward(self, x):
    lengths = (x.abs().sum(-1) > 0).sum(1).clamp(min=1)
    _, (h, _) = self.rnn(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))
    return self.linear_1(self.dropout(h.squeeze(0)))


def real_frame_means(self):
    for name in ("audio", "vision"):
        x = getattr(self, name)
        lengths = np.maximum(np.asarray(getattr(self, f"{name}_lengths"), dtype=np.float32), 1.0)
        setattr(self, name, (x.sum(axis=1, keepdims=True) / lengths[:, None, None]).astype(np.float32))


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("none", "text", "both") or sys.argv[2] != "--":
        sys.exit(__doc__)
    which = sys.argv[1]
    sys.argv = [sys.argv[0], *sys.argv[3:]]
    if which in ("text", "both"):
        from MMSA.models.subNets import FeatureNets

        FeatureNets.TextSubNet.forward = packed_text_forward
    if which == "both":
        from MMSA import data_loader

        data_loader.MMDataset._MMDataset__normalize = real_frame_means
    mmsa_runner.main()


if __name__ == "__main__":
    main()
