"""`msabench data check PATH`: read and validate data files, and summarise them.

PATH is a data file (an MMSA/MulT .pkl, a synthetic data.pkl, `label.csv`, one of MELD's
`*_sent_emo.csv`, a `features.npz`), a dataset folder (`ROOT/MOSI`), a synthetic folder (with
data.pkl and meta.json), or a data root, in which case every dataset found under it is checked (each
of its layouts that is present: pickle, aligned pickle, label.csv). `check_path` returns the
summary as a dict (the `--json` form); `format_summary` renders it for people.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from msabench.core.errors import UserError, require_regular_file
from msabench.core.types import CLASS_NAMES, IEMOCAP_EMOTIONS
from msabench.data.cards import CARD_FILE
from msabench.data.container import SPLITS, DatasetData, SplitData
from msabench.data.labels import check_rule, class_distribution, to_classes
from msabench.data.names import family_of

SUMMARY_SCHEMA = 1


# ----------------------------------------------------------------------------------- summaries
def _modalities(data: DatasetData) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    split = data.splits.get("train") or next(iter(data.splits.values()))
    if split.text_feats is not None:
        out["t"] = {"kind": "features", "dim": int(split.text_feats.shape[2]),
                    "max_len": int(split.text_feats.shape[1])}
        if split.text_ids is not None:
            out["t"]["token_ids"] = True
    elif split.text_ids is not None:
        out["t"] = {"kind": "tokens", "max_len": int(split.text_ids.shape[1])}
    elif split.raw_text is not None:
        out["t"] = {"kind": "raw text"}
    for m, values in (("a", split.audio), ("v", split.vision)):
        if values is not None:
            out[m] = {"kind": "features", "dim": int(values.shape[2]), "max_len": int(values.shape[1])}
    return out


def _lengths(split: SplitData) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for m in ("t", "a", "v"):
        values, lengths = split.modality(m)
        if values is None or lengths is None or len(lengths) == 0:
            continue
        lengths = np.asarray(lengths)
        out[m] = {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2), "max": int(lengths.max())}
    return out


def _labels(data: DatasetData, split: SplitData, rule: str) -> dict[str, Any]:
    if data.label_kind == "regression" and split.regression is not None:
        reg = split.regression
        return {
            "classes": class_distribution(to_classes(reg, rule)),
            "scores": {"min": round(float(reg.min()), 4), "mean": round(float(reg.mean()), 4),
                       "max": round(float(reg.max()), 4)},
        }
    if data.label_kind == "classification" and split.classification is not None:
        return {"classes": class_distribution(split.classification)}
    if data.label_kind == "multilabel" and split.multilabel is not None:
        pos = split.multilabel.sum(axis=0)
        return {"positives": {e: int(c) for e, c in zip(IEMOCAP_EMOTIONS, pos)}}
    return {}


def summarize(data: DatasetData, label_rule: str = "sign", *, path: str | None = None) -> dict[str, Any]:
    """The check summary of one loaded (validated) dataset."""
    order = [s for s in SPLITS if s in data.splits] + [s for s in data.splits if s not in SPLITS]
    splits = {}
    for s in order:
        split = data.splits[s]
        splits[s] = {"size": len(split), **_labels(data, split, label_rule), "lengths": _lengths(split)}
    out: dict[str, Any] = {
        "name": data.name,
        "family": data.family,
        "synthetic": data.synthetic,
        "label_kind": data.label_kind,
        "label_rule": label_rule if data.label_kind == "regression" else None,
        "source": data.source,
        "data_hash": data.data_hash,
        "neg_inf_count": int(data.neg_inf_count),
        "sizes": {s: len(data.splits[s]) for s in order},
        "modalities": _modalities(data),
        "splits": splits,
    }
    if path is not None:
        out["path"] = path
    if any(split.unimodal for split in data.splits.values()):
        out["unimodal_labels"] = sorted({m for split in data.splits.values() for m in split.unimodal})
    if data.vocab is not None:
        out["vocab_size"] = len(data.vocab)
    return out


# ----------------------------------------------------------------------------------- loading
def _synthetic_file(pkl: Path) -> DatasetData:
    from msabench.data.readers import read_mmsa_pickle
    from msabench.data.readers_common import infer_name

    meta_path = pkl.with_name("meta.json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{meta_path} is not readable JSON ({exc}); regenerate the folder with `msabench data "
                        "synth`.") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path} is not a JSON object; regenerate the folder with `msabench data synth`.")
    name = str(meta.get("name") or meta.get("preset") or meta.get("dataset") or pkl.parent.name)
    family = meta.get("family") or family_of(name)
    if family not in ("mosi", "mosei", "sims", "meld", "iemocap"):
        family = infer_name(pkl) or str(family)
    data = read_mmsa_pickle(pkl, name=name, family=str(family), synthetic=True, where=os.fspath(pkl))
    vocab_path = pkl.with_name("vocab.txt")
    if vocab_path.is_file():
        try:
            data.vocab = vocab_path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UserError(f"{vocab_path} is not UTF-8; regenerate the folder with `msabench data synth`.") from None
        data.special_ids = {t.strip("[]").lower(): i for i, t in enumerate(data.vocab)
                            if t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")}
    data.source = os.fspath(pkl.parent)
    return data


def _synthetic_folder(folder: Path) -> DatasetData:
    """A synthetic folder read from its arrays (as the runs read it), then validated like any file."""
    from msabench.data.synth import read_folder
    from msabench.data.validate import validate_dataset

    try:
        data = read_folder(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{folder} is not a readable synthetic folder ({type(exc).__name__}: {exc}); regenerate it "
                        "with `msabench data synth`.") from None
    data.source = os.fspath(folder)
    return validate_dataset(data, where=os.fspath(folder))


def _card(path: Path) -> DatasetData:
    """A corpus registered from its card, read as the runs read it."""
    from msabench.data.datasets import load_dataset, register_card

    return load_dataset(register_card(path).name)


def _pickle_file(p: Path) -> DatasetData:
    from msabench.data import readers

    if p.name == "data.pkl" and p.with_name("meta.json").is_file():
        return _synthetic_file(p)
    if readers.looks_like_mult(p):
        return readers.read_mult_pickle(p, where=os.fspath(p))
    return readers.read_mmsa_pickle(p, where=os.fspath(p))


def _meld_single(p: Path) -> DatasetData:
    from msabench.data import readers
    from msabench.data.validate import validate_dataset

    split_name, split = readers.read_meld_csv(p, where=os.fspath(p))
    data = DatasetData(
        name="meld", family="meld", splits={split_name: split}, label_kind="classification",
        synthetic=False, data_hash=readers.files_hash([p]), source=os.fspath(p),
    )
    return validate_dataset(data, where=os.fspath(p), splits=[split_name])


def _csv_file(p: Path) -> DatasetData:
    from msabench.data import readers

    if p.name.lower() in ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"):
        return _meld_single(p)
    return readers.read_label_csv(p, where=os.fspath(p), features=None)


def _npz_file(p: Path) -> DatasetData:
    from msabench.data import readers
    from msabench.data.readers_common import as_float, as_ids, as_int
    from msabench.data.validate import validate_dataset

    label_csv = p.with_name("label.csv")
    if label_csv.is_file():
        return readers.read_label_csv(label_csv, where=os.fspath(label_csv), features=p, features_where=os.fspath(p))
    meld = [p.with_name(f) for f in readers.MELD_FILES.values()]
    if all(f.is_file() for f in meld):
        return readers.read_meld(p.parent, features=p)
    # Features alone: ids, shapes, lengths and finiteness.
    where = os.fspath(p)
    arrays = readers.read_npz(p)
    if "id" not in arrays:
        raise UserError(f"{where} lacks 'id' (it has: {', '.join(sorted(arrays)) or 'nothing'}); features.npz needs an "
                        "id array.")
    split = SplitData(ids=as_ids(arrays["id"], f"{where} id"))
    for key, attr in (("text", "text_feats"), ("audio", "audio"), ("vision", "vision")):
        if key in arrays:
            values = as_float(arrays[key], f"{where} {key}", (2, 3))
            if values.ndim == 2:
                values = values[:, None, :]
            lengths = as_int(arrays[f"{key}_lengths"], f"{where} {key}_lengths") if f"{key}_lengths" in arrays else \
                np.full(values.shape[0], values.shape[1], dtype=np.int64)
            setattr(split, attr, values)
            setattr(split, f"{key}_lengths", lengths)
    if split.text_feats is None and split.audio is None and split.vision is None:
        raise UserError(f"{where} holds none of text, audio, vision; add at least one feature array.")
    data = DatasetData(name=p.parent.name or "features", family="", splits={"all": split}, label_kind="",
                       synthetic=False, data_hash=readers.files_hash([p]), source=where)
    return validate_dataset(data, where=where, splits=["all"], score_range=None)


def _check_root(root: Path, only: str | None = None) -> list[DatasetData]:
    from msabench.data.datasets import DATASETS, REAL_NAMES, load_real

    found: list[DatasetData] = []
    for name in REAL_NAMES:
        if only is not None and name != only:
            continue
        info = DATASETS.get(name)
        for source, files in info.files.items():
            if any((root / f).is_file() for f in files):
                data = load_real(info, root, source)
                data.name, data.family = info.name, info.family
                found.append(data)
    return found


def _check_dir(d: Path) -> list[DatasetData]:
    from msabench.data.datasets import REAL_NAMES

    if (d / "data.pkl").is_file():
        return [_pickle_file(d / "data.pkl")]
    if (d / "arrays").is_dir() and (d / "meta.json").is_file():  # a synthetic folder without MMSA's pickle
        return [_synthetic_folder(d)]
    if (d / CARD_FILE).is_file():
        return [_card(d / CARD_FILE)]
    found = _check_root(d)
    if found:
        return found
    if d.name.lower() in REAL_NAMES:  # a dataset folder: ROOT/MOSI
        found = _check_root(d.parent, only=d.name.lower())
        if found:
            return found
    metas = [*d.glob("*/meta.json"), *d.glob("*/*/meta.json")]
    synth = sorted(p.parent for p in metas if (p.parent / "arrays").is_dir() or (p.parent / "data.pkl").is_file())
    cards = sorted(d.glob(f"*/{CARD_FILE}"))
    if synth or cards:
        return [_check_dir(p)[0] for p in synth] + [_card(p) for p in cards]
    from msabench.data.readers_common import DATA_ROOT_HINT

    raise UserError(f"no dataset found under {d}; {DATA_ROOT_HINT}, or give a data file.")


def check_path(path: str | os.PathLike[str], label_rule: str = "sign") -> dict[str, Any]:
    """Read and validate every dataset at `path`; UserError on the first problem.

    Returns {"schema", "path", "label_rule", "datasets": [summary, ...]} where each summary has
    name, family, label_kind, source, data_hash, neg_inf_count, sizes, modalities and per split
    size, label distribution (class counts under `label_rule` for regression data, the file's
    own classes for MELD, positives per emotion for IEMOCAP) and length statistics.
    """
    check_rule(label_rule)
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise UserError(f"{os.fspath(path)} does not exist; give a data file (.pkl, label.csv, a MELD csv, "
                        "features.npz) or a data root.")
    require_regular_file(p, os.fspath(path))
    if p.is_dir():
        datasets = _check_dir(p)
    else:
        suffix = p.suffix.lower()
        if suffix in (".pkl", ".pickle"):
            datasets = [_pickle_file(p)]
        elif suffix == ".csv":
            datasets = [_csv_file(p)]
        elif suffix == ".npz":
            datasets = [_npz_file(p)]
        elif suffix == ".toml":
            datasets = [_card(p)]
        else:
            raise UserError(
                f"{os.fspath(path)} is not a data file msabench reads; give a .pkl, label.csv, a MELD csv, "
                "features.npz, a dataset card (dataset.toml) or a data root."
            )
    return {
        "schema": SUMMARY_SCHEMA,
        "path": os.fspath(path),
        "label_rule": label_rule,
        "datasets": [summarize(d, label_rule) for d in datasets],
    }


# ----------------------------------------------------------------------------------- text form
def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    def cells(row):
        return (c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return ["  " + "  ".join(cells(r)).rstrip() for r in rows]


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable form of `check_path`'s result."""
    lines: list[str] = []
    for ds in summary.get("datasets", []):
        kind = "synthetic" if ds.get("synthetic") else "real"
        lines.append(f"{ds['name']} ({kind}, family {ds['family'] or '-'}, {ds['label_kind'] or 'no'} labels): "
                     f"{ds['source']}")
        lines.append(f"  data hash {ds['data_hash']}")
        mods = []
        for m, info in ds["modalities"].items():
            if "dim" in info:
                mods.append(f"{m} {info['dim']} x "
                            f"{info['max_len']}" + (" (+ token ids)" if info.get("token_ids") else ""))
            elif "max_len" in info:
                mods.append(f"{m} tokens x {info['max_len']}")
            else:
                mods.append(f"{m} {info['kind']}")
        lines.append(f"  modalities: {', '.join(mods) or 'none'}")
        if ds.get("vocab_size"):
            lines.append(f"  vocabulary: {ds['vocab_size']} tokens")
        if ds["label_kind"] == "multilabel":
            names = list(IEMOCAP_EMOTIONS)
            header = ["split", "size", *names]
            note = "positives per emotion"
        elif ds["label_kind"]:
            names = list(CLASS_NAMES)
            header = ["split", "size", *names]
            note = f"classes by the {ds['label_rule']} rule" if ds["label_rule"] else "the file's classes"
        else:
            names, header, note = [], ["split", "size"], ""
        rows = [header]
        for s, info in ds["splits"].items():
            counts = info.get("classes") or info.get("positives") or {}
            rows.append([s, str(info["size"]), *[str(counts.get(n, "")) for n in names]])
        lines.extend(_table(rows))
        if note:
            lines.append(f"  ({note})")
        if ds["label_kind"] == "regression":
            ranges = ", ".join(
                f"{s} [{i['scores']['min']:g}, "
                f"{i['scores']['max']:g}]" for s, i in ds["splits"].items() if "scores" in i
            )
            lines.append(f"  scores: {ranges}")
        if ds.get("unimodal_labels"):
            lines.append(f"  unimodal labels: {', '.join(ds['unimodal_labels'])}")
        lines.append(f"  audio -inf set to 0: {ds['neg_inf_count']}")
        lines.append("")
    n = len(summary.get("datasets", []))
    lines.append(f"{n} dataset{'s' if n != 1 else ''} checked: OK")
    return "\n".join(lines)
