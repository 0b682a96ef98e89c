"""`dg-single` and `dg-multisource`: S2LIF's domain-generalisation settings (section 4, appendix B,
Tables 1-2; docs/architecture.md §8).

Domains MOSI, MOSEI and MELD: real (`--dataset mosi --dataset mosei --dataset meld`) or the
synthetic DG suite `synth-dg` (domains `synth-dg/mosi`, `synth-dg/mosei`, `synth-dg/meld`, the
default). Three classes with the `round` rule (neutral iff -0.5 <= s <= 0.5: S2LIF's test counts
347/106/233 on MOSI imply it); metric accuracy (+ weighted F1), per domain, sources included.

Settings (`--setting A|B|C`; all three when absent):
  single A: MOSEI -> MOSI, MELD    multi A: MOSEI+MELD -> MOSI
  single B: MOSI -> MELD, MOSEI    multi B: MOSI+MELD  -> MOSEI
  single C: MELD -> MOSI, MOSEI    multi C: MOSI+MOSEI -> MELD
Target train splits are never used (the runner evaluates only their valid and test splits).

Selection, post hoc over the logged epochs (`msabench.evaluation.selection`):
  train-domain  (default) the epoch with the best mean source-valid accuracy
  oracle        the epoch with the best target-valid accuracy (labelled wherever shown)
  lodo          multi-source only: one extra run per source ("lodo helper"), trained on the other
                source(s) and validated on the held-out source's valid split; the epoch with the best
                mean held-out accuracy is applied to the full-source run (`lodo_records` below).
Every run carries all of the protocol's rules, and since v1.1 no early stopping: every rule sees
the same trajectory of `train.epochs` epochs (S2LIF picks the best of its 200 epochs; in v1.0 early
stopping on source validation truncated the epochs `oracle` and `lodo` then searched). `--selection`
never changes a run id; it only decides what is planned: the lodo helpers (2 per
main run) come with the default and with `--selection lodo`, not with `--selection train-domain`
or `oracle`. A helper is a RunSpec with `train_domains` (what it trains on) and `valid_domains`
(the held-out source): `is_lodo_helper`; reports skip helpers as rows.

Presets: a run's model preset is that of its first source domain in the setting's order (multi A:
MOSEI's); a lodo helper trains its main run's recipe (`PlannedRun.preset_domain`), so the epoch it
picks is the main run's recipe's. Before, each helper took its own first training domain's preset.

Modalities t+v by default (S2LIF has no audio). All domains must share one feature space
(`msabench.plan.planner.build_input_spec` exits 2 otherwise); on real public features only text is
shared: `--modalities t`, text through `features.npz` until the text encoder exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from msabench.core.errors import UserError
from msabench.data.names import family_of
from msabench.plan.request import Request
from msabench.protocols.base import PROTOCOLS, PlannedRun, Protocol, Setting

DG_FAMILIES = ("mosi", "mosei", "meld")
SYNTH_DG = "synth-dg"

SINGLE_SETTINGS = {
    "A": Setting("A", ("mosei",), ("mosi", "meld"), "MOSEI -> MOSI, MELD"),
    "B": Setting("B", ("mosi",), ("meld", "mosei"), "MOSI -> MELD, MOSEI"),
    "C": Setting("C", ("meld",), ("mosi", "mosei"), "MELD -> MOSI, MOSEI"),
}
MULTI_SETTINGS = {
    "A": Setting("A", ("mosei", "meld"), ("mosi",), "MOSEI+MELD -> MOSI"),
    "B": Setting("B", ("mosi", "meld"), ("mosei",), "MOSI+MELD -> MOSEI"),
    "C": Setting("C", ("mosi", "mosei"), ("meld",), "MOSI+MOSEI -> MELD"),
}

HELPER_RULES = ("train-domain",)  # in a helper, "train-domain" reads its valid_domains: the held-out source


def _family(name: str) -> str | None:
    fam = family_of(name)
    return fam if fam in DG_FAMILIES else None


def resolve_domains(datasets: Sequence[str]) -> dict[str, str]:
    """family -> dataset name of each DG domain, from `--dataset` values (default `synth-dg`)."""
    names: list[str] = []
    for d in datasets or (SYNTH_DG,):
        if d == SYNTH_DG:
            names.extend(f"{SYNTH_DG}/{f}" for f in DG_FAMILIES)
        else:
            names.append(d)
    out: dict[str, str] = {}
    for name in names:
        fam = _family(name)
        if fam is None:
            raise UserError(
                f"--dataset {name}: the DG protocols take the domains MOSI, MOSEI and MELD: "
                f"--dataset synth-dg (default) or --dataset mosi --dataset mosei --dataset meld"
            )
        if fam in out and out[fam] != name:
            raise UserError(f"--dataset {out[fam]} and --dataset {name} are both the {fam.upper()} domain; give one")
        out[fam] = name
    return out


@dataclass(frozen=True)
class DGProtocol(Protocol):
    kind: ClassVar[str] = "dg"
    multi_source: bool = False

    @property
    def setting_table(self) -> dict[str, Setting]:
        return MULTI_SETTINGS if self.multi_source else SINGLE_SETTINGS

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["settings_detail"] = {
            k: {"sources": list(s.sources), "targets": list(s.targets), "description": s.description}
            for k, s in self.setting_table.items()
        }
        info["domains"] = {"synthetic": [f"{SYNTH_DG}/{f}" for f in DG_FAMILIES], "real": list(DG_FAMILIES)}
        info["task"] = "classification (3 classes, neg=0 neu=1 pos=2)"
        info["metrics"] = ["acc", "f1_weighted"]
        info["default_setting"] = "all of " + ", ".join(self.settings)
        if self.multi_source:
            info["lodo"] = ("one helper run per source (planned by default and with --selection lodo): trained on "
                            "the other source, validated on the held-out one")
        info["selection_note"] = "runs log every rule; --selection only decides what is planned (lodo helpers)"
        info["preset_rule"] = ("a run's model preset (train.lr, weight decay, ...) is that of its first source domain "
                               "in the setting's order (e.g. multi A: MOSEI); lodo helpers train their main run's "
                               "recipe, whichever source they hold out")
        return info

    def check_selection(self, selection: str | None) -> None:
        if selection == "lodo" and not self.multi_source:
            raise UserError("selection 'lodo' needs several source domains; use --protocol dg-multisource")
        super().check_selection(selection)

    def plan(self, request: Request) -> list[PlannedRun]:
        self.check_setting(request.setting)
        self.check_selection(request.selection)
        if request.rates not in (None, (), (0.0,)):
            raise UserError(f"protocol {self.name!r} trains on complete data; use --protocol missing-rate for --rates")
        domains = resolve_domains(request.datasets)
        settings = [request.setting] if request.setting else list(self.settings)
        seeds = request.seeds or self.seeds
        modalities = request.modalities or self.modalities
        # Every rule is answered post hoc from the same logged epochs, so runs always carry all of
        # the protocol's rules (the first drives early stopping): --selection never changes a run id.
        rules = self.selection_rules
        runs: list[PlannedRun] = []
        for name in settings:
            setting = self.setting_table[name]
            needed = [f for f in (*setting.sources, *setting.targets) if f not in domains]
            if needed:
                raise UserError(
                    f"setting {name} of {self.name} needs the domain(s) {', '.join(f.upper() for f in needed)}: "
                    f"add --dataset {' --dataset '.join(needed)} (or use --dataset synth-dg)"
                )
            sources = tuple(domains[f] for f in setting.sources)
            targets = tuple(domains[f] for f in setting.targets)
            for seed in seeds:
                runs.append(PlannedRun(
                    setting=name, datasets=sources + targets, source_domains=sources, target_domains=targets,
                    seed=seed, rate=0.0, modalities=modalities, label_rule=self.label_rule, task="classification",
                    selection_rules=rules, preset_domain=sources[0],
                ))
                if self.multi_source and request.selection in (None, "lodo"):
                    runs.extend(lodo_helpers(name, sources, seed, modalities, self.label_rule))
        return runs


def lodo_helpers(setting: str, sources: Sequence[str], seed: int, modalities: tuple[str, ...],
                 label_rule: str) -> list[PlannedRun]:
    """One helper per source: trained on the other source(s), validated on the held-out one."""
    out = []
    for held_out in sources:
        train = tuple(s for s in sources if s != held_out)
        out.append(PlannedRun(
            setting=setting, datasets=train + (held_out,), source_domains=train, target_domains=(held_out,),
            seed=seed, rate=0.0, modalities=modalities, label_rule=label_rule, task="classification",
            selection_rules=HELPER_RULES, train_domains=train, valid_domains=(held_out,), role="lodo-helper",
            preset_domain=sources[0],  # the main run's recipe, whichever source the helper holds out
        ))
    return out


# --- helpers for reports (pure, torch-free) -----------------------------------------------------------------


def _spec_of(view: Any) -> dict[str, Any]:
    spec = view.spec if hasattr(view, "spec") else view[0]
    return spec.to_dict() if hasattr(spec, "to_dict") else spec


def _records_of(view: Any) -> list[dict[str, Any]]:
    return view.records if hasattr(view, "records") else view[1]


def is_lodo_helper(spec: Any) -> bool:
    """A lodo helper run (not a row of any table: its records feed the main run's `lodo` selection)."""
    spec = spec.to_dict() if hasattr(spec, "to_dict") else spec
    return bool(spec.get("valid_domains"))


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("protocol", "protocol_version", "setting", "model", "config", "impl_version", "seed", "modalities",
            "label_rule", "task", "msabench_version")
    return all(a.get(k) == b.get(k) or (isinstance(a.get(k), (list, tuple)) and list(a[k]) == list(b.get(k) or ()))
               for k in keys)


def lodo_records(main: Any, views: Iterable[Any]) -> list[list[dict[str, Any]]] | None:
    """The records of `main`'s lodo helpers, one list per source, each reduced to the held-out
    source's valid records (what `selection.select_epoch(..., lodo_records=...)` averages); None
    when a source has no finished helper in `views`."""
    spec = _spec_of(main)
    sources = list(spec.get("source_domains") or ())
    if len(sources) < 2:
        return None
    by_held_out: dict[str, list[dict[str, Any]]] = {}
    for view in views:
        h = _spec_of(view)
        if not is_lodo_helper(h) or not _same_model(spec, h):
            continue
        held = list(h["valid_domains"])
        if len(held) != 1 or held[0] not in sources:
            continue
        if sorted(list(h["train_domains"]) + held) != sorted(sources):
            continue
        by_held_out.setdefault(held[0], [r for r in _records_of(view)
                                         if r["split"] == "valid" and r["domain"] == held[0]])
    if set(by_held_out) != set(sources):
        return None
    return [by_held_out[s] for s in sources]


_DG_COMMON = dict(
    seeds=(1, 2, 3),
    label_rule="round",
    default_dataset=SYNTH_DG,
    modalities=("t", "v"),
    settings=("A", "B", "C"),
    # The yardstick pair (docs/architecture.md §5) and the constant floor; at linear_probe's default lr (0.03)
    # both probes converge within 5 epochs on synth-dg.
    # S2LIF itself in its small configuration (`s2lif@quick`: its docstring says how it differs from
    # the paper's recipe) against the probes.
    quick_models=("constant", "linear_probe", "linear_probe:model.features=invariant", "s2lif@quick"),
    # The README's main job (dg-multisource, 3 settings x 3 seeds x the quick list, with the lodo
    # helpers) within 10 minutes on 2 CPU cores; patience = the epoch cap: every epoch is logged
    # for the post-hoc rules.
    # Scale 0.05 (MOSEI train 816, MELD 500, MOSI 64 samples): with more data the all-features
    # probe also finds the invariant directions and the yardstick gap shrinks (+5 points at 0.1).
    # No DG rule or table reads the training splits' metrics (train-domain and lodo read source valid
    # splits, oracle the targets), so they are not evaluated: a third of each epoch on synth-dg.
    synthetic_policy={"train.patience": 8, "data.scale": 0.05, "train.eval_train": False},
    synthetic_caps={"train.epochs": 8},
    real_policy={"train.eval_train": False},
    early_stopping=False,
)

DG_SINGLE = PROTOCOLS.add(
    "dg-single",
    DGProtocol(
        name="dg-single",
        version="1.1",  # 1.1: no early stopping; lodo helpers train their main run's preset
        summary="S2LIF single-source DG: train on one of MOSI/MOSEI/MELD, test on the other two (3 classes).",
        selection_rules=("train-domain", "oracle"),
        multi_source=False,
        **_DG_COMMON,
    ),
)

DG_MULTISOURCE = PROTOCOLS.add(
    "dg-multisource",
    DGProtocol(
        name="dg-multisource",
        version="1.1",  # 1.1: no early stopping; lodo helpers train their main run's preset
        summary="S2LIF multi-source DG: train on two of MOSI/MOSEI/MELD, test on the third (3 classes).",
        selection_rules=("train-domain", "oracle", "lodo"),
        multi_source=True,
        **_DG_COMMON,
    ),
)
