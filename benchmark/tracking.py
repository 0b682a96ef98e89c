"""MLflow: a view of the store (docs/architecture.md §9).

The store is the source of truth; MLflow shows it. One writer: the sweep's driver logs each run
from its run folder once the run is done (workers never talk to MLflow). Per msabench run, one
MLflow run with
    params     the flattened resolved config (`model.*`, `train.*`, `data.*`, `text.*`) and the
               RunSpec's fields (protocol, protocol_version, seed, rate, data_hash, ...)
    metrics    per epoch (step = epoch), split and domain: `<split>/<domain>/<metric>` (e.g.
               `test/synth-mosi/acc2_has0`), losses as `<split>/<domain>/loss_<name>`; a record
               at another missing rate than the run's adds `rate<r>/` after the domain
    tags       protocol, model, variant, setting, data (synthetic | real), msabench_run_id
    artifacts  records.jsonl, predictions.npz, spec.json, env.json (+ summary.json)
Idempotent: a run whose `msabench_run_id` tag is on a finished MLflow run is not logged again (a
half-logged one, left by a failure, is deleted and logged anew). Concurrent sweeps on one store
take a file lock (`<out>/.mlflow.lock`) around every MLflow write, so each run is logged once.

Default: embedded SQLite, `sqlite:///<out>/mlflow.db`, artifacts under `<out>/mlartifacts`;
`--tracking-uri` points at a server instead. Circuit breaker: HTTP timeouts and retries are set low
for the sweep (MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES / _BACKOFF_FACTOR, unless set already);
after the first failure MLflow logging stops for the rest of the sweep with exactly one warning,
and `msabench sync-mlflow` logs what was missed. Without the `mlflow` package a sweep runs with
one warning (the store holds everything); an explicit `--tracking-uri` then is an error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msabench.core.errors import UserError
from msabench.data.names import all_synthetic

DEFAULT_EXPERIMENT = "msabench"
LOCK_NAME = ".mlflow.lock"
TAG_RUN_ID = "msabench_run_id"
ARTIFACTS = ("records.jsonl", "predictions.npz", "spec.json", "env.json", "summary.json")
LOCK_TIMEOUT = 60.0
# The circuit breaker's HTTP settings (env names read by mlflow at each request).
SWEEP_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
                  # mlflow >= 3 prints two "View run" lines to stdout per run on a server (and fetches
                  # the run again to do so): the summary says where the runs are instead
                  "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
_BATCH_PARAMS, _BATCH_METRICS = 100, 1000  # MLflow's log_batch limits
_QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "sqlalchemy", "databricks")
INSTALL_HINT = "pip install 'msabench[mlflow]' (or mlflow-skinny sqlalchemy alembic)"


def mlflow_installed() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def default_tracking_uri(out: str | Path) -> str:
    return f"sqlite:///{Path(out).resolve() / 'mlflow.db'}"


def default_artifact_location(out: str | Path) -> str:
    return (Path(out).resolve() / "mlartifacts").as_uri()


@dataclass
class TrackingSettings:
    """What `msabench run` was asked for: `uri` None means the embedded SQLite under --out."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT


# -- what a run looks like in MLflow ------------------------------------------------------------------


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        text = ",".join(_param_value(v) for v in value)
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def run_params(spec: dict[str, Any]) -> dict[str, str]:
    """The flattened resolved config and the RunSpec's fields (data_hashes as data_hash)."""
    params = {str(k): _param_value(v) for k, v in sorted((spec.get("config") or {}).items())}
    for key, value in sorted(spec.items()):
        if key in ("config", "schema", "written_by", "run_id"):
            continue
        params["data_hash" if key == "data_hashes" else key] = _param_value(value)
    return params


