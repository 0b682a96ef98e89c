"""Issue 17, defects 2, 3 and 11: untrusted files that are small on disk but huge once read.

Zero-size dtypes (S0, U0, V0) let a 200-byte pickle hold a 10**15-element array; memo-shared nested
lists ("billion laughs") let 27 KB expand to 10**12 list items; a features.npz of a few MB can
inflate to GBs. Each is refused with one clear line, in milliseconds, before any reader converts it.
"""

from __future__ import annotations

import pickle
import time
import zipfile

import numpy as np
import pytest
from fixtures import faults

from msabench.cli import main
from msabench.core.errors import UserError
from msabench.data import safe_pickle


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("msabench: error: ") and "Traceback" not in err, err
    return lines[0]


class _ArrayState:
    """Pickles as numpy does an array: `_reconstruct(ndarray, (0,), b'b')` then BUILD with `state`."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (0,), b"b"), self.state)


def _laughs(depth: int, width: int = 10):
    node = ["lol"]
    for _ in range(depth):
        node = [node] * width  # every level: `width` memo references to the one below
    return node


# ------------------------------------------------------------------------------ defect 2
@pytest.mark.parametrize("code", ["S0", "U0", "V0"])
@pytest.mark.parametrize("shape", [(10**15,), (10**5, 10**5, 10**5), (3, 0, 10**12)])
def test_zero_size_dtype_with_any_count_is_refused(code, shape):
    if 0 in shape:  # an empty array of zero-size elements is harmless: read as such
        data = pickle.dumps({"x": _ArrayState((1, shape, np.dtype(code), False, b""))}, protocol=4)
        assert safe_pickle.loads(data)["x"].size == 0
        return
    data = pickle.dumps({"x": _ArrayState((1, shape, np.dtype(code), False, b""))}, protocol=4)
    assert len(data) < 300
    with pytest.raises(UserError, match="zero-size elements"):
        safe_pickle.loads(data)


@pytest.mark.parametrize("code", ["S0", "U0", "V0"])
def test_zero_size_dtype_in_a_mosi_pickle_is_exit_2_for_data_check_and_run(tmp_path, capsys, code):
    data = faults.mmsa_data()
    data["train"]["vision"] = _ArrayState((1, (10**5, 10**5, 10**5), np.dtype(code), False, b""))
    path = faults.write_mosi(tmp_path / "root", data)
    for args in (["data", "check", str(path)],
                 ["run", "--protocol", "standard", "--tiny", "--no-mlflow", "--threads", "1", "--model",
                  "linear_probe", "--seeds", "1", "--dataset", "mosi", "--data-root", str(tmp_path / "root"),
                  "--out", str(tmp_path / "store")]):
        assert main(args) == 2
        assert "zero-size elements" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


# ------------------------------------------------------------------------------ defect 3
@pytest.mark.parametrize("where", ["id", "text", "regression_labels"])
def test_billion_laughs_lists_are_refused_fast(tmp_path, capsys, where):
    data = faults.mmsa_data()
    data["train"][where] = _laughs(12)  # 10**12 items from ~25 KB
    path = faults.write_mosi(tmp_path / "root", data)
    assert path.stat().st_size < 40_000
    started = time.perf_counter()
    assert main(["data", "check", str(path)]) == 2
    assert time.perf_counter() - started < 5
    assert "pickle bomb" in one_error_line(capsys.readouterr().err)


def test_error_messages_never_print_a_whole_shared_tree():
    """An array state that is a (huge, shared) list instead of a tuple: the message shows a bounded repr."""
    data = pickle.dumps(_ArrayState(_laughs(7, 10)), protocol=4)  # 10**7 items: repr would take seconds
    started = time.perf_counter()
    with pytest.raises(UserError) as err:
        safe_pickle.loads(data)
    assert time.perf_counter() - started < 1.0
    assert len(str(err.value)) < 400


def test_a_plain_data_pickle_is_still_read():
    data = faults.mmsa_data()
    data["train"]["id"] = [str(i) for i in data["train"]["id"]]
    out = safe_pickle.loads(pickle.dumps(data, protocol=4))
    assert list(out["train"]["id"]) == list(data["train"]["id"])


# ------------------------------------------------------------------------------ defect 11
def test_features_npz_zip_bomb_is_refused_before_inflating(tmp_path, capsys, monkeypatch):
    path = tmp_path / "features.npz"
    n = 6000  # 6000 x 1000 float32 zeros: 24 MB inflated from ~25 KB
    np.savez_compressed(path, id=np.array([f"id{i}" for i in range(n)]), text=np.zeros((n, 1000), np.float32))
    assert path.stat().st_size < 200_000
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    assert main(["data", "check", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "text.npy inflates" in line and "zip bomb" in line and "np.savez" in line
    assert loads == []  # refused from the zip directory, before numpy read a byte of it


def test_compressed_features_of_real_looking_data_are_still_read(tmp_path):
    from msabench.data.readers_common import read_npz

    path = tmp_path / "features.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, id=np.array(["a", "b"]), text=rng.normal(size=(2, 64)).astype(np.float32))
    assert read_npz(path)["text"].shape == (2, 64)
    with zipfile.ZipFile(path) as zf:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
