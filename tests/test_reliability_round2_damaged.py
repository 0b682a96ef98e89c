"""Issue 17, defect 10: a damaged done run is named, never silently dropped.

A done run whose records.jsonl is missing or empty was left out of the mean (the table said 2
seeds, the values were from 1); valid JSON of the wrong shape in spec.json or records.jsonl gave a
traceback in `report` / `export` while `status` said done. Every reader now validates on read:
`status`, `report` and `export` exit 2 with one line naming the damaged file and the fix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from msabench.cli import main
from msabench.store.runs import Store


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("msabench: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("damaged") / "store"
    assert main(["run", "--protocol", "standard", "--dataset", "synth-mosi", "--tiny", "--no-mlflow", "--threads",
                 "1", "--device", "cpu", "--model", "linear_probe", "--seeds", "1,2", "--out", str(out)]) == 0
    return out


def _records(edit):
    def damage(run: Path) -> str:
        lines = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
        edit(lines)
        (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        return "records.jsonl"
    return damage


def _spec(key, value):
    def damage(run: Path) -> str:
        spec = json.loads((run / "spec.json").read_text())
        spec[key] = value
        (run / "spec.json").write_text(json.dumps(spec))
        return "spec.json"
    return damage


def _missing(run: Path) -> str:
    (run / "records.jsonl").unlink()
    return "records.jsonl is missing"


def _empty(run: Path) -> str:
    (run / "records.jsonl").write_text("")
    return "records.jsonl is empty"


DAMAGE = {
    "records missing": _missing,
    "records empty": _empty,
    "metrics a list": _records(lambda rs: rs[0].__setitem__("metrics", [1, 2])),
    "metric a string": _records(lambda rs: rs[1]["metrics"].__setitem__("acc2", "0.5")),
    "epoch a string": _records(lambda rs: rs[0].__setitem__("epoch", "0")),
    "split missing": _records(lambda rs: rs[2].pop("split")),
    "spec datasets a number": _spec("datasets", 3),
    "spec seed a string": _spec("seed", "1"),
    "spec config a list": _spec("config", []),
    "spec model null": _spec("model", None),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_done_run_is_named_by_status_report_and_export(case, two_seeds, tmp_path, capsys):
    out = tmp_path / "store"
    shutil.copytree(two_seeds, out)
    run = out / "runs" / Store(out).run_ids()[0]
    words = DAMAGE[case](run)
    for command in (["status"], ["report"], ["export"]):
        assert main([*command, "--out", str(out)]) == 2, command
        err = capsys.readouterr().err
        line = [line for line in err.splitlines() if line.strip()][-1]
        assert "Traceback" not in err and line.startswith("msabench: error: ")
        assert run.name in line and (words in line or words.split()[0] in line), line
