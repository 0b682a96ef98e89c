"""`missing-rate` and `missing-rate-eval` (EMT-DLFR section 4.2 and 5.1.2; docs/architecture.md §8).

`missing-rate`: per rate of the grid a model is trained, validated and tested with that rate on
all modalities (EMT-DLFR's incomplete-modality setting): each non-padding position of each
modality dropped independently with probability = rate, static masks from the default mask seeds
(text 111, audio 1111, vision 11111; `msabench.data.masks`). The runner builds the masked tensors
at `RunSpec.rate`. Grids: MOSI/MOSEI 0.0..1.0, SIMS 0.0..0.5, step 0.1 (`--rates` overrides);
3 seeds; selection `val` at the run's own rate.

`missing-rate-eval`: one model per seed trained on complete data (rate 0), its checkpoint tested
at every rate of the grid (`RunSpec.eval_rates`: the runner adds a test set per extra rate and
logs it every epoch, so the epoch chosen on the complete valid split is read at every rate).

Curves and AUILC are computed from records by `curves` / `curve_summary` below (pure, torch-free;
the report layer calls them). `auilc` is taken on the grid *including* 0.0 and is unnormalised,
as in the paper's numbers (its captions start at 0.1, but Table 7's SIMS Acc-2 of 38.4 is the
trapezoid over 0.0..0.5; tests/test_metrics.py::test_auilc_reproduces_emt_dlfr_sims_acc2);
`auilc_norm` = auilc / grid width (the mean level of the curve, comparable across grids).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from msabench.core.errors import UserError
from msabench.data.names import family_of
from msabench.plan.request import Request
from msabench.protocols.base import PROTOCOLS, PlannedRun, Protocol, protocol_of

GRID_FULL = tuple(round(0.1 * i, 1) for i in range(11))  # MOSI, MOSEI (and every non-SIMS family)
GRID_SIMS = tuple(round(0.1 * i, 1) for i in range(6))  # SIMS


def default_grid(dataset: str) -> tuple[float, ...]:
    """EMT-DLFR's grid for a dataset: SIMS 0.0..0.5, everything else 0.0..1.0 (step 0.1)."""
    return GRID_SIMS if family_of(dataset) == "sims" else GRID_FULL


@dataclass(frozen=True)
class MissingRateProtocol(Protocol):
    kind: ClassVar[str] = "missing-rate"
    eval_only: bool = False  # missing-rate-eval: train complete, test at every rate

    @property
    def tests_every_rate(self) -> bool:
        return self.eval_only

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["rates"] = {"mosi": list(GRID_FULL), "mosei": list(GRID_FULL), "sims": list(GRID_SIMS),
                         "other": list(GRID_FULL), "override": "--rates"}
        info["masks"] = {"semantics": "EMT-DLFR: each non-padding position dropped with p = rate; text keeps "
                                      "[CLS]/[SEP]; static across epochs and seeds",
                         "mask_seeds": {"t": 111, "a": 1111, "v": 11111}}
        info["train_rate"] = "0 (complete)" if self.eval_only else "the rate under test"
        info["auilc"] = "trapezoid over the grid including 0.0, unnormalised; auilc_norm = auilc / width"
        return info

    def plan(self, request: Request) -> list[PlannedRun]:
        self.check_setting(request.setting)
        self.check_selection(request.selection)
        datasets = request.datasets or (self.default_dataset,)
        seeds = request.seeds or self.seeds
        modalities = request.modalities or self.modalities
        rules = (request.selection,) if request.selection else self.selection_rules
        runs: list[PlannedRun] = []
        for d in datasets:
            grid = tuple(float(r) for r in request.rates) if request.rates else default_grid(d)
            _check_grid(grid)
            for s in seeds:
                if self.eval_only:
                    runs.append(PlannedRun(
                        setting="", datasets=(d,), source_domains=(d,), target_domains=(), seed=s, rate=0.0,
                        modalities=modalities, label_rule=self.label_rule, task=None, selection_rules=rules,
                        eval_rates=grid,
                    ))
                    continue
                for rate in grid:
                    runs.append(PlannedRun(
                        setting="", datasets=(d,), source_domains=(d,), target_domains=(), seed=s, rate=rate,
                        modalities=modalities, label_rule=self.label_rule, task=None, selection_rules=rules,
                    ))
        return runs


