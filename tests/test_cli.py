"""The CLI contract (docs/architecture.md §3): listings, data commands, and one-line exit-2 errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from msabench import __version__
from msabench.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_openmp_threads_wait_passively_unless_the_user_chose(capsys, monkeypatch):
    import os

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["--version"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["--version"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and __version__ in out


@pytest.mark.parametrize("command", ["models", "protocols", "datasets", "tables"])
def test_listings_have_json(capsys, command):
    code, out, _ = run_cli(capsys, command, "--json")
    assert code == 0
    assert isinstance(json.loads(out), dict)


def test_listings_name_the_contract_entries(capsys):
    _, out, _ = run_cli(capsys, "datasets", "--json")
    names = set(json.loads(out))
    assert {"mosi", "mosei", "sims", "meld", "iemocap", "synth-mosi", "synth-dg", "synth-dg/meld"} <= names
    _, out, _ = run_cli(capsys, "models", "--json")
    assert {"constant", "linear_probe", "lf_dnn", "tfn"} <= set(json.loads(out))
    _, out, _ = run_cli(capsys, "protocols", "--json")
    info = json.loads(out)
    assert info["standard"]["version"] and info["standard"]["default_selection"] == "val"


def test_data_synth_then_check(capsys, tmp_path):
    code, out, err = run_cli(capsys, "data", "synth", "synth-mosi", "--scale", "0.05", "--dest", str(tmp_path))
    assert code == 0, err
    folder = Path(out.strip().splitlines()[-1])
    assert not (folder / "data.pkl").exists()  # the arrays are the one copy; the folder is checked from them
    code, out, err = run_cli(capsys, "data", "check", str(folder), "--json")
    assert code == 0, err
    (from_arrays,) = json.loads(out)["datasets"]
    code, out, err = run_cli(capsys, "data", "synth", "synth-mosi", "--scale", "0.05", "--dest", str(tmp_path),
                             "--mmsa-pickle")
    assert code == 0 and Path(out.strip().splitlines()[-1]) == folder, err
    code, out, err = run_cli(capsys, "data", "check", str(folder / "data.pkl"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    (dataset,) = summary["datasets"]
    assert dataset["synthetic"] is True and set(dataset["splits"]) == {"train", "valid", "test"}
    assert dataset["splits"] == from_arrays["splits"]


@pytest.mark.parametrize("args,needle", [
    (["run", "--protocol", "standrd"], "standard"),
    (["run", "--model", "tfm", "--dry-run"], "tfn"),
    (["run", "--dataset", "synth-mosy", "--dry-run"], "synth-mosi"),
    (["run", "--model", "tfn:model.text_hiden=3", "--dry-run"], "model.text_hidden"),
    (["run", "--model", "mica:model.element_norm=bogus", "--tiny", "--dry-run"], "model.element_norm"),
    (["run", "--set", "train.lr", "--dry-run"], "KEY=VALUE"),
    (["run", "--set", "train.lr=fast", "--dry-run"], "float"),
    (["run", "--seeds", "1,x", "--dry-run"], "whole numbers"),
    (["run", "--modalities", "t,x", "--dry-run"], "t,a,v"),
    (["run", "--device", "cuda:7", "--tiny"], "GPU"),
    (["run", "--selection", "oracle", "--dry-run"], "selection"),
    (["data", "synth", "synth-mosy"], "synth-mosi"),
    (["data", "check", "/nonexistent/file.pkl"], "/nonexistent"),
    (["report", "--out", "/nonexistent-store"], "/nonexistent-store"),
    (["status", "--out", "/nonexistent-store"], "/nonexistent-store"),
    (["frobnicate"], "frobnicate"),
])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, monkeypatch, args, needle):
    monkeypatch.setenv("MSABENCH_OUT", str(tmp_path / "store"))
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_a_model_value_the_plugin_refuses_stops_the_run_before_it_starts(capsys, tmp_path):
    out = tmp_path / "store"
    code, _, err = run_cli(capsys, "run", "--protocol", "standard", "--dataset", "synth-mosi", "--model",
                           "emt_dlfr:model.fusion=bogus", "--tiny", "--seeds", "1", "--no-mlflow", "--out", str(out))
    assert code == 2 and "model emt_dlfr:model.fusion=bogus: model.fusion='bogus'" in err and "Traceback" not in err
    assert not any((out / "runs").glob("*/*")), "a refused model value leaves no run (no failed record) behind"


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent (a user's clone)")
def test_data_check_on_real_mosi_labels(capsys):
    code, out, err = run_cli(capsys, "data", "check", str(SHARED / "MOSI" / "label.csv"), "--label-rule", "round",
                             "--json")
    assert code == 0, err
    (mosi,) = json.loads(out)["datasets"]
    assert [mosi["splits"][s]["size"] for s in ("train", "valid", "test")] == [1284, 229, 686]
    assert mosi["splits"]["test"]["classes"] == {"negative": 347, "neutral": 106, "positive": 233}


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent (a user's clone)")
def test_data_check_on_the_shared_root(capsys):
    code, out, err = run_cli(capsys, "data", "check", str(SHARED), "--json")
    assert code == 0, err
    found = {d["name"]: d for d in json.loads(out)["datasets"]}
    assert {"mosi", "meld"} <= set(found)
    meld = found["meld"]
    assert [meld["splits"][s]["size"] for s in ("train", "valid", "test")] == [9989, 1109, 2610]
    assert meld["splits"]["test"]["classes"] == {"negative": 833, "neutral": 1256, "positive": 521}
