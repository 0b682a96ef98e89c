"""Datasets registered from a card: a `dataset.toml` beside the files (docs/data-formats.md).

A card names a corpus, its layout (`label-csv`: MMSA's label.csv + an optional features.npz;
`mmsa-pkl`: an MMSA feature pickle), its files relative to the card's folder, its labels
(`label_range = [lo, hi]` for scores, or `classes` for the three sentiment classes), the model
preset family, and the feature dims, which are checked on every read. A card is found by path
(`--dataset ./corpus` or `./corpus/dataset.toml`) or by name under the data root
(`DATA_ROOT/<folder>/dataset.toml` whose `name` is the one asked for). Its data goes through the same
readers and validation as the built-in real datasets and is hashed the same way (its files' bytes).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msabench.core.errors import UserError, did_you_mean
from msabench.data.names import FAMILIES, SYNTHETIC_PREFIX

CARD_FILE = "dataset.toml"
LAYOUTS = {"label-csv": ("labels", "features"), "mmsa-pkl": ("pickle",)}
REQUIRED_FILES = {"label-csv": ("labels",), "mmsa-pkl": ("pickle",)}
CLASSES = ("negative", "neutral", "positive")  # the harness's class order (neg=0, neu=1, pos=2)
CARD_KEYS = ("name", "description", "family", "layout", "files", "label_range", "classes", "dims")
MODALITY_NAMES = {"t": "text", "a": "audio", "v": "vision"}
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class DatasetCard:
    name: str
    path: Path  # the card file; files are relative to its folder
    family: str
    layout: str
    files: dict[str, str]
    label_kind: str  # regression | classification
    label_range: tuple[float, float] | None
    dims: dict[str, int] = field(default_factory=dict)
    description: str = ""

    @property
    def folder(self) -> Path:
        return self.path.parent

    def file(self, role: str) -> Path | None:
        return self.folder / self.files[role] if role in self.files else None


def card_file(arg: str | os.PathLike[str]) -> Path | None:
    """The card a `--dataset` value points at (a folder holding dataset.toml, or a .toml file), else None."""
    p = Path(os.path.expanduser(os.fspath(arg)))
    if p.is_dir() and (p / CARD_FILE).is_file():
        return p / CARD_FILE
    if p.suffix == ".toml" and p.is_file():
        return p
    return None


def read_card(path: str | os.PathLike[str]) -> DatasetCard:
    """Parse and check a card; UserError naming the card, the key and the fix."""
    path = Path(path)
    where = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where} is not valid TOML ({exc}); fix the card.") from None
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8; save the card as UTF-8.") from None
    except OSError as exc:
        raise UserError(f"{where}: cannot read it ({exc.strerror or exc}); check the path.") from None
    unknown = [k for k in raw if k not in CARD_KEYS]
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}.{did_you_mean(unknown[0], CARD_KEYS)} A card holds: "
                        f"{', '.join(CARD_KEYS)}.")
    name = _required(raw, "name", str, where)
    if not _NAME.fullmatch(name) or name.startswith(SYNTHETIC_PREFIX):
        raise UserError(f"{where}: name {name!r} is not allowed; use lower-case letters, digits, '-', '_' or '.', "
                        f"not starting with '{SYNTHETIC_PREFIX}' (at most 64 characters).")
    family = _required(raw, "family", str, where)
    if family not in FAMILIES:
        raise UserError(f"{where}: family {family!r} is not one of {', '.join(FAMILIES)}."
                        f"{did_you_mean(family, FAMILIES)} The family picks the models' per-dataset presets: "
                        "choose the closest corpus.")
    layout = _required(raw, "layout", str, where)
    if layout not in LAYOUTS:
        raise UserError(f"{where}: layout {layout!r} is not one of {', '.join(LAYOUTS)}."
                        + did_you_mean(layout, LAYOUTS))
    files = _files(raw.get("files"), layout, path, where)
    label_kind, label_range = _labels(raw, layout, family, where)
    dims = _dims(raw.get("dims"), where)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{where}: description must be a string.")
    return DatasetCard(name=name, path=path.resolve(), family=family, layout=layout, files=files,
                       label_kind=label_kind, label_range=label_range, dims=dims, description=description)


def _required(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in raw:
        raise UserError(f"{where} lacks {key!r}; a card needs name, family, layout, files, label_range or classes, "
                        "and dims (see docs/data-formats.md).")
    if not isinstance(raw[key], kind):
        raise UserError(f"{where}: {key} must be a {kind.__name__}, got {raw[key]!r}.")
    return raw[key]


def _files(value: Any, layout: str, path: Path, where: str) -> dict[str, str]:
    roles = LAYOUTS[layout]
    if not isinstance(value, dict):
        raise UserError(f"{where}: files must be a table ([files]) with {', '.join(roles)} for layout {layout}.")
    for role, rel in value.items():
        if role not in roles:
            raise UserError(f"{where}: files.{role} is not a file of layout {layout} (it has: {', '.join(roles)})."
                            + did_you_mean(role, roles))
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise UserError(f"{where}: files.{role} = {rel!r} must be a path relative to the card's folder, inside it.")
    missing = [r for r in REQUIRED_FILES[layout] if r not in value]
    if missing:
        raise UserError(f"{where}: files lacks {', '.join(missing)}; layout {layout} needs it.")
    return dict(value)


def _labels(raw: dict[str, Any], layout: str, family: str, where: str) -> tuple[str, tuple[float, float] | None]:
    if ("label_range" in raw) == ("classes" in raw):
        raise UserError(f"{where}: give label_range = [lo, hi] (sentiment scores) or classes (sentiment classes), "
                        "exactly one of them.")
    if "classes" in raw:
        if raw["classes"] != list(CLASSES):
            raise UserError(f"{where}: classes = {raw['classes']!r}; the harness scores three sentiment classes, "
                            f"classes = {list(CLASSES)!r} (stored as 0, 1, 2 in that order): map your labels onto "
                            "them.")
        if layout != "mmsa-pkl":
            raise UserError(f"{where}: classes need layout mmsa-pkl (classification_labels); label.csv holds "
                            "scores: give label_range instead.")
        return "classification", None
    rng = raw["label_range"]
    if (not isinstance(rng, list) or len(rng) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                               and math.isfinite(x) for x in rng) or rng[0] >= rng[1]):
        raise UserError(f"{where}: label_range = {rng!r} must be two finite numbers [lo, hi] with lo < hi.")
    lo, hi = float(rng[0]), float(rng[1])
    if family == "sims" and (lo < -1 or hi > 1):
        raise UserError(f"{where}: family sims scores with SIMS's metrics, which clip to [-1, 1], but label_range is "
                        f"[{lo:g}, {hi:g}]: choose family mosi (or rescale the labels).")
    return "regression", (lo, hi)


def _dims(value: Any, where: str) -> dict[str, int]:
    if value is None:
        return {}  # no feature arrays (text through an encoder only); checked on read like any dims
    if not isinstance(value, dict):
        raise UserError(f"{where}: dims must be a table ([dims]) giving the feature dim of each modality the files "
                        "hold, e.g. t = 768, a = 74, v = 35.")
    out = {}
    for m, d in value.items():
        if m not in MODALITY_NAMES:
            raise UserError(f"{where}: dims.{m} is not a modality; use t, a or v.")
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise UserError(f"{where}: dims.{m} = {d!r} must be a positive whole number.")
        out[m] = d
    return out


def find_card(name: str, root: Path) -> Path | None:
    """The card under `root` whose name is `name` (`root/<name>/dataset.toml` first, then any
    `root/*/dataset.toml`); None when there is none. Two cards of one name: UserError."""
    direct = root / name / CARD_FILE
    if direct.is_file() and read_card(direct).name == name:
        return direct
    found = [p for p in sorted(root.glob(f"*/{CARD_FILE}")) if p != direct and _card_name(p) == name]
    if len(found) > 1:
        raise UserError(f"{len(found)} cards under {root} are named {name!r} ({', '.join(map(str, found[:3]))}); "
                        "rename one.")
    return found[0] if found else None


def card_names(root: Path) -> list[str]:
    """The names of the cards under `root` (`root/*/dataset.toml`), for "did you mean"."""
    return sorted({n for p in root.glob(f"*/{CARD_FILE}") if (n := _card_name(p))})


def _card_name(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            name = tomllib.load(fh).get("name")
    except (OSError, ValueError):
        return None  # an unreadable card is named when it is asked for by its folder
    return name if isinstance(name, str) else None


def check_dims(card: DatasetCard, have: dict[str, int]) -> None:
    """The dims read must be the card's: a modality either side only, or another dim, is a UserError."""
    for m in ("t", "a", "v"):
        want, got = card.dims.get(m), have.get(m)
        if want == got:
            continue
        what = MODALITY_NAMES[m]
        if got is None:
            raise UserError(f"{card.name}: {card.path} gives dims.{m} = {want} but its files hold no {what} features; "
                            f"drop dims.{m} or add the {what} features.")
        if want is None:
            raise UserError(f"{card.name}: its files hold {got}-d {what} features but {card.path} gives no dims.{m}; "
                            f"add {m} = {got} under [dims].")
        raise UserError(f"{card.name}: {what} features are {got}-d but {card.path} says dims.{m} = {want}; fix the "
                        "card or the features.")