def _check_grid(grid: Sequence[float]) -> None:
    if not grid:
        raise UserError("--rates: give at least one missing rate, e.g. 0,0.1,0.2")
    if any(not 0.0 <= r <= 1.0 for r in grid):
        raise UserError(f"--rates {','.join(f'{r:g}' for r in grid)}: every rate must lie in [0, 1]")
    if list(grid) != sorted(set(grid)):
        raise UserError(f"--rates {','.join(f'{r:g}' for r in grid)}: give distinct rates in increasing order")


_COMMON = dict(
    seeds=(1, 2, 3),
    selection_rules=("val", "last"),
    label_rule="sign",
    default_dataset="synth-mosi",
    # 11 rates x 3 seeds per model. lf_dnn is left out of the quick list: on 2 CPU cores it took
    # 13 s a run here (80% of a 9-minute sweep) and, capped at 10 epochs on synth-mosi at scale
    # 0.25, it did not beat `constant` (test MAE 1.461 vs 1.456); run it with --model lf_dnn.
    quick_models=("constant", "linear_probe"),
    synthetic_policy={"train.patience": 8, "data.scale": 0.25},
    synthetic_caps={"train.epochs": 10},
    real_policy={},
)

MISSING_RATE = PROTOCOLS.add(
    "missing-rate",
    MissingRateProtocol(
        name="missing-rate",
        # 1.1: with precomputed text vectors the masks also drop [CLS]/[SEP] (1.0 kept them, which left a
        # summary of the whole sentence at rate 1.0); token text is masked as before.
        version="1.1",
        summary="EMT-DLFR incomplete modalities: one model per missing rate (train/valid/test at that rate); "
                "curves and AUILC.",
        **_COMMON,
    ),
)

MISSING_RATE_EVAL = PROTOCOLS.add(
    "missing-rate-eval",
    MissingRateProtocol(
        name="missing-rate-eval",
        version="1.1",  # as missing-rate 1.1

        summary="One model per seed trained on complete data, its selected epoch tested at every missing rate; "
                "curves and AUILC.",
        eval_only=True,
        **_COMMON,
    ),
)


# --- curves and AUILC from records (pure; the report layer calls these) -------------------------------


def _spec_of(view: Any) -> dict[str, Any]:
    spec = view.spec if hasattr(view, "spec") else view[0]
    return spec.to_dict() if hasattr(spec, "to_dict") else spec


def _records_of(view: Any) -> list[dict[str, Any]]:
    return view.records if hasattr(view, "records") else view[1]


def curve_key(spec: dict[str, Any]) -> tuple:
    """Runs that share a curve: same protocol, dataset, model and config, modalities; any rate/seed."""
    config = tuple(sorted((k, repr(v)) for k, v in spec["config"].items()))
    return (spec["protocol"], spec["protocol_version"], tuple(spec["datasets"]), spec["model"], config,
            spec["impl_version"], tuple(spec["modalities"]))


def run_curve(view: Any, rule: str = "val", domain: str | None = None) -> dict[float, dict[str, float]]:
    """Test metrics per rate of one run at the epoch `rule` picks.

    A `missing-rate` run gives one point (its own rate); a `missing-rate-eval` run gives one point
    per evaluated rate, all read at the epoch chosen on the complete valid split.
    """
    from msabench.evaluation.selection import metrics_at, select_epoch

    spec, records = _spec_of(view), _records_of(view)
    sources = spec.get("train_domains") or spec.get("source_domains") or spec["datasets"][:1]
    domain = domain or spec["datasets"][0]
    epoch = select_epoch(records, rule, task=spec["task"], sources=sources,
                         targets=spec.get("target_domains", ()), train_rate=float(spec["rate"]))
    if epoch is None:
        return {}
    rates = sorted({float(r.get("rate", 0.0)) for r in records if r["split"] == "test" and r["domain"] == domain})
    out = {}
    for rate in rates:
        m = metrics_at(records, epoch, "test", domain, rate)
        if m is not None:
            out[rate] = {k: v for k, v in m.items() if v is not None}
    return out


