"""`feature-analysis`: Fisher z-test analyses of a model's named features (S2LIF Figs. 4-8; docs/architecture.md §8).

A run of this protocol trains like a DG run (default: multi-source setting A on `synth-dg`, as
S2LIF's analyses use multi-source setting A; `--setting B|C`), or like a `standard` run when one
non-DG dataset is given, and then `msabench.evaluation.feature_analysis` (the protocol's
`after_run` hook, called at the end of `runner.execute`) writes into the run directory:

- `features.npz`: the named features (`ModelOutput.features`, time-pooled to (N, D)) on the test
  split of every domain at the epoch the primary selection rule picked, with labels, ids and, for
  the yardstick's accounting, the time-pooled input features per modality;
- `analysis.json`: per domain and pooled over domains
    * Fig. 4/5  across-domain selection consistency: the features selected in each domain, those
                selected in every domain, the retained proportion per modality;
    * Fig. 6    cross-modal independence: per selected text feature, the ratio of selected vision
                features independent of it, and the overall cross-modal independence ratio;
    * Fig. 7    intra-modal independence ratios among the selected features of each modality;
    * Fig. 8    feature-label dependence: the proportion of selected and of removed features whose
                Fisher z-test against the label rejects independence;
    * on synthetic data, where the selection acts on input features: precision and recall of the
      consistently selected features against the ground truth's invariant features.
  Fisher's z: z = atanh(r) * sqrt(n - |S| - 3), two-sided p, alpha 0.05 (`msabench.stats`).

`msabench run --protocol feature-analysis --from-run RUN_ID` analyses a stored run instead of
training (its checkpoint of the primary rule), writing the two files into that run's directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from msabench.core.errors import UserError
from msabench.plan.request import Request
from msabench.protocols.base import PROTOCOLS, PlannedRun, Protocol
from msabench.protocols.dg import MULTI_SETTINGS, SYNTH_DG, resolve_domains

ALPHA = 0.05


@dataclass(frozen=True)
class FeatureAnalysisProtocol(Protocol):
    kind: ClassVar[str] = "feature-analysis"
    alpha: float = ALPHA

    @property
    def analyses_stored_runs(self) -> bool:
        return True

    def after_run(self, spec, run_dir, model, datasets, eval_sets, result, device) -> None:
        """features.npz + analysis.json of the run just trained (`msabench.evaluation.feature_analysis`)."""
        from msabench.evaluation.feature_analysis import analyse_run

        analyse_run(spec, run_dir, model, datasets, eval_sets, result, device)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["default_setting"] = "A (multi-source, as S2LIF's Figs. 4-8)"
        info["alpha"] = self.alpha
        info["outputs"] = ["features.npz", "analysis.json"]
        info["from_run"] = "--from-run RUN_ID analyses a stored run's checkpoint instead of training"
        info["single_dataset"] = "one non-DG --dataset: a standard run (selection val), no cross-domain part"
        return info

    def _is_single(self, datasets: tuple[str, ...]) -> bool:
        if len(datasets) != 1 or datasets[0] == SYNTH_DG:
            return False
        return not datasets[0].startswith(SYNTH_DG + "/")

    def plan(self, request: Request) -> list[PlannedRun]:
        if request.rates not in (None, (), (0.0,)):
            raise UserError("protocol 'feature-analysis' analyses models trained on complete data; drop --rates")
        seeds = request.seeds or self.seeds
        modalities = request.modalities or self.modalities
        datasets = tuple(request.datasets)
        if self._is_single(datasets):
            if request.setting is not None:
                raise UserError("--setting applies to the DG domains (synth-dg or mosi+mosei+meld); drop it for one "
                                "dataset")
            if request.selection not in (None, "val", "last"):
                raise UserError(f"selection {request.selection!r} needs DG domains; with one dataset use val or last")
            rules = (request.selection,) if request.selection else ("val", "last")
            d = datasets[0]
            return [PlannedRun(setting="", datasets=(d,), source_domains=(d,), target_domains=(), seed=s, rate=0.0,
                               modalities=modalities, label_rule="sign", task=None, selection_rules=rules)
                    for s in seeds]
        self.check_setting(request.setting)
        self.check_selection(request.selection)
        domains = resolve_domains(datasets)
        setting = MULTI_SETTINGS[request.setting or "A"]
        missing = [f for f in (*setting.sources, *setting.targets) if f not in domains]
        if missing:
            raise UserError(f"setting {setting.name} needs the domain(s) {', '.join(m.upper() for m in missing)}: "
                            f"add --dataset {' --dataset '.join(missing)} (or use --dataset synth-dg)")
        sources = tuple(domains[f] for f in setting.sources)
        targets = tuple(domains[f] for f in setting.targets)
        rules = (request.selection,) if request.selection else self.selection_rules
        return [PlannedRun(setting=setting.name, datasets=sources + targets, source_domains=sources,
                           target_domains=targets, seed=s, rate=0.0, modalities=modalities,
                           label_rule=self.label_rule, task="classification", selection_rules=rules)
                for s in seeds]


FEATURE_ANALYSIS = PROTOCOLS.add(
    "feature-analysis",
    FeatureAnalysisProtocol(
        name="feature-analysis",
        version="1.0",
        summary="Fisher z analyses of named features (S2LIF Figs. 4-8): independence ratios, feature-label "
                "dependence, across-domain selection consistency; features.npz + analysis.json.",
        seeds=(1, 2, 3),
        selection_rules=("train-domain", "oracle"),
        label_rule="round",
        default_dataset=SYNTH_DG,
        modalities=("t", "v"),
        settings=("A", "B", "C"),
        # the DG yardstick pair (lr as in the DG quick list): features=all selects by L1 on its pooled
        # inputs; features=invariant is the reference whose every selected feature is invariant
        quick_models=("linear_probe", "linear_probe:model.features=invariant"),
        synthetic_policy={"train.patience": 10, "data.scale": 0.1},
        synthetic_caps={"train.epochs": 10},
        real_policy={},
    ),
)
