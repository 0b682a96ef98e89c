"""Issue 7, failures and disk faults.

Failures: runs that raise, whose loss turns NaN, or that run out of memory (torch.cuda.OutOfMemoryError,
MemoryError) are recorded failed with the reason and its fix, the other runs complete, `status` and
the report show the gaps (a note under the table naming the missing models and seeds, the seed count
per row, one warning line), and `--retry-failed` reruns them once the cause is gone.
tests/test_runner.py already checks that a raise and a NaN loss are recorded in-process; here: the
out-of-memory kinds, and what status, report and --retry-failed make of all of them.

Disk full / read-only: ENOSPC and EROFS injected into the store's system calls (os.write,
os.replace, os.open; never file modes: the tests run as root) during a real `msabench run`: one
clean exit-2 line naming the file and the fix, no run marked done that is not complete, no temp file
left, the store still reads, and re-running after the fault completes the sweep with results equal to
a sweep that never saw one.
"""

from __future__ import annotations

import errno
import json
import re

import pytest
from fixtures import faults
from store_compare import store_differences

from msabench.api.model import MODELS
from msabench.cli import main
from msabench.store.runs import Store

BASE = ["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads", "1"]
FAILING = {"raises": "RuntimeError", "nan_loss": "NonFiniteLoss", "cuda_oom": "OutOfMemoryError",
           "host_oom": "MemoryError"}
FIXES = {"raises": r"injected failure in training", "nan_loss": r"a lower train\.lr or gradient clipping",
         "cuda_oom": r"out of memory: run fewer runs at once", "host_oom": r"out of memory: run fewer runs at once"}


@pytest.fixture()
def fault_models(monkeypatch):
    for name, cls in faults.FAULT_MODELS.items():
        monkeypatch.setitem(MODELS._items, name, cls)
    monkeypatch.setitem(faults.FAULTS, "on", True)
    monkeypatch.setitem(faults.FAULTS, "flaky", 1)  # flaky: its first run (seed 1) fails, seed 2 trains


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_failures_are_explained_shown_as_gaps_and_rerun_with_retry_failed(tmp_path, capsys, fault_models):
    out = tmp_path / "store"
    models = [*FAILING, "flaky", "linear_probe"]
    args = [*BASE, *[a for m in models for a in ("--model", m)], "--seeds", "1,2", "--out", str(out)]
    assert main(args) == 3  # failures are recorded, the sweep goes on, and its exit code says so
    stdout, err = capsys.readouterr()
    assert "Traceback" not in err
    store = Store(out)
    assert store.summary() == {"done": 3, "failed": 9, "running": 0, "incomplete": 0}
    assert faults.incomplete_done_runs(out) == []
    by_model: dict[str, list] = {}
    for rd in store.runs():
        spec = rd.read_spec_dict()  # written first: even a run that fails says what it was
        by_model.setdefault(spec["model"], []).append((spec["seed"], rd.status(), rd.read_failed()))
    for model, kind in FAILING.items():
        assert [s for _, s, _ in by_model[model]] == ["failed", "failed"], model
        for _, _, failure in by_model[model]:
            assert failure["reason"].startswith(kind + ":") and re.search(FIXES[model], failure["reason"])
            assert "Traceback" in failure["traceback"]
    assert sorted((seed, status) for seed, status, _ in by_model["flaky"]) == [(1, "failed"), (2, "done")]
    assert [s for _, s, _ in by_model["linear_probe"]] == ["done", "done"]

    # status: the counts, then each failed run with its model, seed and reason.
    assert main(["status", "--out", str(out)]) == 0
    status = _lines(capsys.readouterr().out)
    assert status[0] == "done 3, failed 9"
    for model, kind in FAILING.items():
        for seed in (1, 2):
            assert any(f"({model} synth-mosi seed {seed}): {kind}:" in line for line in status), (model, status)
    assert any("(flaky synth-mosi seed 1): RuntimeError" in line for line in status)

    # report: the gaps are in the table (a note; flaky's seed count) and in one warning line.
    assert main(["report", "--out", str(out)]) == 0
    report, err = capsys.readouterr()
    warning = [line for line in _lines(err) if "not in these tables" in line]
    assert len(warning) == 1 and "9 run(s)" in warning[0] and "9 failed" in warning[0]
    # (--tiny: the rows carry the smoke-run caveat)
    assert re.search(r"^\| flaky \[smoke run\] \| 1 \|", report, re.M)
    assert re.search(r"^\| linear_probe \[smoke run\] \| 2 \|", report, re.M)
    note = [line for line in _lines(report) if line.startswith("- Missing from this table:")]
    assert len(note) == 1
    for model, kind in FAILING.items():
        assert f"{model} seeds 1, 2 failed ({kind})" in note[0]
    assert "flaky seed 1 failed (RuntimeError)" in note[0] and "--retry-failed" in note[0]
    assert main(["report", "--out", str(out), "--format", "json"]) == 0
    (table,) = json.loads(capsys.readouterr().out)
    assert any("cuda_oom seeds 1, 2 failed" in n for n in table["notes"])

    # A plain re-run keeps the failures (the cause is still there, and even once it is gone): still exit 3.
    assert main(args) == 3
    faults.FAULTS["on"] = False  # the bug is fixed
    assert main(args) == 3
    assert store.summary()["failed"] == 9
    # --retry-failed reruns exactly the failed runs; now they complete and the gaps are gone.
    done_before = {rd.run_id: (rd.path / "done").read_text() for rd in store.runs("done")}
    assert main([*args, "--retry-failed"]) == 0
    capsys.readouterr()
    assert store.summary() == {"done": 12, "failed": 0, "running": 0, "incomplete": 0}
    assert all((store.run_dir(r).path / "done").read_text() == t for r, t in done_before.items())  # not redone
    assert faults.incomplete_done_runs(out) == []
    assert main(["status", "--out", str(out)]) == 0
    status = _lines(capsys.readouterr().out)
    # tiny fault-model runs may predict a constant: status names those (issue 21), nothing else
    assert status[0] == "done 12" and all(line.startswith("degenerate ") for line in status[1:]), status
    assert main(["report", "--out", str(out)]) == 0
    report, err = capsys.readouterr()
    assert "Missing" not in report and "not in these tables" not in err
    assert all(re.search(rf"^\| {m} \[smoke run\] \| 2 \|", report, re.M) for m in models)
    print("\nRELIABILITY failures: 9 failed runs (raise, NaN loss, CUDA OOM, host OOM, one seed of a flaky model) "
          "recorded with reason and fix; 3 others complete; status and report show the gaps; --retry-failed "
          "reran the 9 to done")


