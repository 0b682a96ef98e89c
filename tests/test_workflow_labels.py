"""A model spec with inline keys names its runs everywhere (issue: the researcher's workflow, item 6):
table rows, progress lines, `--dry-run`, export columns, MLflow tags and run names, plot legends; and
two configs of one model never share a row."""

from __future__ import annotations

from fabricate import _view, write_store

from msabench.core.types import RunSpec

INVARIANT = "linear_probe:model.features=invariant"


def _standard_view(model: str, keys: dict, seed: int, base: float):
    return _view("standard", "", ["synth-mosi"], ["synth-mosi"], [], model, {"model.features": "all", **keys},
                 seed, 0.0, ("t", "a", "v"), "regression", ("val", "last"), base, model_keys=keys)


def test_a_lone_inline_key_row_is_named_with_its_keys(tmp_path, capsys):
    from msabench.cli import main

    out = tmp_path / "store"
    write_store([_standard_view("linear_probe", {"model.features": "invariant"}, s, 0.6) for s in (1, 2)], str(out))
    assert main(["report", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert f"| {INVARIANT} |" in table
    assert "| linear_probe |" not in table

    assert main(["export", "--out", str(out)]) == 0
    rows = capsys.readouterr().out.splitlines()
    header = rows[0].split(",")
    models = {r.split(",")[header.index("model")] for r in rows[1:]}
    assert models == {INVARIANT}


def test_two_configs_of_one_model_are_two_rows(tmp_path):
    from msabench.report.aggregate import generic_tables

    views = [_standard_view("linear_probe", {}, s, 0.4) for s in (1, 2)]
    views += [_standard_view("linear_probe", {"model.features": "invariant"}, s, 0.8) for s in (1, 2)]
    (table,) = generic_tables(views, None)
    labels = sorted(r.label for r in table.rows)
    assert labels == ["linear_probe", INVARIANT]
    assert all(r.n_seeds == 2 for r in table.rows)


def _spec(**kw) -> RunSpec:
    base = dict(protocol="standard", protocol_version="1.0", setting="", datasets=("synth-mosi",),
                data_hashes=("0" * 16,), model="linear_probe", config={"model.features": "invariant"},
                impl_version=1, seed=1, model_keys={"model.features": "invariant"})
    base.update(kw)
    return RunSpec(**base)


def test_inline_keys_keep_the_run_id_and_name_the_run():
    from msabench.execution.progress import describe_spec
    from msabench.tracking import run_tags

    spec = _spec()
    assert spec.run_id == _spec(model_keys={}).run_id  # the keys are in the config already
    assert "model_keys" not in _spec(model_keys={}).to_dict()  # spec.json of plain specs is unchanged
    assert RunSpec.from_dict(spec.to_dict()).model_keys == {"model.features": "invariant"}
    assert describe_spec(spec).startswith(INVARIANT + " ")
    tags = run_tags(spec.to_dict(), spec.run_id)
    assert tags["model"] == INVARIANT and tags["mlflow.runName"].startswith(INVARIANT + " ")
    assert tags["model_name"] == "linear_probe"


def test_dry_run_lists_the_inline_keys(tmp_path, capsys):
    from msabench.cli import main

    assert main(["run", "--model", INVARIANT, "--model", "linear_probe", "--seeds", "1", "--tiny", "--dry-run",
                 "--out", str(tmp_path / "none")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " seed=" in line]
    assert len(lines) == 2
    assert sum(f" {INVARIANT} seed=1" in line for line in lines) == 1
    assert sum(" linear_probe seed=1" in line for line in lines) == 1


def test_plot_curves_are_labelled_with_the_inline_keys():
    from msabench.report.aggregate import rate_curves

    views = [_view("missing-rate", "", ["synth-mosi"], ["synth-mosi"], [], "linear_probe",
                   {"model.features": "invariant", "data.missing_rate": r}, s, r, ("t", "a", "v"), "regression",
                   ("val",), 0.6, model_keys={"model.features": "invariant"}) for s in (1, 2) for r in (0.0, 0.5)]
    (group,) = rate_curves(views).values()
    assert list(group["rows"]) == [INVARIANT]