def run_tags(spec: dict[str, Any], run_id: str, env: dict[str, Any] | None = None) -> dict[str, str]:
    from msabench.core.config import spec_label

    model = str(spec.get("model", ""))  # NAME[@VARIANT]; `label` adds the inline keys
    label = spec_label(spec)
    datasets = list(spec.get("datasets") or [])
    tags = {
        TAG_RUN_ID: run_id, "protocol": str(spec.get("protocol", "")),
        "protocol_version": str(spec.get("protocol_version", "")), "model": label,
        "model_name": model.split("@", 1)[0], "variant": model.split("@", 1)[1] if "@" in model else "",
        "setting": str(spec.get("setting") or ""), "datasets": "+".join(datasets),
        "data": "synthetic" if all_synthetic(datasets) else "real", "seed": str(spec.get("seed", "")),
        "mlflow.runName": f"{label} {'+'.join(datasets)} seed={spec.get('seed')} rate={spec.get('rate', 0):g}",
        "mlflow.source.name": "msabench",
    }
    env = env or {}
    if env.get("git_sha"):
        tags["mlflow.source.git.commit"] = str(env["git_sha"])
        tags["git_dirty"] = str(env.get("git_dirty"))
    return tags


def metric_key(split: str, domain: str, name: str, rate: float | None = None) -> str:
    return f"{split}/{domain}/" + (f"rate{rate:g}/" if rate is not None else "") + name


def run_metrics(records: list[dict[str, Any]], run_rate: float) -> list[tuple[str, float, int]]:
    """(key, value, step) per record, metric and loss; undefined values (null) are left out."""
    out = []
    for rec in records:
        rate = float(rec.get("rate") or 0.0)
        extra = rate if abs(rate - run_rate) > 1e-12 else None
        step = int(rec["epoch"])
        for name, value in sorted((rec.get("metrics") or {}).items()):
            if value is not None:
                out.append((metric_key(rec["split"], rec["domain"], name, extra), float(value), step))
        for name, value in sorted((rec.get("loss") or {}).items()):
            if value is not None:
                out.append((metric_key(rec["split"], rec["domain"], f"loss_{name}", extra), float(value), step))
    return out


def _mtime_ms(path: Path, default: int) -> int:
    try:
        return int(path.stat().st_mtime * 1000)
    except OSError:
        return default


# -- the embedded database ---------------------------------------------------------------------------------
def _cache_dir() -> Path:
    env = os.environ.get("MSABENCH_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "msabench") / "mlflow"


def seed_embedded_db(out: str | Path) -> bool:
    """Create `<out>/mlflow.db` as a copy of an empty database made once per mlflow version (MLflow
    builds a new one by running its ~50 schema migrations: seconds per store). The copy's
    Default experiment is pointed at `<out>/mlartifacts/0`. Returns False (MLflow then creates the
    database itself) when the database exists or anything here fails."""
    import shutil
    import sqlite3

    import mlflow

    db = Path(out).resolve() / "mlflow.db"
    _remove_dead_temps(db.parent, "-mlflow.db")
    if db.exists():
        return False
    folder = _cache_dir()
    template = folder / f"empty-{mlflow.__version__}.db"
    tmp = db.with_name(f".tmp-{os.getpid()}-mlflow.db")
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        _remove_dead_temps(folder, template.name)
        if not template.exists():
            from filelock import FileLock
            from mlflow.tracking import MlflowClient

            with FileLock(str(template) + ".lock", timeout=120):
                if not template.exists():
                    template_tmp = folder / f".tmp-{os.getpid()}-{template.name}"
                    try:
                        template_tmp.unlink(missing_ok=True)
                        MlflowClient(f"sqlite:///{template_tmp}").search_experiments()  # runs the migrations
                        _dispose_engine(f"sqlite:///{template_tmp}")
                        os.replace(template_tmp, template)
                    finally:
                        template_tmp.unlink(missing_ok=True)
        shutil.copyfile(template, tmp)
        with contextlib.closing(sqlite3.connect(tmp)) as con:
            con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                        (str(Path(out).resolve() / "mlartifacts" / "0"),))
            con.commit()
        if db.exists():  # created meanwhile by a process outside our lock
            return False
        os.replace(tmp, db)
        return True
    except Exception:  # noqa: BLE001 - an optimisation only: MLflow builds the database itself
        return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # never left behind, whatever failed (a full disk, ...)