# -- disk full / read-only --------------------------------------------------------------------------
SWEEP = [*BASE, "--model", "linear_probe", "--model", "constant", "--seeds", "1,2"]
DISK_FAULTS = [  # (call, errno, after, only): where the store's writes start failing
    ("write", errno.ENOSPC, 0, None),  # the very first write: the first run's lock
    ("write", errno.ENOSPC, 25, None),  # the disk fills mid-sweep, mid-file
    ("write", errno.ENOSPC, 0, "done"),  # only the `done` marker cannot be written
    ("replace", errno.ENOSPC, 0, "checkpoint-val.safetensors"),  # a checkpoint cannot be published
    ("replace", errno.EROFS, 12, None),  # the file system turns read-only mid-run
    ("open", errno.EROFS, 0, None),  # read-only from the start: no file can be created
    ("open", errno.EROFS, 7, None),  # read-only after the first files of a run
    ("replace", errno.EROFS, 0, "failed.json"),  # no effect here (no run fails): the sweep completes
]
HINTS = {errno.ENOSPC: "no space left on device: free space, then try again",
         errno.EROFS: "read-only file system: point --out at a writable folder, then try again"}


@pytest.fixture(scope="module")
def clean_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("disk") / "clean"
    assert main([*SWEEP, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("call,code,after,only", DISK_FAULTS,
                         ids=[f"{c}-{errno.errorcode[e]}-after{a}{'-' + o if o else ''}" for c, e, a, o in DISK_FAULTS])
def test_disk_full_or_read_only_store_is_a_clean_error_and_nothing_half_done(tmp_path, capsys, monkeypatch,
                                                                              clean_sweep, call, code, after, only):
    out = tmp_path / "store"
    with monkeypatch.context() as m:
        fault = faults.DiskFault(out, call, code, after, only).install(m)
        rc = main([*SWEEP, "--out", str(out)])
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    if fault.fired == 0:  # the fault never hit (e.g. failed.json when nothing fails): a normal sweep
        assert rc == 0
    else:
        lines = [line for line in _lines(err) if not line.startswith("[")]  # progress lines aside
        assert rc == 2 and len(lines) == 1, err
        assert re.fullmatch(rf"msabench: error: cannot write {re.escape(str(out))}/runs/\w+/\S+: {HINTS[code]}",
                            lines[0]), lines[0]
    # No run is marked done unless complete; nothing half-written is left; the store reads.
    assert faults.incomplete_done_runs(out) == []
    assert faults.leftover_temp_files(out) == []
    if (out / "runs").exists():
        assert main(["status", "--out", str(out)]) == 0
        counts = _lines(capsys.readouterr().out)[0]
        assert "failed" not in counts  # a disk fault is the user's to fix: never recorded as a failed run
    # Once there is space again, the same command finishes the sweep: nothing lost, nothing differs.
    assert main([*SWEEP, "--out", str(out)]) == 0
    capsys.readouterr()
    assert store_differences(str(clean_sweep), str(out)) == []
    _COUNT["faults"] += 1
    _COUNT["fired"] += fault.fired > 0


_COUNT = {"faults": 0, "fired": 0}


def counter_lines() -> list[str]:
    """Printed by the terminal-summary hook in conftest.py."""
    if not _COUNT["faults"]:
        return []
    return [f"RELIABILITY disk faults: {_COUNT['fired']} injected ENOSPC/EROFS faults hit a real `msabench run` "
            f"({_COUNT['faults']} placements tried): each one clean exit-2 line, no run marked done that is not "
            "complete, no temp file left, the store reads, and the resumed sweep equals a clean one"]
