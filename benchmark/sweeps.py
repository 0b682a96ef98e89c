"""The researcher's Python API for studies: plan and run sweeps, grid studies included
(docs/python-api.md, docs/grid-sweeps.md). `msabench run --sweep` goes through the same functions.

    from msabench import sweeps, results
    study = sweeps.plan("study.toml")                 # or sweeps.plan({...}): the sweep file's keys
    outcome = sweeps.run(study, out="runs", echo=print)
    res = results.load("runs")

A grid study (`[grid]` and `[select]` in the sweep) runs in two phases, the protocol of MMDG-Bench
and MERBench done on validation only: (1) every configuration of the grid with the search seeds;
(2) per model, dataset and setting, the configuration with the best mean validation score under the
selection rule (`evaluation.selection.selection_score`: what the rule optimises, at its best epoch;
never a test value) is re-run over the study's seeds. The chosen configuration's search runs are
the same runs (same run id) when a search seed is among the study's seeds, so they are not redone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from msabench.core.types import RunSpec, canonical_json
from msabench.plan.sweep import SweepFile, load_sweep, plan_requests, sweep_from_dict


@dataclass
class Study:
    """A planned sweep. Without [select], `search` is every run. With it, `search` is the grid with the
    search seeds and `candidates` the grid with the study's seeds, of which phase 2 runs the chosen
    configurations' runs (`final_specs`)."""

    sweep: SweepFile
    search: list[RunSpec]
    candidates: list[RunSpec] = field(default_factory=list)

    @property
    def selects(self) -> bool:
        return self.sweep.select is not None

    def phase_two_size(self) -> tuple[int, int]:
        """(groups a configuration is chosen for, runs phase 2 will have: one configuration per group
        over the study's seeds, lodo helpers included)."""
        keys = self.sweep.grid_keys
        per_point: dict[tuple[str, str], int] = {}
        for spec in self.candidates:
            point = (_group_key(spec, keys), canonical_json(grid_point(spec, keys)))
            per_point[point] = per_point.get(point, 0) + 1
        first: dict[str, int] = {}
        for (group, _), n in per_point.items():
            first.setdefault(group, n)
        return len(first), sum(first.values())

    @property
    def seeds(self) -> str:
        """The search seeds (without [select]: every seed), e.g. "1,2,3"."""
        return _seeds(self.search)

    @property
    def final_seeds(self) -> str:
        return _seeds(self.candidates or self.search)


@dataclass
class Choice:
    """The configuration a grid study chose for one group (model, datasets, setting, rate, ...)."""

    group: str  # e.g. "lf_dnn synth-mosi" (+ setting, rate)
    rule: str
    direction: str  # "min" | "max": which way the score is better
    config: dict[str, Any] | None  # the chosen grid point; None when no configuration has every search seed
    score: float | None
    candidates: list[dict[str, Any]]  # {"config", "score", "seeds": [...], "missing": [...]} in grid order

    def describe(self) -> str:
        if self.config is None:
            gaps = "; ".join(f"{_point_text(c['config'])} lacks seeds {','.join(map(str, c['missing']))}"
                             for c in self.candidates)
            return (f"selected ({self.rule}): {self.group}: none (no configuration has a score for every search "
                    f"seed: {gaps})")
        others = [f"{_point_text(c['config'])} {_score_text(c['score'])}" for c in self.candidates
                  if c["config"] != self.config]
        return (f"selected ({self.rule}: mean validation score over the search seeds, "
                f"{'lower' if self.direction == 'min' else 'higher'} is better): "
                f"{self.group}: {_point_text(self.config)} {_score_text(self.score)}"
                + (f" (others: {'; '.join(others)})" if others else ""))


