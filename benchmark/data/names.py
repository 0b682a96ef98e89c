"""What a dataset name says by itself: its family and whether it is synthetic (torch-free, no I/O).

Synthetic names are the presets `synth-<family>` and the DG suite `synth-dg` with its domains
`synth-dg/<family>` (`msabench.data.synth`); a real dataset's name is its family (`mosi`, ...;
`msabench.data.datasets`). Every caller that asks "which family" or "is it synthetic" for a name
asks here, so the planner, the protocols, the report and the tracking can never disagree. A corpus
registered from a card (`msabench.data.cards`) is real and its name names no family: its card
declares one, which the planner reads from the registry (`msabench.data.datasets.lookup`).
"""

from __future__ import annotations

FAMILIES = ("mosi", "mosei", "sims", "meld", "iemocap")
SYNTHETIC_PREFIX = "synth-"


def is_synthetic(name: str) -> bool:
    """`synth-mosi`, `synth-dg`, `synth-dg/meld` -> True; `mosi` -> False."""
    return str(name).startswith(SYNTHETIC_PREFIX)


def all_synthetic(names) -> bool:
    names = list(names)
    return bool(names) and all(is_synthetic(n) for n in names)


def base_name(name: str) -> str:
    """The real dataset a name stands for: `synth-mosi`, `synth-dg/mosi`, `mosi` -> `mosi`
    (`synth-dg` -> `dg`; an unknown name is returned without the synthetic prefix)."""
    return str(name).rsplit("/", 1)[-1].removeprefix(SYNTHETIC_PREFIX)


def family_of(name: str) -> str:
    """The preset family (`mosi` | `mosei` | `sims` | `meld` | `iemocap`), or "" when the name names
    none (the `synth-dg` suite as a whole, an unknown name)."""
    base = base_name(name)
    return base if base in FAMILIES else ""