@dataclass
class Curve:
    """One model's curve on one dataset: per rate, per metric, the values over seeds."""

    key: tuple
    model: str
    dataset: str
    protocol: str
    per_seed: dict[int, dict[float, dict[str, float]]]

    @property
    def rates(self) -> list[float]:
        common = None
        for points in self.per_seed.values():
            common = set(points) if common is None else common & set(points)
        return sorted(common or ())

    def metrics(self) -> list[str]:
        names: set[str] = set()
        for points in self.per_seed.values():
            for m in points.values():
                names |= set(m)
        return sorted(names)

    def mean(self) -> dict[float, dict[str, float]]:
        """{rate: {metric: mean over seeds}} on the rates every seed has."""
        out = {}
        for rate in self.rates:
            out[rate] = {}
            for metric in self.metrics():
                values = [p[rate][metric] for p in self.per_seed.values() if metric in p[rate]]
                if values:
                    out[rate][metric] = statistics.fmean(values)
        return out

    def auilc(self, metric: str, normalised: bool = False) -> tuple[float, float | None, int]:
        """(mean, std with ddof=1 or None, n seeds) of the per-seed AUILC of `metric`."""
        from msabench.metrics import auilc, auilc_norm

        fn = auilc_norm if normalised else auilc
        rates = self.rates
        if len(rates) < 2:
            return (math.nan, None, 0)
        values = []
        for points in self.per_seed.values():
            ys = [points[r].get(metric) for r in rates]
            if any(y is None for y in ys):
                continue
            values.append(fn(rates, ys))
        if not values:
            return (math.nan, None, 0)
        std = statistics.stdev(values) if len(values) > 1 else None
        return (statistics.fmean(values), std, len(values))


def curves(views: Iterable[Any], rule: str = "val") -> list[Curve]:
    """Group `missing-rate` / `missing-rate-eval` runs into curves (one per model row and dataset).

    `views`: objects with `.spec` (dict or RunSpec) and `.records`, or (spec, records) pairs. For
    `missing-rate`, seed s's curve joins the runs of seed s over the rates; a rate run twice for a
    seed (should not happen) keeps the first. Runs of other protocols are ignored.
    """
    groups: dict[tuple, Curve] = {}
    for view in views:
        spec = _spec_of(view)
        protocol = protocol_of(spec["protocol"])
        if protocol is None or not protocol.is_missing_rate:
            continue
        key = curve_key(spec)
        curve = groups.setdefault(key, Curve(key=key, model=spec["model"], dataset=spec["datasets"][0],
                                             protocol=spec["protocol"], per_seed={}))
        points = curve.per_seed.setdefault(int(spec["seed"]), {})
        for rate, metrics in run_curve(view, rule).items():
            if not protocol.tests_every_rate and rate != float(spec["rate"]):
                continue
            points.setdefault(rate, metrics)
    return sorted(groups.values(), key=lambda c: (c.protocol, c.dataset, c.model, str(c.key)))


def curve_summary(views: Iterable[Any], rule: str = "val") -> list[dict[str, Any]]:
    """JSON-ready summary per curve: mean metrics per rate, and per metric auilc and auilc_norm
    (mean, std over seeds, n). Metric values are fractions, as stored (the report scales them)."""
    out = []
    for c in curves(views, rule):
        summary = {"protocol": c.protocol, "dataset": c.dataset, "model": c.model, "rates": c.rates,
                   "seeds": sorted(c.per_seed), "selection": rule,
                   "curve": {f"{r:g}": m for r, m in c.mean().items()}, "auilc": {}, "auilc_norm": {}}
        for metric in c.metrics():
            summary["auilc"][metric] = c.auilc(metric)
            summary["auilc_norm"][metric] = c.auilc(metric, normalised=True)
        out.append(summary)
    return out
