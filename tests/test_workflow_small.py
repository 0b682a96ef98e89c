"""Small things of the researcher's workflow: names in any case with close matches, Ctrl-C, a selection
rule the store's protocol does not define, markdown on a terminal, oversubscribed workers, and the
README's model list."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fabricate import fabricate_views, write_store

from msabench.cli import main
from msabench.protocols.templates import TEMPLATES

ROOT = Path(__file__).resolve().parents[1]
DRY = ["run", "--seeds", "1", "--tiny", "--no-mlflow", "--dry-run"]


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines() if re.match(r"[0-9a-f]{20}\s", line)]


def test_names_in_any_case_are_the_same_runs(capsys, tmp_path):
    out_dir = ["--out", str(tmp_path / "runs")]
    code, lower, err = cli(capsys, *DRY, *out_dir, "--protocol", "standard", "--dataset", "synth-mosi",
                           "--model", "tfn", "--model", "lf_dnn")
    assert code == 0, err
    code, upper, err = cli(capsys, *DRY, *out_dir, "--protocol", "Standard", "--dataset", "SYNTH-MOSI",
                           "--model", "TFN", "--model", "LF_DNN", "--executor", "LOCAL")
    assert code == 0, err
    assert _ids(upper) == _ids(lower) and len(_ids(lower)) == 2
    assert " tfn seed=1" in upper and "TFN" not in upper


@pytest.mark.parametrize("option, value, says", [
    ("--model", "TNF", "unknown model 'TNF'. Did you mean: tfn"),
    ("--dataset", "MOSY", "unknown dataset 'MOSY'. Did you mean: mosi"),
    ("--protocol", "STANDART", "unknown protocol 'STANDART'. Did you mean: standard"),
])
def test_misspelt_names_in_another_case_get_close_matches(capsys, tmp_path, option, value, says):
    code, _, err = cli(capsys, *DRY, "--out", str(tmp_path / "runs"), option, value)
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err


def test_a_keyboard_interrupt_inside_a_command_says_how_to_resume(capsys, monkeypatch):
    import msabench.data.datasets as datasets

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "describe_datasets", interrupted)
    code, _, err = cli(capsys, "datasets")
    assert code == 130
    assert err.strip().splitlines()[-1] == ("msabench: interrupted; re-run the same command to resume (done runs "
                                            "are kept and skipped)")


def test_ctrl_c_of_a_sweep(tmp_path):
    """A real SIGINT to a training sweep: exit 130 and the resume line (click no longer swallows it)."""
    out = tmp_path / "runs"
    cmd = [sys.executable, "-c", "import sys; from msabench.cli import main; sys.exit(main())", "run",
           "--model", "lf_dnn", "--dataset", "synth-mosi", "--seeds", "1", "--no-mlflow", "--threads", "1",
           "--set", "data.scale=0.05", "--set", "train.epochs=200", "--set", "train.patience=200", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("runs/*/spec.json")) and time.monotonic() < deadline:  # the run has begun
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "msabench: interrupted; re-run the same command to resume" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def standard_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("standard-store")
    write_store(fabricate_views(TEMPLATES.get("mtmd-table1"), ["tfn", "lf_dnn", "lmf"], seeds=(1, 2)), str(out))
    return out


@pytest.mark.parametrize("rule", ["lodo", "oracle", "train-domain"])
def test_report_refuses_a_selection_rule_the_protocol_lacks(capsys, standard_store, rule):
    assert TEMPLATES.get("mtmd-table1").protocol == "standard"
    code, out, err = cli(capsys, "report", "--out", str(standard_store), "--selection", rule)
    assert code == 2 and out == ""
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"msabench: error: --selection {rule} does not apply to the store's standard runs")
    assert "standard selects with val or last" in line
    code, out, _ = cli(capsys, "report", "--out", str(standard_store), "--selection", "last")
    assert code == 0 and "selection rule 'last'" in out


def test_markdown_on_a_terminal_has_no_raw_tags(capsys, monkeypatch, standard_store):
    import msabench.cli.commands as commands

    code, to_file, _ = cli(capsys, "report", "--out", str(standard_store))
    assert code == 0 and "<u>" in to_file and "**" in to_file  # a file or a pipe: markdown as GitHub renders it
    monkeypatch.setattr(commands, "stdout_is_terminal", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    code, shown, _ = cli(capsys, "report", "--out", str(standard_store))
    assert code == 0 and "<u>" not in shown and "**" not in shown
    assert "\x1b[4m" in shown and "\x1b[1m" in shown
    assert re.sub(r"\x1b\[[0-9]+m", "", shown) == re.sub(r"<u>|</u>|\*\*", "", to_file)  # the same table
    monkeypatch.setenv("NO_COLOR", "1")
    code, plain, _ = cli(capsys, "report", "--out", str(standard_store))
    assert "<u>" not in plain and "\x1b[" not in plain and re.search(r"\| _[0-9.]+ ± [0-9.]+_ ", plain)


@pytest.mark.parametrize("args, warned", [
    (["--executor", "process", "--workers", "3", "--threads", "2"], "3 worker(s) x 2 thread(s) = 6 threads on 4 cores"),
    (["--executor", "process", "--workers", "2", "--threads", "2"], None),
    (["--threads", "8"], "1 worker(s) x 8 thread(s) = 8 threads on 4 cores"),
    (["--executor", "ray", "--workers", "5", "--threads", "1"], "5 worker(s) x 1 thread(s) = 5 threads on 4 cores"),
    (["--executor", "process"], None),  # the defaults fit the cores
])
def test_more_threads_than_cores_is_warned(capsys, monkeypatch, tmp_path, args, warned):
    import msabench.execution.process as process

    monkeypatch.setattr(process, "cpu_count", lambda: 4)
    code, _, err = cli(capsys, *DRY, "--dataset", "synth-mosi", "--model", "constant", "--out", str(tmp_path), *args)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ") and "thread" in line]
    assert warnings == ([f"warning: {warned}: the runs will compete for the CPU and each goes slower; choose "
                         "--workers x --threads <= 4"] if warned else [])


def test_readme_lists_every_model_and_says_how_to_add_one():
    import msabench.models  # noqa: F401
    from msabench.api.model import MODELS

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Models"):readme.index("## Data")]
    rows = {name for line in section.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([a-z0-9_]+)`", line.split("|")[1])}
    assert rows == set(MODELS.names())
    assert "**Adding a model**" in section and "docs/adding-a-model.md" in section
    assert (ROOT / "docs" / "adding-a-model.md").is_file()
