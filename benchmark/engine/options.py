"""How runs execute (device, precision, threads, data root): torch-free, so executors and the CLI
can carry it without importing the engine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunOptions:
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0  # 0: leave torch's default
    data_root: str | None = None
    # name -> dataset.toml of the corpora the driver registered by path, registered again in each worker
    dataset_cards: dict[str, str] = field(default_factory=dict)
    verbosity: int = 0  # 1: a line per epoch on stderr; 2: also every evaluated split and domain
