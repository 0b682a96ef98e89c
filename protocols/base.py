"""Protocols as versioned data (torch-free; protocols never import models).

A protocol says which datasets and settings it runs, with which seeds, label rule, selection
rules and policy, and expands a `msabench.plan.request.Request` into `PlannedRun`s.
`msabench.plan.planner` crosses those with model specs (config resolution, compatibility checks,
data hashes) into `RunSpec`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from msabench.core.errors import UserError, did_you_mean
from msabench.core.registry import Registry
from msabench.plan.request import Request

PROTOCOLS: Registry[Protocol] = Registry("protocol")


@dataclass(frozen=True)
class Setting:
    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class PlannedRun:
    """A protocol-level run: everything but the model."""

    setting: str
    datasets: tuple[str, ...]  # every dataset the run touches (sources, then targets)
    source_domains: tuple[str, ...]
    target_domains: tuple[str, ...]
    seed: int
    rate: float
    modalities: tuple[str, ...]
    label_rule: str
    task: str | None  # None: decided by the dataset's labels (standard)
    selection_rules: tuple[str, ...]
    train_domains: tuple[str, ...] = ()
    valid_domains: tuple[str, ...] = ()
    eval_rates: tuple[float, ...] = ()
    role: str = "main"  # "main" | "lodo-helper"
    # The domain whose family picks the model's preset (empty: the first dataset). A multi-domain run
    # takes its first source's, in the setting's order; a lodo helper its main run's.
    preset_domain: str = ""


@dataclass(frozen=True)
class Protocol:
    """A protocol's data, its planning, and its behaviour: callers read `kind`, `is_dg`,
    `is_missing_rate`, `tests_every_rate` and call `after_run`, never compare protocol names."""

    # standard | dg | missing-rate | feature-analysis: what kind of study it is (report layouts,
    # templates and tables read it).
    kind: ClassVar[str] = "standard"

    name: str
    version: str
    summary: str
    seeds: tuple[int, ...]
    selection_rules: tuple[str, ...]  # the first is the default
    label_rule: str
    default_dataset: str
    quick_models: tuple[str, ...]
    modalities: tuple[str, ...] = ("t", "a", "v")
    synthetic_policy: dict[str, Any] = field(default_factory=dict)
    real_policy: dict[str, Any] = field(default_factory=dict)
    # Upper bounds (e.g. train.epochs) applied on the synthetic suite after the policy: a model whose
    # own default is lower keeps it; `--set` and model specs can still go above.
    synthetic_caps: dict[str, Any] = field(default_factory=dict)
    settings: tuple[str, ...] = ()
    # "static": masks at the run's rate, fixed for the run; "random-per-epoch": training masks with a
    # random rate per sample and modality, redrawn every epoch (missing-random, LNLN).
    train_masks: str = "static"
    # False: every epoch up to train.epochs is trained and logged (the DG protocols: every selection
    # rule of a run must see the same trajectory, and S2LIF picks the best of all its epochs).
    early_stopping: bool = True

    def __post_init__(self) -> None:
        from msabench.evaluation.selection import SELECTION_RULES

        unknown = [r for r in self.selection_rules if r not in SELECTION_RULES]
        if unknown:
            raise ValueError(f"protocol {self.name!r}: unregistered selection rules {unknown}")

    @property
    def is_dg(self) -> bool:
        return self.kind == "dg"

    @property
    def is_missing_rate(self) -> bool:
        return self.kind == "missing-rate"

    @property
    def tests_every_rate(self) -> bool:
        """True when one trained model is tested at every rate of the grid (`RunSpec.eval_rates`)."""
        return False

    @property
    def analyses_stored_runs(self) -> bool:
        """True when `run --from-run RUN_ID` applies (the after-run work on a stored run)."""
        return False

    def after_run(self, spec, run_dir, model, datasets, eval_sets, result, device) -> None:
        """Called by the runner after a run's records, predictions and checkpoints are written
        (e.g. feature analysis writes features.npz + analysis.json); torch is already loaded there."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "summary": self.summary,
            "settings": list(self.settings), "selection_rules": list(self.selection_rules),
            "default_selection": self.selection_rules[0], "seeds": list(self.seeds),
            "label_rule": self.label_rule, "default_dataset": self.default_dataset,
            "quick_models": list(self.quick_models), "modalities": list(self.modalities),
            "synthetic_policy": self.synthetic_policy, "real_policy": self.real_policy,
            "synthetic_caps": self.synthetic_caps, "kind": self.kind, "early_stopping": self.early_stopping,
        }

    def policy(self, synthetic: bool) -> dict[str, Any]:
        return dict(self.synthetic_policy if synthetic else self.real_policy)

    def caps(self, synthetic: bool) -> dict[str, Any]:
        return dict(self.synthetic_caps) if synthetic else {}

    def check_selection(self, selection: str | None) -> None:
        if selection is not None and selection not in self.selection_rules:
            raise UserError(
                f"protocol {self.name!r} has no selection rule {selection!r};"
                f" use one of {', '.join(self.selection_rules)}"
            )

    def check_setting(self, setting: str | None) -> None:
        if setting is not None and setting not in self.settings:
            if not self.settings:
                raise UserError(f"protocol {self.name!r} has no settings; drop --setting")
            raise UserError(
                f"unknown setting {setting!r} of protocol {self.name!r}.{did_you_mean(setting, self.settings)}"
            )

    def plan(self, request: Request) -> list[PlannedRun]:  # pragma: no cover - abstract
        raise NotImplementedError


def protocol_of(name: str) -> Protocol | None:
    """The registered protocol `name`, or None for a name this version does not know (an old store);
    import `msabench.protocols` first so every protocol is registered."""
    return PROTOCOLS.get(name) if name in PROTOCOLS else None


def kind_of(name: str) -> str:
    protocol = protocol_of(name)
    return protocol.kind if protocol is not None else ""


def names_of_kind(kind: str) -> tuple[str, ...]:
    return tuple(n for n, p in PROTOCOLS.items() if p.kind == kind)
