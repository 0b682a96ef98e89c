"""The one request type: what to run, from CLI flags, a sweep file (one per setting) or a paper
template (`run --table`) alike. Protocols expand it into `PlannedRun`s; the planner crosses those
with the model specs into `RunSpec`s (torch-free, no imports beyond the standard library)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    protocol: str = "standard"
    models: tuple[str, ...] = ()  # model specs; () = the protocol's quick list; ("all",) = every model
    datasets: tuple[str, ...] = ()  # () = the protocol's default
    setting: str | None = None
    seeds: tuple[int, ...] | None = None
    modalities: tuple[str, ...] | None = None
    rates: tuple[float, ...] | None = None
    selection: str | None = None
    user_set: dict[str, Any] = field(default_factory=dict)  # --set KEY=VALUE for every run
    data_root: str | None = None
    tiny: bool = False
