"""Issue 7, untrusted files: a data pickle may hold numpy arrays, lists, dicts, tuples, str, bytes and
numbers, nothing else; anything else is refused with a clear error and nothing from the file runs
(a `__reduce__` that would create a marker file: the file is not created). Checkpoints are
safetensors, never pickles. Configs and sweep files are data: nothing is evaluated.

tests/test_readers.py already refuses `open` / `os.system` reducers at the reader level; here the
same through the CLI (`data check`, `run --dataset mosi --data-root ...`, in-process and in a real
process), every pickle opcode that names a global, hostile object arrays in an .npz, a hostile
"checkpoint", and a scan of the source.
"""

from __future__ import annotations

import ast
import copyreg
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import faults
from fixtures.realdata import write_meld, write_mult_iemocap

from msabench.cli import main
from msabench.core.errors import UserError
from msabench.data import safe_pickle
from msabench.store.runs import Store

REPO = Path(__file__).resolve().parents[1]
RUN = ["run", "--protocol", "standard", "--tiny", "--no-mlflow", "--threads", "1", "--model", "linear_probe",
       "--seeds", "1"]
COUNTS = {"hostile files refused": 0}


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("msabench: error: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------ through the CLI
@pytest.mark.parametrize("cls", faults.HOSTILE, ids=[c.__name__ for c in faults.HOSTILE])
@pytest.mark.parametrize("where", ["id", "audio", "regression_labels"])
def test_hostile_mosi_pickle_is_refused_by_data_check_and_run(tmp_path, capsys, cls, where):
    marker = tmp_path / "marker"
    root = tmp_path / "root"
    path = faults.write_mosi(root, faults.hostile_mmsa(marker, cls, where))
    called = {"os.system": "posix.system", "open": "io.open", "eval": "builtins.eval"}
    refs = {faults.RunsShell: called["os.system"], faults.OpensFile: called["open"], faults.EvalsCode: called["eval"]}
    for args in (["data", "check", str(path)], ["data", "check", str(root)],
                 [*RUN, "--dataset", "mosi", "--data-root", str(root), "--out", str(tmp_path / "store")]):
        assert main(args) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"refers to {refs[cls]}, which a data pickle may not contain" in line
        assert "only numpy arrays, lists, dicts, tuples, str, bytes and numbers" in line and "re-save" in line
        assert not marker.exists()
        COUNTS["hostile files refused"] += 1
    assert not (tmp_path / "store" / "runs").exists()  # nothing ran: not even a run folder


@pytest.mark.parametrize("dataset", ["iemocap", "meld"])
def test_hostile_files_of_the_other_layouts(tmp_path, capsys, dataset):
    """A hostile MulT pickle (IEMOCAP), and a MELD features.npz whose object array hides a reducer
    (np.load refuses pickled object arrays)."""
    marker = tmp_path / "marker"
    root = tmp_path / "root"
    if dataset == "iemocap":
        path = write_mult_iemocap(root)
        data = pickle.loads(path.read_bytes())
        data["test"]["vision"] = [faults.OpensFile(marker)]
        path.write_bytes(pickle.dumps(data))
        expected = "refers to io.open"
    else:
        folder = write_meld(root)
        old = dict(np.load(folder / "features.npz"))
        np.savez(folder / "features.npz", id=old["id"], text=np.array([faults.RunsShell(marker)], dtype=object))
        path, expected = folder / "features.npz", "stores Python objects"
    modalities = ["--modalities", "t"] if dataset == "meld" else []
    for args in (["data", "check", str(path)],
                 [*RUN, "--dataset", dataset, *modalities, "--data-root", str(root), "--out", str(tmp_path / "s")]):
        assert main(args) == 2
        assert expected in one_error_line(capsys.readouterr().err)
        assert not marker.exists()
        COUNTS["hostile files refused"] += 1


def test_hostile_pickle_in_a_real_process(tmp_path):
    """`python -m msabench data check` and `run --dataset mosi --data-root`: a pickle that would run
    `touch MARKER` in a shell is refused, exit 2, one line, and the marker never appears."""
    marker = tmp_path / "marker"
    root = tmp_path / "root"
    faults.write_mosi(root, faults.hostile_mmsa(marker, faults.RunsShell))
    for args in (["data", "check", str(root)],
                 [*RUN, "--dataset", "mosi", "--data-root", str(root), "--out", str(tmp_path / "store")]):
        proc = subprocess.run([sys.executable, "-m", "msabench", *args], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 2, proc.stderr
        assert "refers to posix.system" in one_error_line(proc.stderr)
        assert not marker.exists()
        COUNTS["hostile files refused"] += 1
    assert not (tmp_path / "store").exists()


# ------------------------------------------------------------------------------ every opcode that names code
def _ext_pickle(marker: Path) -> bytes:
    """EXT1: a global named through the copyreg extension registry (code 0xF1), not by name in the file."""
    return b"\x80\x02\x82\xf1" + pickle.dumps((f"touch {marker}",), protocol=2)[2:-1] + b"R."


def _crafted(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, the global the error must name)."""
    cmd = f"touch {marker}".encode()
    return {
        "GLOBAL+REDUCE (protocol 0)": (b"cos\nsystem\n(V" + cmd + b"\ntR.", "os.system"),
        "STACK_GLOBAL (protocol 4)": (pickle.dumps(faults.RunsShell(marker), protocol=4), "posix.system"),
        "INST (protocol 0)": (b"(V" + cmd + b"\nios\nsystem\n.", "os.system"),
        "OBJ (protocol 1)": (b"(cos\nsystem\nX" + struct.pack("<I", len(cmd)) + cmd + b"o.", "os.system"),
        "EXT1 (copyreg registry)": (_ext_pickle(marker), "os.system"),
        "NEWOBJ of subprocess.Popen": (b"\x80\x02csubprocess\nPopen\n]q\x00(X\x05\x00\x00\x00touchX"
                                       + struct.pack("<I", len(str(marker))) + str(marker).encode()
                                       + b"e\x85}\x81.", "subprocess.Popen"),
        "a torch tensor (torch's rebuild functions)": (pickle.dumps(torch.zeros(2)), "torch._utils"),
        "getattr chain": (b"cbuiltins\ngetattr\n(cbuiltins\nobject\nV__subclasses__\ntR.", "builtins.getattr"),
        "numpy.load (a permitted module, a refused name)": (b"cnumpy\nload\n(V/dev/null\ntR.", "numpy.load"),
        "pathlib.Path": (pickle.dumps(Path("/etc/passwd")), "pathlib"),
    }


def test_every_way_a_pickle_names_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "marker"
    cases = _crafted(marker)
    assert pickle.loads(cases["GLOBAL+REDUCE (protocol 0)"][0]) == 0 and marker.exists(), \
        "the crafted pickle must really run code under plain pickle"
    marker.unlink()
    copyreg.add_extension("os", "system", 0xF1)  # as if some library in the process had registered it
    try:
        for name, (data, global_name) in cases.items():
            with pytest.raises(UserError) as err:
                safe_pickle.loads(data, where=name)
            assert global_name in str(err.value) and "may not contain" in str(err.value), (name, str(err.value))
            assert not marker.exists(), name
            COUNTS["hostile files refused"] += 1
    finally:
        copyreg.remove_extension("os", "system", 0xF1)
    with pytest.raises(UserError, match="persistent ids are not allowed"):
        safe_pickle.loads(b"\x80\x02P0\n.")
    print(f"\nRELIABILITY untrusted pickles: {len(cases) + 1} opcode forms refused, nothing ran")


# ------------------------------------------------------------------------------ checkpoints are safetensors
@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("untrusted") / "store"
    assert main([*RUN, "--dataset", "synth-mosi", "--out", str(out)]) == 0
    (rd,) = list(Store(out).runs("done"))
    return out, rd


def test_checkpoints_are_safetensors_and_no_store_file_is_a_pickle(done_run):
    out, rd = done_run
    rules = rd.checkpoint_rules()
    assert rules
    for rule in rules:
        raw = rd.checkpoint_path(rule).read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        assert "__metadata__" in header and all("data_offsets" in v for k, v in header.items() if k != "__metadata__")
        assert rd.read_checkpoint(rule)  # loads with safetensors
    for path in rd.path.iterdir():
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80", f"{path.name} is a pickle"
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:  # no pickled object arrays inside
                assert all(npz[k].dtype != object for k in npz.files)
        elif path.suffix != ".safetensors":
            assert head != b"PK", f"{path.name} is a zip (torch.save)"


def test_a_hostile_checkpoint_is_refused_and_nothing_runs(done_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "store"
    shutil.copytree(done_run[0], out)
    rd = Store(out).run_dir(done_run[1].run_id)
    marker = tmp_path / "marker"
    for rule in rd.checkpoint_rules():  # what a torch.save of a hostile object would leave
        rd.checkpoint_path(rule).write_bytes(pickle.dumps({"weight": faults.RunsShell(marker)}))
    code = main(["run", "--protocol", "feature-analysis", "--from-run", rd.run_id, "--out", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and "is not a readable safetensors checkpoint" in line and "delete the run folder" in line
    assert not marker.exists()
    COUNTS["hostile files refused"] += 1


# ------------------------------------------------------------------------------ configs are data
_CODE_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "input"}
_UNSAFE_ATTRS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("torch", "load"),
                 ("torch", "save"), ("marshal", "loads"), ("marshal", "load"), ("yaml", "load"),
                 ("yaml", "unsafe_load"), ("shelve", "open"), ("joblib", "load"), ("dill", "load"), ("dill", "loads")}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in _CODE_CALLS:
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {func.id}(...)")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and (func.value.id, func.attr) in _UNSAFE_ATTRS:
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {func.value.id}.{func.attr}(...)")
        for kw in node.keywords:
            if kw.arg in ("allow_pickle", "weights_only") and isinstance(kw.value, ast.Constant) \
                    and kw.value.value is (kw.arg == "allow_pickle"):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {kw.arg}={kw.value.value}")
    return found


def test_the_source_evaluates_no_config_and_loads_no_pickle_but_through_safe_pickle():
    """No eval/exec/compile/__import__ anywhere in the package; no pickle.load(s), torch.load/save,
    marshal, yaml.load; no np.load(allow_pickle=True). Sweep files are read with tomllib, --set
    values with json, checkpoints with safetensors, data pickles with msabench.data.safe_pickle."""
    files = sorted(p for d in ("benchmark", "models", "protocols") for p in (REPO / d).rglob("*.py"))
    assert len(files) > 40
    found = [v for p in files for v in _violations(p)]
    assert found == [], "\n".join(found)
    sweep_source = (REPO / "benchmark" / "plan" / "sweep.py").read_text()
    assert "tomllib.load" in sweep_source
    print(f"\nRELIABILITY source scan: {len(files)} files, no eval/exec/pickle.load/torch.load")


def test_code_in_set_values_and_sweep_files_stays_a_string(tmp_path, capsys):
    marker = tmp_path / "marker"
    code = f"__import__('os').system('touch {marker}')"
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'models = ["linear_probe"]\ndatasets = ["synth-mosi"]\n[set]\n"train.lr" = "{code}"\n')
    for args in ([*RUN, "--dataset", "synth-mosi", "--set", f"train.lr={code}", "--dry-run"],
                 [*RUN[:-4], "--model", f"tfn:model.text_dropout={code}", "--dry-run"],
                 ["run", "--sweep", str(sweep), "--tiny", "--no-mlflow", "--dry-run"]):
        assert main(args) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "has type str" in line, line
        assert not marker.exists()


def counter_lines() -> list[str]:
    """Printed by the terminal-summary hook in conftest.py."""
    if not COUNTS["hostile files refused"]:
        return []
    return [f"RELIABILITY untrusted: {COUNTS['hostile files refused']} hostile files refused through the CLI "
            "and the unpickler; no marker file was ever created"]
