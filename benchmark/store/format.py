"""The on-disk formats of a run folder: schema versions, predictions.npz keys, records.jsonl lines.

Torch-free; used by `msabench.store.runs` and by readers (report, export) that parse keys or records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from msabench import __version__
from msabench.core.types import _json_default
from msabench.store.io import StoreError

RECORD_SCHEMA = 1
ENV_SCHEMA = 1
FAILED_SCHEMA = 1
DONE_SCHEMA = 1
RECORD_KEYS = ("schema", "run_id", "epoch", "split", "domain", "rate", "metrics", "loss", "seconds")


# -- predictions.npz keys --------------------------------------------------------------------------
class PredKey(NamedTuple):
    kind: str  # "ids" | "pred" | another first segment
    epoch: int | None
    split: str
    domain: str
    rate: float  # 0.0 when the key has no rate suffix


_RATE_RE = re.compile(r"rate([0-9.eE+-]+)")


def _eval_key(split: str, domain: str, rate: float = 0.0) -> str:
    return f"{split}/{domain}" + (f"/rate{rate:g}" if rate else "")


def ids_key(split: str, domain: str, rate: float = 0.0) -> str:
    return f"ids/{_eval_key(split, domain, rate)}"


def y_key(split: str, domain: str, rate: float = 0.0) -> str:
    return f"y/{_eval_key(split, domain, rate)}"


def pred_key(epoch: int, split: str, domain: str, rate: float = 0.0) -> str:
    return f"pred/{int(epoch)}/{_eval_key(split, domain, rate)}"


def parse_key(key: str) -> PredKey | None:
    """Split an `ids/...` or `pred/...` key; None for keys outside that scheme."""
    parts = key.split("/")
    kind = parts[0]
    if kind == "pred":
        if len(parts) < 4 or not parts[1].lstrip("-").isdigit():
            return None
        epoch, split, rest = int(parts[1]), parts[2], parts[3:]
    elif kind in ("ids", "y"):
        if len(parts) < 3:
            return None
        epoch, split, rest = None, parts[1], parts[2:]
    else:
        return None
    rate = 0.0
    m = _RATE_RE.fullmatch(rest[-1])
    if m and len(rest) > 1:
        try:
            rate = float(m.group(1))
            rest = rest[:-1]
        except ValueError:
            pass
    return PredKey(kind, epoch, split, "/".join(rest), rate)


class Predictions(dict):
    """predictions.npz as {key: array} with lookups by (epoch, split, domain, rate)."""

    def ids(self, split: str, domain: str, rate: float = 0.0) -> np.ndarray:
        key = ids_key(split, domain, rate)
        if key not in self and rate:
            key = ids_key(split, domain)
        return self[key]

    def y(self, split: str, domain: str, rate: float = 0.0) -> np.ndarray | None:
        """The labels of an evaluation set; None for runs recorded before they were stored."""
        key = y_key(split, domain, rate)
        if key not in self and rate:
            key = y_key(split, domain)
        return self.get(key)

    def pred(self, epoch: int, split: str, domain: str, rate: float = 0.0) -> np.ndarray:
        return self[pred_key(epoch, split, domain, rate)]

    def epochs(self) -> list[int]:
        return sorted({k.epoch for k in map(parse_key, self) if k is not None and k.kind == "pred"})


# -- schema checks ---------------------------------------------------------------------------------
def schema_error(path: Path, value: Any, known: int, written_by: str | None) -> StoreError:
    by = f"msabench {written_by}" if written_by else "another msabench version"
    fix = f"read it with msabench >= {written_by}" if written_by else "read it with the msabench version that wrote it"
    return StoreError(f"{path} has schema version {value!r}, which msabench {__version__} cannot read "
                      f"(it reads schema {known}); it was written by {by}: {fix}")


def check_schema(path: Path, data: Any, known: int, written_by: str | None = None) -> None:
    if not isinstance(data, dict):
        raise StoreError(f"{path} is corrupted (not a JSON object): run `msabench clean --incomplete` or "
                         f"delete the run folder {path.parent}, then re-run")
    value = data.get("schema")
    if type(value) is not int or value != known:
        raise schema_error(path, value, known, written_by or data.get("written_by"))


def _damaged(path: Path, what: str) -> StoreError:
    return StoreError(f"{path} is damaged ({what}): delete the run folder {path.parent} (or run `msabench clean "
                      f"--incomplete` if it is not done), then re-run")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_FIELD_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _is_number,
    "dict[str, Any]": lambda v: isinstance(v, dict),
    "tuple[str, ...]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "tuple[float, ...]": lambda v: isinstance(v, list) and all(_is_number(x) for x in v),
}


def check_spec_shape(path: Path, data: dict[str, Any]) -> None:
    """Every RunSpec field of spec.json present (unless it has a default) with the JSON type the
    field needs: valid JSON of the wrong shape is a damaged file, not a traceback in `report`."""
    import dataclasses

    from msabench.core.types import RunSpec

    for field in dataclasses.fields(RunSpec):
        if field.name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise _damaged(path, f"it lacks {field.name!r}")
            continue
        check = _FIELD_CHECKS.get(str(field.type))
        if check is not None and not check(data[field.name]):
            raise _damaged(path, f"{field.name!r} is a {type(data[field.name]).__name__}, not {field.type}")


def _numbers(values: Any) -> bool:
    """An object of numbers or nulls. Exact types: JSON gives int, float, bool and None, never their
    subclasses, and its object keys are always strings. One C-level pass over the value types: a
    check per metric of every record of a store is most of what `status` and `report` spend beyond
    decoding the JSON."""
    return type(values) is dict and _NUMBER_OR_NULL_TYPES.issuperset(map(type, values.values()))


_NUMBER_OR_NULL_TYPES = frozenset((int, float, type(None)))


def check_record_shape(path: Path, lineno: int, rec: dict[str, Any]) -> None:
    """The keys readers rely on, with their types (non-finite metric values are stored as null)."""
    def where() -> Path:  # built on an error only: a Path per record cost a sixth of `status`
        return Path(f"{path}:{lineno}")

    epoch = rec.get("epoch")
    if not (type(epoch) is int and epoch >= 0):
        raise _damaged(where(), f"epoch is {type(epoch).__name__ if epoch is not None else 'missing'}, not a "
                                "whole number >= 0")
    for key in ("split", "domain"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            raise _damaged(where(), f"{key} is not a non-empty string")
    if not _is_number(rec.get("rate")):
        raise _damaged(where(), "rate is not a number")
    if not _numbers(rec.get("metrics")):
        raise _damaged(where(), "metrics is not an object of numbers")
    loss = rec.get("loss")
    if loss is not None and not _numbers(loss):
        raise _damaged(where(), "loss is not an object of numbers")


def finite(value: Any) -> Any:
    """Numbers as float, non-finite ones (an undefined Pearson r, ...) as None: records are strict JSON."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return value if value is None else bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = float(value)
        return value if np.isfinite(value) else None
    return value