@dataclass
class StudyOutcome:
    study: Study
    search: Any  # the SweepOutcome of phase 1 (every run, without [select])
    final: Any = None  # the SweepOutcome of phase 2
    choices: list[Choice] = field(default_factory=list)
    out: str = ""
    final_specs: list[RunSpec] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """Failed runs of either phase (now, or earlier and not retried)."""
        ids = list(self.search.failed) + (list(self.final.failed) if self.final is not None else [])
        return list(dict.fromkeys(ids))

    @property
    def unchosen(self) -> list[Choice]:
        return [c for c in self.choices if c.config is None]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.unchosen

    @property
    def final_run_ids(self) -> list[str]:
        """The runs that are the study's results: the chosen configurations over the study's seeds
        (without [select]: every run)."""
        return [s.run_id for s in (self.final_specs if self.study.selects else self.study.search)]

    def results(self):
        from msabench.results import load

        return load(self.out)


def load(path: str | Path) -> SweepFile:
    """Read a sweep file (TOML)."""
    return load_sweep(path)


def plan(sweep: SweepFile | str | Path | dict, *, tiny: bool = False, data_root: str | None = None) -> Study:
    """Plan a sweep: a SweepFile, a path to one, or a dict with a sweep file's keys."""
    if isinstance(sweep, dict):
        sweep = sweep_from_dict(sweep)
    elif not isinstance(sweep, SweepFile):
        sweep = load_sweep(sweep)
    requests = sweep.for_run(data_root=data_root, tiny=tiny)
    if sweep.select is None:
        return Study(sweep=sweep, search=plan_requests(requests))
    candidates = plan_requests(requests)
    seeds = sweep.select.search_seeds or (min(s.seed for s in candidates),)
    search = plan_requests([replace(r, seeds=tuple(seeds)) for r in requests])
    return Study(sweep=sweep, search=search, candidates=candidates)


def grid_point(spec: RunSpec | dict, grid_keys: Sequence[str]) -> dict[str, Any]:
    """The values of the grid keys in a run's resolved config."""
    config = spec["config"] if isinstance(spec, dict) else spec.config
    return {k: config[k] for k in grid_keys if k in config}


def _group_key(spec: RunSpec, grid_keys: Sequence[str]) -> str:
    """What a configuration is chosen for: the run without its seed, its grid keys and the lodo helper
    fields (a helper follows its main run's choice)."""
    from msabench.core.types import NAMING_FIELDS

    data = spec.to_dict()
    for key in ("seed", "train_domains", "valid_domains", *NAMING_FIELDS):  # naming fields: a grid's inline keys
        data.pop(key, None)
    data["config"] = {k: v for k, v in data["config"].items() if k not in grid_keys}
    return canonical_json(data)


def _group_label(spec: RunSpec) -> str:
    parts = [spec.model, "+".join(spec.datasets)]
    if spec.setting:
        parts.append(f"setting {spec.setting}")
    if spec.rate:
        parts.append(f"rate {spec.rate:g}")
    return " ".join(parts)


def choose(study: Study, out: str | Path) -> list[Choice]:
    """The configuration per group with the best mean validation score over the search seeds (rule:
    [select] rule, else the protocol's default). A configuration competes only when every search
    seed's run is done and scored; ties go to the first in grid order."""
    from msabench.report.aggregate import RunView, lodo_helpers, validation_score
    from msabench.store.runs import Store

    if not study.selects:
        return []
    keys = study.sweep.grid_keys
    store = Store(out)
    views = []
    for spec in study.search:
        rd = store.run_dir(spec.run_id)
        if rd.status() == "done":
            rd.verify()
            views.append(RunView(run_id=spec.run_id, spec=spec.to_dict(), records=rd.read_records()))
    by_id = {v.run_id: v for v in views}
    seeds = sorted({s.seed for s in study.search})
    groups: dict[str, dict[str, Any]] = {}
    for spec in study.search:
        view = by_id.get(spec.run_id)
        if RunView(run_id=spec.run_id, spec=spec.to_dict(), records=[]).is_helper:
            continue  # a lodo helper: scored through its main run
        group = groups.setdefault(_group_key(spec, keys), {"label": _group_label(spec), "points": {},
                                                          "rule": study.sweep.select.rule or spec.selection_rules[0]})
        point = grid_point(spec, keys)
        entry = group["points"].setdefault(canonical_json(point), {"config": point, "scores": {}})
        if view is not None:
            rule = group["rule"]
            score, direction = validation_score(view, rule, lodo_helpers(view, views) if rule == "lodo" else ())
            group["direction"] = direction
            if score is not None and not math.isnan(score):
                entry["scores"][spec.seed] = score
    choices = []
    for group in groups.values():
        direction = group.get("direction", "max")
        candidates = []
        for entry in group["points"].values():
            scored = sorted(entry["scores"])
            missing = [s for s in seeds if s not in entry["scores"]]
            mean = sum(entry["scores"].values()) / len(scored) if scored and not missing else None
            candidates.append({"config": entry["config"], "score": mean, "seeds": scored, "missing": missing})
        ranked = [c for c in candidates if c["score"] is not None]
        best = (min if direction == "min" else max)(ranked, key=lambda c: c["score"]) if ranked else None
        choices.append(Choice(group=group["label"], rule=group["rule"], direction=direction,
                              config=best["config"] if best else None, score=best["score"] if best else None,
                              candidates=candidates))
    return choices


