"""`standard`: one dataset, train/valid/test (docs/architecture.md §8).

Selection `val` (valid MAE for regression, accuracy for classes, mean F1 for multi-label),
patience 8, 5 seeds, class heads on regression data use the `sign` rule. On real data the papers'
training settings stand; on the synthetic suite the policy caps epochs so the quick list runs in
minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from msabench.core.errors import UserError
from msabench.plan.request import Request
from msabench.protocols.base import PROTOCOLS, PlannedRun, Protocol


@dataclass(frozen=True)
class StandardProtocol(Protocol):
    def plan(self, request: Request) -> list[PlannedRun]:
        self.check_setting(request.setting)
        self.check_selection(request.selection)
        if request.rates not in (None, (), (0.0,)):
            raise UserError("protocol 'standard' trains on complete data; use --protocol missing-rate for --rates")
        datasets = request.datasets or (self.default_dataset,)
        seeds = request.seeds or self.seeds
        modalities = request.modalities or self.modalities
        rules = (request.selection,) if request.selection else self.selection_rules
        return [
            PlannedRun(setting="", datasets=(d,), source_domains=(d,), target_domains=(), seed=s, rate=0.0,
                       modalities=modalities, label_rule=self.label_rule, task=None, selection_rules=rules)
            for d in datasets for s in seeds
        ]


STANDARD = PROTOCOLS.add(
    "standard",
    StandardProtocol(
        name="standard",
        version="1.0",
        summary="One dataset, train/valid/test; the epoch with the best validation metric.",
        seeds=(1, 2, 3, 4, 5),
        selection_rules=("val", "last"),
        label_rule="sign",
        default_dataset="synth-mosi",
        # tfn is left out of the quick list: its (33 x 33 x 129)-wide fusion tensor makes it ~5x
        # slower per step than lf_dnn on a CPU; run it with --model tfn.
        quick_models=("constant", "linear_probe", "lf_dnn"),
        synthetic_policy={"train.patience": 8},
        synthetic_caps={"train.epochs": 10},
        real_policy={"train.patience": 8},
    ),
)