def record_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), default=_json_default, allow_nan=True,
                      ensure_ascii=False) + "\n"


def normalise_record(record: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """A record in its stored form: contract keys first in contract order, metrics and loss sorted,
    numbers as float and non-finite ones as None, then any extra keys as given."""
    missing = [k for k in ("epoch", "split", "domain", "rate", "metrics") if k not in record]
    if missing:
        raise ValueError(f"record lacks {', '.join(missing)}: {dict(record)!r}")
    if record.get("schema", RECORD_SCHEMA) != RECORD_SCHEMA:
        raise ValueError(f"record schema {record.get('schema')!r}; this msabench writes {RECORD_SCHEMA}")
    if record.get("run_id", run_id) != run_id:
        raise ValueError(f"record of run {record.get('run_id')} written to run {run_id}")
    out = {
        "schema": RECORD_SCHEMA, "run_id": run_id, "epoch": int(record["epoch"]),
        "split": str(record["split"]), "domain": str(record["domain"]), "rate": float(record["rate"]),
        "metrics": {k: finite(v) for k, v in sorted(dict(record["metrics"]).items())},
        "loss": {k: finite(v) for k, v in sorted(dict(record.get("loss") or {}).items())},
        "seconds": finite(record.get("seconds")),
    }
    out.update({k: v for k, v in record.items() if k not in RECORD_KEYS})
    return out


def parse_records(path: Path, text: str, written_by: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) pairs of a records.jsonl text; StoreError naming the file and line on a
    corrupted line or an unknown schema version (`written_by`: the msabench that wrote the run)."""
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise StoreError(
                f"{path}:{lineno} is corrupted ({exc}): run `msabench clean --incomplete` (if the run is "
                f"not done) or delete the run folder {path.parent}, then re-run") from exc
        if rec.get("schema") != RECORD_SCHEMA or type(rec.get("schema")) is not int:
            raise schema_error(Path(f"{path}:{lineno}"), rec.get("schema"), RECORD_SCHEMA, written_by)
        check_record_shape(path, lineno, rec)
        records.append((line, rec))
    return records