def _remove_dead_temps(folder: Path, suffix: str) -> None:
    """`.tmp-<pid>-...<suffix>` files of processes that died on this host (kill -9 mid-copy)."""
    from msabench.store.lock import pid_alive

    try:
        leftovers = list(folder.glob(f".tmp-*{suffix}"))
    except OSError:
        return
    for path in leftovers:
        pid = path.name[len(".tmp-"):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def _dispose_engine(uri: str) -> None:
    """Close and forget the SQLAlchemy engine mlflow caches for `uri` (the template's, once made)."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        engine = getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)  # not public; best effort
        if engine is not None:
            engine.dispose()
    except Exception:  # noqa: BLE001
        pass


# -- the view -----------------------------------------------------------------------------------------
class MlflowBroken(Exception):
    """Raised inside the view when MLflow failed; the breaker is open."""


class MlflowView:
    """The one MLflow writer of a sweep (or of `sync-mlflow`), with the circuit breaker.

    `log_run(run_dir)` logs one done run unless it is there already; it returns "logged",
    "present" or "off" (the breaker is open). With `strict` a failure raises UserError instead of
    opening the breaker (sync-mlflow)."""

    def __init__(self, out: str | Path, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, *,
                 warn: Callable[[str], None] | None = None, strict: bool = False,
                 lock_timeout: float = LOCK_TIMEOUT):
        self.out = Path(out)
        self.embedded = uri is None
        self.uri = uri or default_tracking_uri(out)
        self.experiment = experiment
        self.warn = warn or (lambda text: None)
        self.strict = strict
        self.lock_timeout = lock_timeout
        self.logged: list[str] = []
        self.present: list[str] = []
        self.missed: list[str] = []
        self.error: str | None = None
        self._client = None
        self._experiment_id: str | None = None
        self._known: set[str] | None = None  # msabench run ids finished in MLflow (a hint, re-checked)
        self._saved_env: dict[str, str | None] = {}
        self._saved_levels: dict[str, int] = {}
        self._open()

    # -- lifecycle ----------------------------------------------------------------------------------
    def _open(self) -> None:
        for name, value in SWEEP_HTTP_ENV.items():
            if name not in os.environ:
                self._saved_env[name] = None
                os.environ[name] = value
        self._quiet()

    def _quiet(self) -> None:
        """The one warning is ours: mlflow/alembic/urllib3 chatter stays quiet (mlflow sets its
        logger's level when imported, so this runs again after the import)."""
        for name in _QUIET_LOGGERS:
            logger = logging.getLogger(name)
            self._saved_levels.setdefault(name, logger.level)
            logger.setLevel(logging.CRITICAL + 1)  # their errors are what our one warning reports

    def close(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
        self._saved_env.clear()
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_levels.clear()

    def __enter__(self) -> MlflowView:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def broken(self) -> bool:
        return self.error is not None

    # -- plumbing -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        from filelock import FileLock, Timeout

        self.out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.out / LOCK_NAME), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise MlflowBroken(f"another process held {self.out / LOCK_NAME} for {self.lock_timeout:g}s") from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            lock.release()

    def _connect(self) -> None:
        if self._client is not None:
            return
        from mlflow.tracking import MlflowClient

        self._quiet()
        if self.embedded:
            db = self.out.resolve() / "mlflow.db"
            if db.exists() and not db.is_file():
                raise MlflowBroken(f"{db} is not a file (a folder?); move it away")
            seed_embedded_db(self.out)
            db = self.out.resolve() / "mlflow.db"
            existed = db.exists()
            try:
                self._connect_client(MlflowClient)
            except BaseException:
                with contextlib.suppress(OSError):  # an empty database SQLite created before failing
                    if not existed and db.stat().st_size == 0:
                        db.unlink()
                raise
            return
        self._connect_client(MlflowClient)

    def _connect_client(self, client_cls) -> None:
        client = client_cls(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            location = default_artifact_location(self.out) if self.embedded else None
            try:
                exp_id = client.create_experiment(self.experiment, artifact_location=location)
            except Exception:  # noqa: BLE001 - created meanwhile by another store's sweep
                exp = client.get_experiment_by_name(self.experiment)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            if exp.lifecycle_stage == "deleted":
                raise MlflowBroken(f"MLflow experiment {self.experiment!r} is deleted: restore it, or pass "
                                   f"another --experiment")
            exp_id = exp.experiment_id
        self._client, self._experiment_id = client, exp_id

    def _find(self, run_id: str) -> list[Any]:
        from mlflow.entities import ViewType

        return list(self._client.search_runs([self._experiment_id], filter_string=f"tags.{TAG_RUN_ID} = '{run_id}'",
                                             run_view_type=ViewType.ACTIVE_ONLY, max_results=50))

    def known_run_ids(self) -> set[str]:
        """msabench run ids that MLflow holds as finished runs (one paged search)."""
        from mlflow.entities import ViewType

        found, token = set(), None
        while True:
            page = self._client.search_runs([self._experiment_id], filter_string="", max_results=1000,
                                            run_view_type=ViewType.ACTIVE_ONLY, page_token=token)
            for r in page:
                rid = r.data.tags.get(TAG_RUN_ID)
                if rid and r.info.status == "FINISHED":
                    found.add(rid)
            token = page.token
            if not token:
                return found

    def _fail(self, exc: BaseException, run_id: str | None) -> None:
        first = (str(exc).strip().splitlines() or [""])[0]
        reason = f"{type(exc).__name__}: {first[:300]}"
        if self.strict:
            raise UserError(f"MLflow at {self.uri} failed: {reason}; fix the tracking server (or --tracking-uri) "
                            f"and run `msabench sync-mlflow` again") from exc
        self.error = reason
        if run_id is not None:
            self.missed.append(run_id)
        uri = "" if self.embedded else f" --tracking-uri {self.uri}"
        exp = "" if self.experiment == DEFAULT_EXPERIMENT else f" --experiment {self.experiment}"
        self.warn(f"warning: MLflow logging failed ({reason}); MLflow logging is off for the rest of this sweep. "
                  f"Every result is kept in the store; log the missed runs later with "
                  f"`msabench sync-mlflow --out {self.out}{uri}{exp}`")

    # -- logging ------------------------------------------------------------------------------------
    def log_run(self, run_dir) -> str:
        """Log one done run ('logged'), or not: 'present' (already in MLflow), 'off' (breaker open)."""
        if self.broken:
            self.missed.append(run_dir.run_id)
            return "off"
        if self._known is not None and run_dir.run_id in self._known:
            self.present.append(run_dir.run_id)
            return "present"
        try:
            with self._locked():
                self._connect()
                if self._known is None:
                    self._known = self.known_run_ids()
                outcome = self._log_locked(run_dir)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any MLflow failure opens the breaker
            self._fail(exc, run_dir.run_id)
            return "off"
        (self.logged if outcome == "logged" else self.present).append(run_dir.run_id)
        return outcome

    def _log_locked(self, run_dir) -> str:
        from mlflow.entities import Metric, Param, RunTag

        run_id = run_dir.run_id
        for existing in self._find(run_id):  # re-check under the lock: another sweep may have logged it
            if existing.info.status == "FINISHED":
                self._known.add(run_id)
                return "present"
            self._client.delete_run(existing.info.run_id)  # half-logged by a failed attempt
        spec = run_dir.read_spec_dict()
        records = run_dir.read_records()
        try:
            env = run_dir.read_env()
        except Exception:  # noqa: BLE001 - env is informative only
            env = {}
        now = int(time.time() * 1000)
        start = _mtime_ms(run_dir.path / "spec.json", now)
        end = _mtime_ms(run_dir.path / "done", now)
        client = self._client
        run = client.create_run(self._experiment_id, start_time=start, tags=run_tags(spec, run_id, env))
        mlflow_id = run.info.run_id
        params = [Param(k, v) for k, v in run_params(spec).items()]
        for i in range(0, len(params), _BATCH_PARAMS):
            client.log_batch(mlflow_id, params=params[i:i + _BATCH_PARAMS])
        metrics = [Metric(k, v, end, step) for k, v, step in run_metrics(records, float(spec.get("rate") or 0.0))]
        for i in range(0, len(metrics), _BATCH_METRICS):
            client.log_batch(mlflow_id, metrics=metrics[i:i + _BATCH_METRICS])
        for name in ARTIFACTS:
            path = run_dir.path / name
            if path.is_file():
                client.log_artifact(mlflow_id, str(path))
        client.log_batch(mlflow_id, tags=[RunTag("msabench_store", str(self.out.resolve()))])
        client.set_terminated(mlflow_id, "FINISHED", end_time=max(end, start))
        self._known.add(run_id)
        return "logged"

    def sync(self, run_dirs: Iterable[Any], progress: Callable[[str, str], None] | None = None) -> dict[str, int]:
        """Log every given done run that MLflow lacks (sync-mlflow). Strict: a failure raises."""
        counts = {"logged": 0, "present": 0}
        for rd in run_dirs:
            outcome = self.log_run(rd)
            counts[outcome] = counts.get(outcome, 0) + 1
            if progress is not None:
                progress(rd.run_id, outcome)
        return counts

    def where(self) -> str:
        return f"{self.uri}, experiment {self.experiment}"


class NullView:
    """MLflow off (--no-mlflow, or mlflow not installed)."""

    broken = False
    embedded = False
    uri = None

    def __init__(self, reason: str = "off"):
        self.reason = reason
        self.logged: list[str] = []
        self.present: list[str] = []
        self.missed: list[str] = []

    def log_run(self, run_dir) -> str:
        return "off"

    def close(self) -> None:
        pass

    def __enter__(self) -> NullView:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def open_view(settings: TrackingSettings, out: str | Path, warn: Callable[[str], None]) -> MlflowView | NullView:
    """The MLflow view a sweep logs to. MLflow missing: one warning (or, with an explicit
    --tracking-uri, a UserError before anything runs)."""
    if not settings.enabled:
        return NullView("--no-mlflow")
    if not mlflow_installed():
        if settings.uri:
            raise UserError(f"--tracking-uri {settings.uri}: the mlflow package is not installed; "
                            f"{INSTALL_HINT}, or drop --tracking-uri")
        warn(f"warning: MLflow is not installed, so this sweep is not logged to MLflow (the store holds every "
             f"result); {INSTALL_HINT} and run `msabench sync-mlflow --out {out}` to add the MLflow view, "
             f"or pass --no-mlflow to silence this")
        return NullView("mlflow not installed")
    if settings.uri is None and any(c in str(Path(out).resolve()) for c in "?#"):
        raise UserError(f"--out {out}: MLflow's embedded database URI cannot hold '?' or '#' (it would land outside "
                        f"the store); use a folder name without them, --tracking-uri, or --no-mlflow")
    if settings.uri is not None and not settings.uri.strip():
        raise UserError("--tracking-uri is empty: give a URI (http://host:port, sqlite:///path) or drop it")
    return MlflowView(out, settings.uri, settings.experiment, warn=warn)


def view_summary(view: MlflowView | NullView, out: str | Path) -> str | None:
    """One line for the end-of-sweep summary."""
    if isinstance(view, NullView):
        return None if view.reason == "--no-mlflow" else f"MLflow: off ({view.reason})"
    n = len(view.logged)
    if view.broken:
        uri = "" if view.embedded else f" --tracking-uri {view.uri}"
        return (f"MLflow: {n} runs logged, then off after a failure ({view.error}); {len(view.missed)} runs not "
                f"logged: `msabench sync-mlflow --out {out}{uri}`")
    there = f", {len(view.present)} already there" if view.present else ""
    line = f"MLflow: {n} runs logged{there} ({view.where()})"
    if view.embedded and (view.logged or view.present):
        line += f"; browse with `mlflow ui --backend-store-uri {view.uri}`"
    return line


def sync_mlflow(out: str | Path, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                progress: Callable[[str, str], None] | None = None) -> dict[str, int]:
    """Log every done run of the store that MLflow lacks; {'logged': n, 'present': m}."""
    from msabench.store.runs import Store

    if not mlflow_installed():
        raise UserError(f"sync-mlflow needs the mlflow package: {INSTALL_HINT}")
    store = Store(out, must_exist=True)
    with MlflowView(out, uri, experiment, strict=True) as view:
        return view.sync(store.runs("done"), progress)
