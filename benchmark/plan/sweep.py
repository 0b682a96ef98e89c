"""Sweeps: sweep files (`--sweep FILE.toml`), the dry-run time estimate, and driving a sweep
(executor + progress + MLflow + summary).

A sweep file is the reproducible record of a study (read with tomllib; nothing is evaluated):

    name = "quick standard study"          # free text (also: description)
    protocol = "standard"
    models = ["linear_probe", "tfn:model.dropout=0.2",
              {name = "lf_dnn", variants = ["", "some-variant"], set = {"model.hidden" = 32}}]
    datasets = ["synth-mosi"]
    seeds = [1, 2, 3]                      # or n_seeds = 3
    settings = ["A", "B"]                  # DG; or setting = "A"
    rates = [0.0, 0.1]
    modalities = "t,a,v"                   # or ["t", "a", "v"]
    selection = "val"
    tiny = true
    [set]                                  # --set for every run
    "train.lr" = 0.001                     # (train.lr = 0.001 also works)
    [grid]                                 # one configuration per combination, for every model
    "train.lr" = [0.001, 0.0003]           # (a model table's own grid = {...} for its model.* keys)
    [select]                               # choose one configuration on validation, then re-run it
    rule = "val"                           # a selection rule with a validation score (never test)
    search_seeds = [1]                     # the grid's seeds (default: the first of seeds)

A grid is expanded at plan time into model specs with the grid's keys inline (`lf_dnn:train.lr=0.001`),
so `--dry-run` lists its runs; the study with [select] runs in two phases (msabench.sweeps).

Unknown keys are errors with close matches. On the command line, --sweep goes with execution
options (--out, --executor, --workers, --threads, --device, MLflow, --dry-run, ...) and --tiny;
study options (--model, --dataset, --seeds, ...) belong in the file: giving both is an error.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from msabench.core.errors import UserError, did_you_mean
from msabench.plan.request import Request

TOP_KEYS = ("name", "description", "protocol", "models", "datasets", "seeds", "n_seeds", "setting", "settings",
            "rates", "modalities", "selection", "set", "tiny", "grid", "select")
MODEL_KEYS = ("name", "variant", "variants", "set", "grid")
SELECT_KEYS = ("rule", "search_seeds")
MAX_GRID = 1_000  # configurations per model: beyond this a typo, not a study
NAMESPACES = ("model", "train", "data", "text")
MAX_SEEDS = 10_000  # seeds per study: beyond this a typo, not a study (and the plan alone would fill memory)


@dataclass(frozen=True)
class ConfigSelection:
    """A grid study's [select]: the rule whose validation score picks a configuration, and the seeds
    the grid runs with (None: the first of the study's seeds)."""

    rule: str | None = None  # None: each protocol's default rule
    search_seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SweepFile:
    """A sweep file read: its name and its study as `Request`s (one per setting); a grid study also
    names its grid keys (the config keys its configurations differ in) and its [select]."""

    path: str
    name: str
    requests: tuple[Request, ...]
    grid_keys: tuple[str, ...] = ()
    select: ConfigSelection | None = None

    def for_run(self, data_root: str | None = None, tiny: bool = False) -> list[Request]:
        """The requests with the command line's execution options (`--data-root`, `--tiny`)."""
        return [replace(r, data_root=data_root, tiny=r.tiny or tiny) for r in self.requests]


def _err(path: str, text: str) -> UserError:
    return UserError(f"sweep file {path}: {text}")


def _check_keys(path: str, table: dict[str, Any], known: Sequence[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise _err(path, f"unknown key {key!r}{where}.{did_you_mean(key, known)}")


def _str_list(path: str, key: str, value: Any, *, comma: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")] if comma else [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise _err(path, f"{key} must be a string or a list of strings, got {value!r}")
    items = [v for v in items if v.strip()]
    if not items:
        raise _err(path, f"{key} is empty: list at least one, or leave the key out for the protocol's default")
    return tuple(items)


def flatten_set(path: str, table: Any, where: str = "set") -> dict[str, Any]:
    """`{"train": {"lr": 1e-3}}` (TOML dotted keys) or `{"train.lr": 1e-3}` -> {"train.lr": 1e-3}."""
    if not isinstance(table, dict):
        raise _err(path, f"{where} must be a table of KEY = VALUE, e.g. [set] \"train.lr\" = 0.001")
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = value

    walk("", table)
    for key in flat:
        if "." not in key or key.split(".", 1)[0] not in NAMESPACES:
            raise _err(path, f"{where}: key {key!r} needs a namespace ({', '.join(n + '.*' for n in NAMESPACES)}), "
                             f"e.g. \"train.lr\" = 0.001")
    return flat


def _grid(path: str, table: Any, where: str) -> dict[str, tuple]:
    """A grid table: namespaced keys, each with a non-empty list of distinct values."""
    flat = flatten_set(path, table, where)
    grid = {}
    for key, values in flat.items():
        if not isinstance(values, list) or not values:
            raise _err(path, f"{where}: {key} must be a list of the values to try, e.g. {key} = [0.001, 0.0003]")
        if len({repr(v) for v in values}) != len(values):
            raise _err(path, f"{where}: {key} lists a value twice ({values!r})")
        grid[key] = tuple(values)
    return grid


def grid_points(grid: dict[str, tuple]) -> list[dict[str, Any]]:
    """Every combination of a grid, in the file's order (the first key varies slowest)."""
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def _with_grid(path: str, spec, grid: dict[str, tuple]) -> list[str]:
    from msabench.core.config import ModelSpec, parse_model_spec

    both = sorted(set(grid) & set(spec.overrides))
    if both:
        raise _err(path, f"models: {spec.label}: {', '.join(both)} is both set and in a grid; give it in one place")
    points = grid_points(grid)
    if len(points) > MAX_GRID:
        raise _err(path, f"models: {spec.label}: the grid has {len(points)} configurations; at most {MAX_GRID}")
    texts = [str(ModelSpec(spec.name, spec.variant, {**spec.overrides, **point})) for point in points]
    for text in texts:
        parse_model_spec(text)
    return texts


def _model_entries(path: str, value: Any,
                   grid: dict[str, tuple] | None = None) -> tuple[tuple[str, ...], dict[str, tuple]]:
    """The model specs of `models` with every grid point inline, and every value each grid key takes."""
    from msabench.core.config import ModelSpec, parse_model_spec

    grid = grid or {}
    values: dict[str, list] = {k: list(v) for k, v in grid.items()}
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _err(path, "models must be a list of model specs (strings) or tables {name = ..., variants = [...]}")
    out: list[str] = []
    for item in value:
        if isinstance(item, str):
            out += _with_grid(path, parse_model_spec(item), grid)  # syntax errors now, with the spec named
            continue
        if not isinstance(item, dict):
            raise _err(path, f"models: {item!r} is neither a spec string nor a table")
        _check_keys(path, item, MODEL_KEYS, " in a models table")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _err(path, f"models: a table needs name = \"MODEL\" (got {item!r})")
        if "variant" in item and "variants" in item:
            raise _err(path, f"models: {name}: give variant or variants, not both")
        variants = item.get("variants", [item.get("variant", "")])
        if isinstance(variants, str):
            variants = [variants]
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants) or not variants:
            raise _err(path, f"models: {name}: variants must be a list of names (\"\" for the base model)")
        overrides = flatten_set(path, item.get("set", {}), f"models: {name}: set")
        bad = [k for k in overrides if not k.startswith(("model.", "train.", "data.", "text."))]
        if bad:
            raise _err(path, f"models: {name}: bad keys {bad}")
        own_grid = _grid(path, item["grid"], f"models: {name}: grid") if "grid" in item else {}
        twice = sorted(set(own_grid) & set(grid))
        if twice:
            raise _err(path, f"models: {name}: grid key {', '.join(twice)} is in the sweep's [grid] too; give it once")
        for key, own in own_grid.items():
            values.setdefault(key, []).extend(own)
        for variant in variants:
            out += _with_grid(path, ModelSpec(name, variant or None, overrides), {**grid, **own_grid})
    if len(set(out)) != len(out):
        raise _err(path, f"models lists a spec twice: {sorted({m for m in out if out.count(m) > 1})}")
    return tuple(out), {k: tuple(v) for k, v in values.items()}


def load_sweep(path: str | Path) -> SweepFile:
    p = Path(path)
    where = str(path)
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"--sweep {where}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"--sweep {where}: is a folder; give a .toml file") from None
    except tomllib.TOMLDecodeError as exc:
        raise _err(where, f"not valid TOML ({exc}); see the sweep-file example in the README") from None
    except RecursionError:
        raise _err(where, "is nested too deeply to be a sweep file; see the sweep-file example in the README") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (tomllib decodes the bytes itself)
        raise _err(where, f"is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                          "save it as UTF-8") from None
    except OSError as exc:
        raise UserError(f"--sweep {where}: cannot read it ({exc.strerror or exc}); check the path") from None
    return sweep_from_dict(data, where=where, default_name=p.stem)


def sweep_from_dict(data: dict[str, Any], *, where: str = "<dict>", default_name: str = "sweep") -> SweepFile:
    """A sweep from the table a sweep file holds (the Python API passes a dict; same keys, same checks)."""
    if not isinstance(data, dict):
        raise _err(where, f"a sweep is a table of keys ({', '.join(TOP_KEYS)}), got {type(data).__name__}")
    _check_keys(where, data, TOP_KEYS, "")
    protocol = data.get("protocol", "standard")
    if not isinstance(protocol, str):
        raise _err(where, f"protocol must be a string, got {protocol!r}")
    for text_key in ("name", "description", "selection"):
        if text_key in data and not isinstance(data[text_key], str):
            raise _err(where, f"{text_key} must be a string")
    grid = _grid(where, data["grid"], "grid") if "grid" in data else {}
    user_set = flatten_set(where, data["set"]) if "set" in data else {}
    both = sorted(set(grid) & set(user_set))
    if both:
        raise _err(where, f"{', '.join(both)} is both in [set] and in [grid]; give it in one place")
    if grid and "models" not in data:
        raise _err(where, "a [grid] needs models = [...]: the grid's keys are set per model spec")
    models, grid_values = _model_entries(where, data["models"], grid) if "models" in data else ((), {})
    datasets = _str_list(where, "datasets", data["datasets"]) if "datasets" in data else ()
    if "seeds" in data and "n_seeds" in data:
        raise _err(where, "give seeds or n_seeds, not both")
    seeds = None
    if "seeds" in data:
        s = data["seeds"]
        if isinstance(s, int) and not isinstance(s, bool):
            s = [s]
        if (not isinstance(s, list) or not s or not all(isinstance(v, int) and not isinstance(v, bool) for v in s)
                or any(v < 0 for v in s) or len(set(s)) != len(s)):
            raise _err(where, f"seeds must be a list of distinct non-negative whole numbers, got {data['seeds']!r:.80}")
        if len(s) > MAX_SEEDS:
            raise _err(where, f"seeds lists {len(s)} seeds; at most {MAX_SEEDS}")
        seeds = tuple(s)
    elif "n_seeds" in data:
        n = data["n_seeds"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > MAX_SEEDS:
            raise _err(where, f"n_seeds must be a whole number from 1 to {MAX_SEEDS}, got {n!r}")
        seeds = tuple(range(1, n + 1))
    if "setting" in data and "settings" in data:
        raise _err(where, "give setting or settings, not both")
    settings: tuple[str | None, ...] = (None,)
    if "setting" in data or "settings" in data:
        key = "setting" if "setting" in data else "settings"
        settings = _str_list(where, key, data[key])
        if len(set(settings)) != len(settings):
            raise _err(where, f"{key} lists a setting twice")
    rates = None
    if "rates" in data:
        r = data["rates"]
        if isinstance(r, (int, float)) and not isinstance(r, bool):
            r = [r]
        if (not isinstance(r, list) or not r or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                         for v in r)):
            raise _err(where, f"rates must be a list of numbers in [0, 1], got {data['rates']!r}")
        values = tuple(float(v) for v in r)
        if any(not 0.0 <= v <= 1.0 for v in values) or list(values) != sorted(set(values)):
            raise _err(where, f"rates must be distinct, increasing and in [0, 1], got {data['rates']!r}")
        rates = values
    modalities = _str_list(where, "modalities", data["modalities"], comma=True) if "modalities" in data else None
    select = _select(where, data["select"], set(grid_values)) if "select" in data else None
    tiny = data.get("tiny", False)
    if not isinstance(tiny, bool):
        raise _err(where, f"tiny must be true or false, got {tiny!r}")
    requests = tuple(Request(protocol=protocol, models=models, datasets=datasets, setting=setting, seeds=seeds,
                             modalities=modalities, rates=rates, selection=data.get("selection"),
                             user_set=dict(user_set), tiny=tiny) for setting in settings)
    return SweepFile(path=where, name=str(data.get("name", default_name)), requests=requests,
                     grid_keys=tuple(sorted(grid_values)), select=select)


def _select(path: str, table: Any, grid_keys: set[str]) -> ConfigSelection:
    if not isinstance(table, dict):
        raise _err(path, "select must be a table, e.g. [select] rule = \"val\"")
    _check_keys(path, table, SELECT_KEYS, " in [select]")
    if not grid_keys:
        raise _err(path, "[select] chooses among a grid's configurations: add a [grid] (or a model's grid = {...})")
    rule = table.get("rule")
    if rule is not None:
        from msabench.evaluation.selection import check_rule

        if not isinstance(rule, str):
            raise _err(path, f"[select] rule must be a string, got {rule!r}")
        check_rule(rule, f"sweep file {path}: [select] rule")
        if rule == "last":
            raise _err(path, "[select] rule 'last' has no validation score to compare configurations by; use val "
                             "(or the protocol's validation rule, e.g. train-domain)")
    seeds = table.get("search_seeds")
    if seeds is not None:
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = [seeds]
        if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in seeds)):
            raise _err(path, f"[select] search_seeds must be a list of distinct non-negative whole numbers, "
                             f"got {table['search_seeds']!r:.80}")
        seeds = tuple(seeds)
    return ConfigSelection(rule=rule, search_seeds=seeds)


def plan_requests(requests: Sequence[Request]) -> list:
    """Plan each request and concatenate, dropping repeated run ids (order kept)."""
    from msabench.plan.planner import plan

    seen, specs = set(), []
    for request in requests:
        for spec in plan(request):
            if spec.run_id not in seen:
                seen.add(spec.run_id)
                specs.append(spec)
    return specs


# -- the dry-run estimate -------------------------------------------------------------------------------
def _config_key(spec_dict: dict[str, Any]) -> str:
    from msabench.core.types import NAMING_FIELDS, canonical_json

    keep = {k: v for k, v in spec_dict.items() if k not in ("seed", "run_id", "written_by", "schema", *NAMING_FIELDS)}
    return canonical_json(keep)


@dataclass
class Estimate:
    seconds: float | None  # serial seconds of the runs still to do; None when nothing is known
    known: int  # runs to do with a stored timing (or a calibration)
    unknown: int  # runs to do without one
    already_done: int
    calibrated: int = 0  # of `known`: timed by a quick calibration, not by stored runs
    configurations: int = 0  # configurations calibrated
    budget_spent: bool = False  # calibration stopped at CALIBRATION_BUDGET_S: the rest stayed unknown

    def describe(self, workers: int = 1) -> str:
        from msabench.execution.progress import fmt_duration

        todo = self.known + self.unknown
        if todo == 0:
            return f"estimated time: 0s (all {self.already_done} runs are done in the store)"
        if self.seconds is None:
            return (f"estimated time: unknown (no done run of the same model and dataset in the store to time "
                    f"{todo} runs by" + (f", and calibration stops after {CALIBRATION_BUDGET_S:g}s)"
                                          if self.budget_spent else ")"))
        text = f"estimated time: {fmt_duration(self.seconds)} of compute"
        if workers > 1:
            text += f", about {fmt_duration(self.seconds / workers)} with {workers} workers"
        stored = self.known - self.calibrated
        sources = []
        if stored:
            sources.append(f"stored timings of done runs of the same model and dataset for {stored} of {todo} runs")
        if self.calibrated:
            sources.append(f"a quick calibration for {self.calibrated} of {todo} runs ({self.configurations} "
                           f"configuration{'s' if self.configurations != 1 else ''}: {CALIBRATION_TEXT})")
        text += ", from " + "; ".join(sources)
        text += f"; {self.unknown} unknown, not counted" if self.unknown else ""
        if self.budget_spent:
            text += f" (calibration stops after {CALIBRATION_BUDGET_S:g}s)"
        if self.already_done:
            text += f"; {self.already_done} runs already done are skipped"
        return text


CALIBRATION_BUDGET_S = 30.0  # a dry run calibrates configurations until this much time is spent
CALIBRATION_TEXT = ("a few batches of one epoch timed, scaled to the full splits and every train.epochs epoch; "
                    "early stopping can end runs sooner")


def stored_timings(store) -> tuple[dict[str, list[float]], dict[tuple, list[float]]]:
    """Seconds per done run (sum of its records' `seconds`), by exact config and by (model, datasets)."""
    by_config: dict[str, list[float]] = {}
    by_model: dict[tuple, list[float]] = {}
    for rd in store.runs("done"):
        try:
            spec = rd.read_spec_dict()
            seconds = sum(float(r.get("seconds") or 0.0) for r in rd.read_records())
        except Exception:  # noqa: BLE001 - an unreadable run does not stop a dry run
            continue
        by_config.setdefault(_config_key(spec), []).append(seconds)
        by_model.setdefault((spec.get("model"), tuple(spec.get("datasets") or ())), []).append(seconds)
    return by_config, by_model


def estimate(specs: Sequence, store, retry_failed: bool = False,
             calibrate: Callable[[Any], float] | None = None) -> Estimate:
    """The serial time of the runs still to do, from the records' `seconds` of done runs of the same
    model and datasets in the store (same resolved config when there is one, else any); with
    `calibrate` (spec -> seconds), runs without such timings are timed by it, once per configuration
    (seeds and missing rates share one), until CALIBRATION_BUDGET_S is spent (the rest stay unknown)."""
    from msabench.store.runs import should_run

    stored = store.runs_dir.is_dir()
    by_config, by_model = stored_timings(store) if stored else ({}, {})
    calibrated: dict[str, float] = {}
    total, known, unknown, done, by_calibration = 0.0, 0, 0, 0, 0
    started, spent = time.perf_counter(), False
    for spec in specs:
        if stored and not should_run(store.run_dir(spec.run_id).status(), retry_failed):
            done += 1
            continue
        times = by_config.get(_config_key(spec.to_dict())) or by_model.get((spec.model, tuple(spec.datasets)))
        if times:
            total += sum(times) / len(times)
            known += 1
            continue
        key = _calibration_key(spec.to_dict()) if calibrate is not None else ""
        if calibrate is not None and key not in calibrated:
            spent = spent or time.perf_counter() - started > CALIBRATION_BUDGET_S
            if not spent:
                calibrated[key] = calibrate(spec)
        if key in calibrated:
            total += calibrated[key]
            known += 1
            by_calibration += 1
        else:
            unknown += 1
    return Estimate(total if known else None, known, unknown, done, by_calibration, len(calibrated), spent)


def _calibration_key(spec_dict: dict[str, Any]) -> str:
    from msabench.core.types import canonical_json

    drop = ("seed", "rate", "eval_rates", "run_id", "written_by", "schema", "model_keys", "smoke")
    keep = {k: v for k, v in spec_dict.items() if k not in drop}
    keep["config"] = {k: v for k, v in keep["config"].items() if k != "data.missing_rate"}
    return canonical_json(keep)


def effective_workers(executor: str, workers: int | None, threads: int, runs_per_gpu: int | None, device: str,
                      n_runs: int, slurm=None) -> int:
    """How many runs go at once: 1 for local; the process layout; ray: --workers, else cores // threads;
    slurm: --slurm-array-parallelism, else every run."""
    if executor == "process":
        from msabench.execution.process import plan_layout

        return plan_layout(workers, threads, runs_per_gpu, device, n_runs).workers
    if executor == "ray":
        from msabench.execution.process import cpu_count

        return workers or max(1, cpu_count() // (threads or 1))
    if executor == "slurm":
        return max(1, (slurm.array_parallelism if slurm else None) or n_runs)
    return 1


def text_cache_totals(store, run_ids: Sequence[str]) -> dict[str, int] | None:
    """Frozen text-encoder cache hits/misses summed over the env.json of `run_ids`; None when none used it."""
    totals = {"hits": 0, "misses": 0, "rebuilt": 0}
    used = False
    for run_id in run_ids:
        try:
            cache = (store.run_dir(run_id).read_env().get("text") or {}).get("cache")
        except (OSError, ValueError):
            continue
        if cache:
            used = True
            for k in totals:
                totals[k] += int(cache.get(k, 0))
    return totals if used else None


# -- driving a sweep ---------------------------------------------------------------------------------------
def run_sweep(specs: Sequence, *, out: str, options, executor: str = "local", retry_failed: bool = False,
              workers: int | None = None, runs_per_gpu: int | None = None, address: str | None = None,
              slurm=None, tracking=None, echo: Callable[[str], None] = print, stream=None):
    """Execute `specs` with the executor, show progress, log done runs to MLflow from the driver,
    print the summary; returns the executor's SweepOutcome."""
    from msabench.execution.progress import Progress, summary_lines
    from msabench.execution.registry import EXECUTORS
    from msabench.store.runs import Store
    from msabench.tracking import TrackingSettings, open_view, view_summary

    run_executor = EXECUTORS.get(executor)
    store = Store(out)
    tracking = tracking or TrackingSettings()
    est = estimate(specs, store, retry_failed)
    parallel = effective_workers(executor, workers, options.threads, runs_per_gpu, options.device,
                                 est.known + est.unknown, slurm)
    progress = Progress(len(specs), stream, estimate_seconds=est.seconds, workers=parallel)
    view = open_view(tracking, out, progress.message)
    started = time.perf_counter()

    def on_run(spec, status: str) -> None:
        progress.update(spec, status)
        rd = store.run_dir(spec.run_id)
        if status == "done" or (status == "skipped" and rd.status() == "done"):
            view.log_run(rd)

    try:
        outcome = run_executor(specs, store, options, retry_failed=retry_failed, progress=on_run, workers=workers,
                               runs_per_gpu=runs_per_gpu, address=address, slurm=slurm,
                               layout_note=progress.message)
    finally:
        progress.close()
        view.close()
    for line in summary_lines(outcome, len(specs), time.perf_counter() - started, out, view_summary(view, out),
                              text_cache_totals(store, outcome.done), failed_run_labels(store, outcome.failed)):
        echo(line)
    return outcome


def failed_run_labels(store, run_ids: Sequence[str]) -> dict[str, str]:
    """run id -> "(model datasets seed N): reason" of failed runs, for the sweep summary."""
    labels = {}
    for run_id in run_ids:
        rd = store.run_dir(run_id)
        try:
            spec = rd.read_spec_dict()
            what = f"({spec['model']} {'+'.join(spec['datasets'])} seed {spec['seed']})"
        except Exception:  # noqa: BLE001 - a run that failed before writing spec.json is still named
            what = ""
        try:
            reason = str((rd.read_failed() or {}).get("reason", "")).splitlines()[0]
        except Exception:  # noqa: BLE001
            reason = ""
        labels[run_id] = f"{what}: {reason}" if reason else what
    return labels
