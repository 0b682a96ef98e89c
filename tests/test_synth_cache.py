"""The synthetic suite on disk: one copy of each dataset, MMSA's pickle only on request, the size
estimate, the confirmation threshold and the free-space check, `msabench cache list|clear`."""

from __future__ import annotations

import json
import pickle
import shutil
from collections import namedtuple

import numpy as np
import pytest

from msabench.cli import main
from msabench.core.errors import UserError
from msabench.data import synth
from msabench.data.synth_cache import folder_bytes

SCALE = 0.05


@pytest.fixture
def cache(tmp_path, monkeypatch):
    import msabench.plan.planner as planner

    monkeypatch.setattr(planner, "_LOADED", {})  # datasets loaded by earlier tests would skip the cache
    root = tmp_path / "cache"
    monkeypatch.setenv("MSABENCH_CACHE", str(root))
    monkeypatch.delenv("MSABENCH_SYNTH_CONFIRM_GB", raising=False)
    return root


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_one_copy_and_the_pickle_only_on_request(cache, capsys):
    folder = synth.generate("synth-mosi", scale=SCALE)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["arrays", "ground_truth.json", "meta.json", "vocab.txt"]
    assert not list(folder.glob("arrays/*text_bert*"))  # token ids once: text_bert is rebuilt from them
    arrays, pickle_bytes = synth.estimate_bytes("synth-mosi", synth._options(0, SCALE, False, None))
    assert abs(folder_bytes(folder) - arrays) < 0.03 * arrays  # the estimate holds within 3%
    code, out, err = cli(capsys, "data", "synth", "synth-mosi", "--scale", str(SCALE), "--mmsa-pickle")
    assert code == 0 and out.strip() == str(folder), err
    pkl = folder / "data.pkl"
    assert abs(pkl.stat().st_size - pickle_bytes) < 0.03 * pickle_bytes
    with open(pkl, "rb") as f:
        test = pickle.load(f)["test"]
    data = synth.load_synth("synth-mosi", scale=SCALE)  # runs still read the arrays
    np.testing.assert_array_equal(test["text"], data.splits["test"].text_feats)
    np.testing.assert_array_equal(test["text_bert"][:, 0], data.splits["test"].text_ids)
    before = pkl.stat().st_mtime_ns
    assert synth.generate("synth-mosi", scale=SCALE, mmsa_pickle=True) == folder
    assert pkl.stat().st_mtime_ns == before  # written once
    # a DG suite: one pickle per domain
    dg = synth.generate("synth-dg", scale=0.01, mmsa_pickle=True)
    assert all((dg / d / "data.pkl").is_file() for d in synth.DG_DOMAINS) and not (dg / "data.pkl").exists()


def test_cache_list_and_clear(cache, capsys):
    plain = synth.generate("synth-sims", scale=SCALE)
    with_pickle = synth.generate("synth-iemocap", scale=SCALE, mmsa_pickle=True)
    (cache / "synth" / ".synth-x.tmp-host-1-abc").mkdir()  # an interrupted generation's temp folder
    code, out, err = cli(capsys, "cache", "list", "--json")
    assert code == 0, err
    listed = {e["folder"]: e for e in json.loads(out)["synth"]}
    assert listed[plain.name]["name"] == "synth-sims" and listed[plain.name]["mmsa_pickle"] is False
    assert listed[with_pickle.name]["mmsa_pickle"] is True
    assert listed[with_pickle.name]["bytes"] == folder_bytes(with_pickle) > folder_bytes(plain)
    assert listed[".synth-x.tmp-host-1-abc"]["incomplete"] is True
    code, out, _ = cli(capsys, "cache", "list")
    assert "3 synthetic datasets" in out and "synth-iemocap scale 0.05 seed 0 + data.pkl" in out
    text = cache / "text"
    text.mkdir()
    (text / "k.npy").write_bytes(b"x")
    code, out, _ = cli(capsys, "cache", "clear", "--only", "synth")
    assert code == 0 and "deleted 3 synthetic datasets" in out
    assert not list((cache / "synth").iterdir()) and (text / "k.npy").exists()
    code, out, _ = cli(capsys, "cache", "clear")
    assert "deleted 0 synthetic datasets" in out and "deleted 1 entries" in out and not (text / "k.npy").exists()


def test_the_confirmation_threshold(cache, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MSABENCH_SYNTH_CONFIRM_GB", "0.005")  # 5 MB; synth-mosi at 0.05 takes about 22 MB
    code, out, err = cli(capsys, "data", "synth", "synth-mosi", "--scale", str(SCALE))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "would write about 22.2 MB" in err and "add --yes" in err
    assert not (cache / "synth").exists()  # nothing written
    run = ["run", "--dataset", "synth-mosi", "--model", "constant", "--seeds", "1", "--no-mlflow",
           "--set", f"data.scale={SCALE}", "--set", "train.epochs=1", "--out", str(tmp_path / "runs")]
    code, out, err = cli(capsys, *run)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"run `msabench data synth synth-mosi --seed 0 --scale {SCALE}` (it asks first)" in err
    assert not (tmp_path / "runs").exists()
    code, out, err = cli(capsys, "data", "synth", "synth-mosi", "--seed", "0", "--scale", str(SCALE), "--yes")
    assert code == 0 and "writing about 22.2 MB" in err
    code, out, err = cli(capsys, *run, "--dry-run")  # the folder is there: nothing more to write, nothing asked
    assert code == 0 and "1 runs" in out, err
    monkeypatch.setenv("MSABENCH_SYNTH_CONFIRM_GB", "lots")
    code, _, err = cli(capsys, "data", "synth", "synth-sims", "--scale", str(SCALE))
    assert code == 2 and "MSABENCH_SYNTH_CONFIRM_GB='lots'" in err


def test_no_write_beyond_the_free_space(cache, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(UserError, match=r"needs about 22\.2 MB under .* but 1\.0 MB are free"):
        synth.generate("synth-mosi", scale=SCALE, confirmed=True)
    assert not (cache / "synth").exists()
