"""`missing-random`: train once under random missingness, test at every rate (LNLN; Zhang et al.,
NeurIPS 2024, public code Haoyu-ha/LNLN).

The second family of robustness numbers. `missing-rate` (EMT-DLFR, TFR-Net) trains one model per
rate; here one model per seed is trained with a missing rate drawn per sample and modality, and its
checkpoint is tested at rates 0.0..0.9; papers report the mean over those rates.

Facts from LNLN's `core/dataset.py`, `configs/train_*.yaml` and `robust_evaluation.py`:
* training: per sample and per modality a rate from U(0, 1), set to 0 for a random half of the
  samples, redrawn at every epoch (`msabench.data.masks.random_rate_drop_masks`); masking as
  EMT-DLFR's ([UNK] tokens, zero frames, [CLS]/[SEP] kept);
* valid (the selection) and test at one fixed rate, 0.5 (`missing_rate_eval_test`); `RunSpec.rate`
  is that valid rate here, the test grid is `RunSpec.eval_rates`;
* test grid 0.0..0.9 step 0.1, three seeds, the mean over the rates of each metric.

Our valid and test masks are the static masks of `msabench.data.masks` (seeded and hashed as the
other protocols' are). Curves and the mean over rates: `rate_summary` below (pure, torch-free).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, ClassVar

from msabench.core.errors import UserError
from msabench.plan.request import Request
from msabench.protocols.base import PROTOCOLS, PlannedRun, Protocol
from msabench.protocols.missing_rate import _check_grid

TEST_GRID = tuple(round(0.1 * i, 1) for i in range(10))  # LNLN robust_evaluation.py: 0.0..0.9
VALID_RATE = 0.5  # LNLN configs/train_*.yaml: missing_rate_eval_test


@dataclass(frozen=True)
class MissingRandomProtocol(Protocol):
    # Its own kind: its curves are summarised by the mean over rates, and the missing-rate
    # templates (AUILC) never read its runs.
    kind: ClassVar[str] = "missing-random"
    valid_rate: float = VALID_RATE

    @property
    def tests_every_rate(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["train_masks"] = {"rate": "per sample and modality from U(0, 1); 0 for a random half of the samples; "
                                       "redrawn every epoch (LNLN core/dataset.py)",
                               "positions": "each real position dropped when its uniform draw < the sample's rate; "
                                            "text keeps [CLS]/[SEP]; [UNK] tokens, zero frames"}
        info["valid_rate"] = self.valid_rate
        info["test_rates"] = {"default": list(TEST_GRID), "override": "--rates"}
        info["masks"] = {"valid_test": "static masks of msabench.data.masks at the rate (data.mask_scheme applies)",
                         "mask_seeds": {"t": 111, "a": 1111, "v": 11111}}
        info["summary_metric"] = "per seed, the mean of each metric over the test rates; then mean ± std (ddof=1)"
        return info

    def plan(self, request: Request) -> list[PlannedRun]:
        self.check_setting(request.setting)
        self.check_selection(request.selection)
        datasets = request.datasets or (self.default_dataset,)
        grid = tuple(float(r) for r in request.rates) if request.rates else TEST_GRID
        _check_grid(grid)
        if any(r >= 1.0 for r in grid):
            raise UserError("--rates: missing-random tests at rates below 1 (LNLN's grid is 0.0..0.9)")
        rules = (request.selection,) if request.selection else self.selection_rules
        return [
            PlannedRun(setting="", datasets=(d,), source_domains=(d,), target_domains=(), seed=s, rate=self.valid_rate,
                       modalities=request.modalities or self.modalities, label_rule=self.label_rule, task=None,
                       selection_rules=rules, eval_rates=grid)
            for d in datasets for s in (request.seeds or self.seeds)
        ]


MISSING_RANDOM = PROTOCOLS.add(
    "missing-random",
    MissingRandomProtocol(
        name="missing-random",
        version="1.0",
        summary="LNLN robustness: one model per seed trained with a random missing rate per sample and modality "
                "(redrawn every epoch), selected at valid rate 0.5, tested at rates 0.0..0.9; the mean over rates.",
        seeds=(1, 2, 3),
        selection_rules=("val", "last"),
        label_rule="sign",
        default_dataset="synth-mosi",
        # One training run per seed (the test rates are evaluations), so the quick list can afford lf_dnn.
        quick_models=("constant", "linear_probe", "lf_dnn"),
        synthetic_policy={"train.patience": 8, "data.scale": 0.25},
        synthetic_caps={"train.epochs": 10},
        real_policy={},
        train_masks="random-per-epoch",
    ),
)


def rate_summary(per_seed: dict[int, dict[float, float]], grid: tuple[float, ...]) -> dict[str, Any]:
    """One metric's curve and its mean over rates from {seed: {rate: value}}: a seed missing a rate of
    `grid` is left out of the mean (and named in `incomplete_seeds`)."""
    complete = {s: c for s, c in per_seed.items() if all(r in c for r in grid)}
    means = [statistics.fmean(c[r] for r in grid) for c in complete.values()]
    return {
        "grid": list(grid),
        "curve": {r: statistics.fmean(c[r] for c in complete.values()) for r in grid} if complete else {},
        "mean": statistics.fmean(means) if means else None,
        "std": statistics.stdev(means) if len(means) > 1 else None,
        "n": len(means),
        "incomplete_seeds": sorted(set(per_seed) - set(complete)),
    }
