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
        records.append((line, rec))
    return records