def final_specs(study: Study, choices: Sequence[Choice]) -> list[RunSpec]:
    """Phase 2: the candidate runs (the grid over the study's seeds) of each group's chosen configuration."""
    keys = study.sweep.grid_keys
    chosen = {}
    for spec in study.search:
        group = _group_key(spec, keys)
        label = _group_label(spec)
        for choice in choices:
            if choice.group == label and choice.config is not None:
                chosen[group] = canonical_json(choice.config)
    return [s for s in study.candidates if chosen.get(_group_key(s, keys)) == canonical_json(grid_point(s, keys))]


def run(sweep: Study | SweepFile | str | Path | dict, out: str | Path, *, executor: str = "local",
        workers: int | None = None, threads: int = 0, device: str = "auto", precision: str = "fp32",
        retry_failed: bool = False, runs_per_gpu: int | None = None, address: str | None = None,
        slurm=None, mlflow: bool = False, tracking_uri: str | None = None, experiment: str = "msabench",
        data_root: str | None = None, tiny: bool = False, echo: Callable[[str], None] = lambda line: None,
        stream=None, verbosity: int = 0) -> StudyOutcome:
    """Run a study into the store at `out` (both phases of a grid study). Failed runs do not raise:
    they are in `outcome.failed` (the CLI exits 3 on them). MLflow is off unless `mlflow=True`. `slurm`:
    the SlurmSettings of `executor="slurm"` (msabench.execution.slurm_executor)."""
    from msabench.engine.options import RunOptions
    from msabench.engine.runner import check_precision, resolve_device
    from msabench.plan.sweep import run_sweep
    from msabench.tracking import TrackingSettings

    study = sweep if isinstance(sweep, Study) else plan(sweep, tiny=tiny, data_root=data_root)
    check_precision(precision, resolve_device(device))
    from msabench.data.datasets import registered_cards

    options = RunOptions(device=device, precision=precision, threads=threads, data_root=data_root,
                         dataset_cards=registered_cards(),  # the corpora planning registered by path
                         verbosity=verbosity)  # 1: a line per epoch on stderr (run -v)
    tracking = TrackingSettings(enabled=mlflow, uri=tracking_uri, experiment=experiment)
    common = dict(out=str(out), options=options, executor=executor, retry_failed=retry_failed, workers=workers,
                  runs_per_gpu=runs_per_gpu, address=address, slurm=slurm, tracking=tracking, echo=echo,
                  stream=stream)
    if study.selects:
        echo(f"grid search: {len(study.search)} runs (seeds {_seeds(study.search)})")
    outcome = StudyOutcome(study=study, search=run_sweep(study.search, **common), out=str(out))
    if not study.selects:
        return outcome
    outcome.choices = choose(study, out)
    for choice in outcome.choices:
        echo(choice.describe())
    outcome.final_specs = final_specs(study, outcome.choices)
    echo(f"chosen configurations over seeds {_seeds(study.candidates)}: {len(outcome.final_specs)} runs")
    outcome.final = run_sweep(outcome.final_specs, **common)
    return outcome


def _seeds(specs: Sequence[RunSpec]) -> str:
    return ",".join(map(str, sorted({s.seed for s in specs})))


def _point_text(point: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"


def _score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.4g}"
