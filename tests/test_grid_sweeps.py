"""Grid studies (docs/grid-sweeps.md): a [grid] expands into runs at plan time (`--dry-run` lists them),
[select] picks each group's configuration by its validation score under a selection rule (never a
test value), and the chosen configuration is re-run over the study's seeds."""

from __future__ import annotations

import pytest

from msabench import results, sweeps
from msabench.cli import main
from msabench.core.errors import UserError
from msabench.plan.sweep import sweep_from_dict
from msabench.store.runs import RunDir

GRID_STUDY = """\
protocol = "standard"
models = ["linear_probe"]
datasets = ["synth-mosi"]
seeds = [1, 2, 3]
tiny = true
[set]
"train.epochs" = 2
[grid]
"train.lr" = [0.001, 0.03]
"model.features" = ["all", "invariant"]
[select]
rule = "val"
"""
POINTS = [{"model.features": f, "train.lr": lr} for lr in (0.001, 0.03) for f in ("all", "invariant")]


@pytest.fixture(scope="module")
def grid_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid")
    path = folder / "study.toml"
    path.write_text(GRID_STUDY)
    out = folder / "store"
    outcome = sweeps.run(path, out, threads=1)
    return path, out, outcome


def _point(spec) -> dict:
    return {k: spec.config[k] for k in ("model.features", "train.lr")}


def test_the_grid_is_expanded_at_plan_time_and_listed_by_dry_run(tmp_path, capsys):
    path = tmp_path / "study.toml"
    path.write_text(GRID_STUDY)
    study = sweeps.plan(path)
    assert [(_point(s), s.seed) for s in study.search] == [(p, 1) for p in POINTS]  # search seed: the first seed
    assert sorted((str(_point(s)), s.seed) for s in study.candidates) == sorted(
        (str(p), seed) for p in POINTS for seed in (1, 2, 3))
    assert study.phase_two_size() == (1, 3)
    assert main(["run", "--sweep", str(path), "--out", str(tmp_path / "store"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "phase 1, grid search: every configuration with seeds 1"
    listed = [line for line in lines if " linear_probe:" in line and " seed=1 " in line]  # the point in the name
    assert [line.split("  ")[-1] for line in listed] == [
        f"model.features={p['model.features']},train.lr={p['train.lr']}" for p in POINTS]
    assert "4 runs" in lines and any(line.startswith("phase 2: per model and dataset (1 group(s))") and
                                     "re-run over seeds 1,2,3: 3 runs" in line for line in lines)
    assert not (tmp_path / "store").exists()  # a dry run starts nothing


def test_the_best_validation_configuration_is_rerun_over_three_seeds(grid_study):
    path, out, outcome = grid_study
    assert outcome.ok and len(outcome.search.done) == 4
    (choice,) = outcome.choices
    assert choice.rule == "val" and choice.direction == "min" and choice.group == "linear_probe synth-mosi"
    # the choice is the configuration with the lowest valid MAE at the epoch `val` selects (seed 1), by the API
    res = results.load(out)
    selected = res.selected("val")
    valid_mae = selected[(selected.split == "valid") & (selected.metric == "mae")]
    runs = res.runs().set_index("run_id")
    scores = {}
    for spec in outcome.study.search:
        (score,) = valid_mae[valid_mae.run_id == spec.run_id]["value"]
        scores[str(_point(spec))] = score
        assert runs.loc[spec.run_id, "status"] == "done"
    assert [c["score"] for c in choice.candidates] == [scores[str(p)] for p in POINTS]
    assert str(choice.config) == min(scores, key=scores.get) and choice.score == min(scores.values())
    # phase 2: the chosen configuration over seeds 1, 2, 3 (seed 1 is its search run, not redone)
    final = outcome.final_specs
    assert sorted(s.seed for s in final) == [1, 2, 3] and all(_point(s) == choice.config for s in final)
    assert len(outcome.final.done) == 2 and len(outcome.final.skipped) == 1
    assert set(outcome.final_run_ids) <= set(runs.index[runs.status == "done"])
    # the final runs' table: one row, three seeds
    (table,) = res.tables(run_ids=outcome.final_run_ids)
    (row,) = table.rows
    assert row.n_seeds == 3


def test_test_records_never_decide(grid_study, monkeypatch):
    """Without any test record the choice and its scores are the same: selection reads validation only."""
    path, out, outcome = grid_study
    read = RunDir.read_records
    monkeypatch.setattr(RunDir, "read_records", lambda self: [r for r in read(self) if r["split"] != "test"])
    (again,) = sweeps.choose(outcome.study, out)
    assert again == outcome.choices[0]


def test_rerunning_the_study_from_the_cli_skips_every_run(grid_study, capsys):
    path, out, outcome = grid_study
    assert main(["run", "--sweep", str(path), "--out", str(out), "--no-mlflow", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "done 0, failed 0, skipped 4 of 4 runs" in text and "done 0, failed 0, skipped 3 of 3 runs" in text
    assert outcome.choices[0].describe() in text


@pytest.mark.parametrize(("study", "message"), [
    ({"models": ["constant"], "grid": {"train.lr": 0.1}}, r"grid: train\.lr must be a list of the values to try"),
    ({"models": ["constant"], "grid": {"train.lr": [0.1, 0.1]}}, "lists a value twice"),
    ({"models": ["constant"], "grid": {"lr": [0.1]}}, "needs a namespace"),
    ({"models": ["constant"], "set": {"train.lr": 0.1}, "grid": {"train.lr": [0.1, 0.2]}},
     r"train\.lr is both in \[set\] and in \[grid\]"),
    ({"models": ["constant:train.lr=0.1"], "grid": {"train.lr": [0.1, 0.2]}}, "is both set and in a grid"),
    ({"models": [{"name": "constant", "grid": {"train.lr": [1]}}], "grid": {"train.lr": [2]}},
     r"is in the sweep's \[grid\] too"),
    ({"grid": {"train.lr": [0.1]}}, r"a \[grid\] needs models"),
    ({"models": ["constant"], "select": {"rule": "val"}}, r"add a \[grid\]"),
    ({"models": ["constant"], "grid": {"train.lr": [0.1]}, "select": {"rule": "last"}}, "has no validation score"),
    ({"models": ["constant"], "grid": {"train.lr": [0.1]}, "select": {"rule": "test"}}, "unknown selection rule"),
    ({"models": ["constant"], "grid": {"train.lr": [0.1]}, "select": {"seeds": [1]}}, "Did you mean: search_seeds"),
    ({"models": ["constant"], "grid": {"train.lr": [0.1]}, "select": {"search_seeds": [1, 1]}}, "distinct"),
])
def test_bad_grids_are_refused_with_the_fix(study, message):
    with pytest.raises(UserError, match=message):
        sweep_from_dict(study)


def test_a_model_table_grid_joins_the_sweep_grid():
    sweep = sweep_from_dict({"models": [{"name": "linear_probe", "grid": {"model.features": ["all", "invariant"]}},
                                        "constant"], "grid": {"train.lr": [0.1, 0.2]}})
    assert sweep.grid_keys == ("model.features", "train.lr")
    assert sweep.requests[0].models == (
        "linear_probe:model.features=all,train.lr=0.1", "linear_probe:model.features=invariant,train.lr=0.1",
        "linear_probe:model.features=all,train.lr=0.2", "linear_probe:model.features=invariant,train.lr=0.2",
        "constant:train.lr=0.1", "constant:train.lr=0.2")
