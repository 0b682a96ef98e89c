"""Protocols as versioned data (torch-free; protocols never import models).

A protocol says which datasets and settings it runs, with which seeds, label rule, selection
rules and policy, and expands a request into `PlannedRun`s. `msabench.plan.planner` crosses those
with model specs (config resolution, compatibility checks, data hashes) into `RunSpec`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msabench.core.errors import UserError, did_you_mean
from msabench.core.registry import Registry

PROTOCOLS: Registry[Protocol] = Registry("protocol")


@dataclass(frozen=True)
class Setting:
    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class PlanRequest:
    datasets: tuple[str, ...] = ()
    setting: str | None = None
    seeds: tuple[int, ...] | None = None
    modalities: tuple[str, ...] | None = None
    rates: tuple[float, ...] | None = None
    selection: str | None = None
    synthetic_default: str = ""


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


@dataclass(frozen=True)
class Protocol:
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

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "summary": self.summary,
            "settings": list(self.settings), "selection_rules": list(self.selection_rules),
            "default_selection": self.selection_rules[0], "seeds": list(self.seeds),
            "label_rule": self.label_rule, "default_dataset": self.default_dataset,
            "quick_models": list(self.quick_models), "modalities": list(self.modalities),
            "synthetic_policy": self.synthetic_policy, "real_policy": self.real_policy,
            "synthetic_caps": self.synthetic_caps,
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

    def plan(self, request: PlanRequest) -> list[PlannedRun]:  # pragma: no cover - abstract
        raise NotImplementedError
