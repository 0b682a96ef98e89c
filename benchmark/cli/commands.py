"""CLI commands over runs and the store: run, status, clean, report."""

from __future__ import annotations

import os
import sys

import click

from msabench.cli.app import EXIT_FAILED_RUNS, cli, out_option
from msabench.core.config import parse_assignment
from msabench.core.errors import UserError
from msabench.plan.sweep import MAX_SEEDS


def parse_seeds(seeds: str | None, n_seeds: int | None) -> tuple[int, ...] | None:
    if seeds and n_seeds:
        raise UserError("give --seeds or --n-seeds, not both")
    if n_seeds is not None:
        if n_seeds < 1:
            raise UserError(f"--n-seeds {n_seeds}: must be at least 1")
        if n_seeds > MAX_SEEDS:
            raise UserError(f"--n-seeds {n_seeds}: must be at most {MAX_SEEDS} (a study, not a typo)")
        return tuple(range(1, n_seeds + 1))
    if not seeds:
        return None
    try:
        values = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise UserError(f"--seeds {seeds!r}: write whole numbers separated by commas, e.g. 1,2,3") from None
    if not values or any(v < 0 for v in values) or len(set(values)) != len(values):
        raise UserError(f"--seeds {seeds!r}: give distinct non-negative whole numbers, e.g. 1,2,3")
    return values


def parse_rates(rates: str | None) -> tuple[float, ...] | None:
    if not rates:
        return None
    try:
        values = tuple(float(r) for r in rates.split(",") if r.strip())
    except ValueError:
        raise UserError(f"--rates {rates!r}: write numbers in [0, 1] separated by commas, e.g. 0,0.1,0.2") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise UserError(f"--rates {rates!r}: every rate must lie in [0, 1]")
    if list(values) != sorted(set(values)):
        raise UserError(f"--rates {rates!r}: give distinct rates in increasing order")
    return values


def parse_sets(pairs: tuple[str, ...]) -> dict:
    return dict(parse_assignment(p, "--set") for p in pairs)


@cli.command()
@click.option("--protocol", "protocol", default="standard", show_default=True)
@click.option("--model", "models", multiple=True, help="NAME[@VARIANT][:key=value,...]; repeatable; 'all'.")
@click.option("--dataset", "datasets", multiple=True,
              help="A name (any case), or a corpus's dataset card (dataset.toml or its folder); repeatable; "
                   "default: the protocol's synthetic suite.")
@click.option("--setting", default=None, help="DG setting A|B|C.")
@click.option("--seeds", default=None, help="Comma-separated, e.g. 1,2,3.")
@click.option("--n-seeds", type=int, default=None)
@click.option("--modalities", default=None, help="Comma-separated subset of t,a,v.")
@click.option("--rates", default=None, help="Missing rates, e.g. 0,0.1,0.2.")
@click.option("--selection", default=None, help="A selection rule of the protocol; in DG it decides whether the lodo "
              "helper runs are planned (reports choose the rule with report --selection).")
@click.option("--data-root", default=lambda: os.environ.get("MSABENCH_DATA_ROOT"), help="Real data folder.")
@click.option("--set", "sets", multiple=True, help="KEY=VALUE for every run, e.g. train.lr=0.001.")
@out_option
@click.option("--device", default="auto", show_default=True, help="auto|cpu|cuda|cuda:N")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16", "fp16"]))
@click.option("--executor", default="local", show_default=True, help="local|process|ray|slurm")
@click.option("--workers", type=int, default=None,
              help="process: worker processes (default cores // threads, or one per GPU x --runs-per-gpu); "
                   "ray: most runs in flight.")
@click.option("--runs-per-gpu", "runs_per_gpu", type=int, default=None,
              help="process/ray: runs sharing one GPU (ignored, with a note, when no GPU is in use).")
@click.option("--address", default=None, help="ray: address of an existing cluster (default: a local one).")
@click.option("--threads", type=int, default=0,
              help="Torch threads per run (0: torch's default; process: cores // workers; ray, slurm: 1).")
@click.option("--slurm-partition", "slurm_partition", default=None, help="slurm: the partition (default: Slurm's).")
@click.option("--slurm-time", "slurm_time", default="60", show_default=True,
              help="slurm: time limit per run, minutes or [D-]HH:MM:SS (near it a run is requeued).")
@click.option("--slurm-gpus-per-task", "slurm_gpus", type=int, default=0, show_default=True,
              help="slurm: GPUs per run.")
@click.option("--slurm-array-parallelism", "slurm_parallelism", type=int, default=None,
              help="slurm: most runs at once (default: all).")
@click.option("--slurm-opt", "slurm_opts", multiple=True, metavar="KEY=VALUE",
              help="slurm: any other sbatch option, e.g. mem=16G, account=proj; repeatable.")
@click.option("--sweep", "sweep_file", default=None, help="A sweep file (TOML): the study's runs, instead of "
              "--protocol/--model/--dataset/...")
@click.option("--tracking-uri", "tracking_uri", default=None,
              help="MLflow tracking URI (default: SQLite under --out, sqlite:///OUT/mlflow.db).")
@click.option("--no-mlflow", "no_mlflow", is_flag=True, help="Do not log to MLflow (the store has everything).")
@click.option("--experiment", default="msabench", show_default=True, help="MLflow experiment name.")
@click.option("--retry-failed", is_flag=True)
@click.option("--dry-run", is_flag=True, help="List the runs, count them, estimate the time (from the store's timings, "
              "else a quick calibration of each configuration), stop.")
@click.option("-v", "--verbose", "verbosity", count=True,
              help="-v: a line per epoch of each run (losses, the selection metric, seconds); -vv: also every split.")
@click.option("--tiny", is_flag=True, help="Tiny model configs, small data, few epochs: a smoke run.")
@click.option("--from-run", "from_run", default=None, help="feature-analysis of a stored run (its checkpoint).")
@click.option("--table", "table", default=None,
              help="Run what a paper template needs (its registered rows; list them with `msabench tables`).")
def run(protocol, models, datasets, setting, seeds, n_seeds, modalities, rates, selection, data_root, sets, out,
        device, precision, executor, workers, runs_per_gpu, address, threads, slurm_partition, slurm_time, slurm_gpus,
        slurm_parallelism, slurm_opts, sweep_file, tracking_uri, no_mlflow, experiment, retry_failed, dry_run,
        verbosity, tiny, from_run, table) -> None:
    """Plan and execute a sweep (resumable: done runs are skipped)."""
    from msabench.plan.request import Request

    if from_run is not None:  # analyse a stored run instead of training
        from msabench.protocols import PROTOCOLS

        if not PROTOCOLS.get(protocol).analyses_stored_runs:
            able = [n for n, p in PROTOCOLS.items() if p.analyses_stored_runs]
            raise UserError(f"--from-run goes with --protocol {' or '.join(able)} (got {protocol!r})")
        from msabench.evaluation.feature_analysis import analyse_stored_run, summary_line

        analysis = analyse_stored_run(out, from_run, data_root=data_root, device=device)
        click.echo(f"wrote features.npz and analysis.json into {out}/runs/{from_run}: {summary_line(analysis)}")
        return
    if threads < 0:
        raise UserError(f"--threads {threads}: must be 0 (torch's default) or more")
    from msabench.execution.registry import EXECUTORS

    EXECUTORS.get(executor)  # an unknown name fails before planning
    if address is not None and executor != "ray":
        raise UserError(f"--address goes with --executor ray (got --executor {executor})")
    if runs_per_gpu is not None and executor == "local":
        raise UserError("--runs-per-gpu goes with --executor process or ray")
    if no_mlflow and tracking_uri:
        raise UserError("give --tracking-uri or --no-mlflow, not both")
    slurm = _slurm_settings(executor, slurm_partition, slurm_time, slurm_gpus, slurm_parallelism, slurm_opts)
    if address is None and executor != "slurm":  # a cluster's cores are not this machine's
        from msabench.execution.process import oversubscription

        warning = oversubscription(executor, workers, threads)
        if warning:
            click.echo(warning, err=True)
    from msabench.plan.sweep import load_sweep, plan_requests

    if sweep_file:
        ctx = click.get_current_context()
        given = [p.opts[0] for p in ctx.command.params if p.name in STUDY_OPTIONS
                 and ctx.get_parameter_source(p.name) not in (None, click.core.ParameterSource.DEFAULT)]
        if given:
            raise UserError(f"--sweep {sweep_file} holds the study: drop {', '.join(given)} (or edit the file)")
        _run_study(load_sweep(sweep_file), out=out, data_root=data_root, tiny=tiny, dry_run=dry_run,
                   executor=executor, workers=workers, runs_per_gpu=runs_per_gpu, address=address, threads=threads,
                   device=device, precision=precision, retry_failed=retry_failed, no_mlflow=no_mlflow,
                   tracking_uri=tracking_uri, experiment=experiment, slurm=slurm,
                   verbosity=verbosity)
        return
    elif table is not None:  # the runs a paper template needs
        requests = _table_requests(table, models, datasets, setting, parse_seeds(seeds, n_seeds), modalities,
                                   parse_rates(rates), selection, parse_sets(sets), data_root, tiny)
    else:
        requests = [Request(
            protocol=protocol, models=tuple(models), datasets=tuple(datasets), setting=setting,
            seeds=parse_seeds(seeds, n_seeds),
            modalities=tuple(m.strip() for m in modalities.split(",")) if modalities else None,
            rates=parse_rates(rates), selection=selection, user_set=parse_sets(sets), data_root=data_root,
            tiny=tiny,
        )]
    specs = plan_requests(requests)
    if dry_run:
        _list_runs(specs, out, retry_failed, executor, workers, threads, runs_per_gpu, device, slurm=slurm,
                   precision=precision, data_root=data_root)
        return
    from msabench.engine.options import RunOptions
    from msabench.engine.runner import check_precision, resolve_device
    from msabench.plan.sweep import run_sweep
    from msabench.tracking import TrackingSettings

    check_precision(precision, resolve_device(device))
    from msabench.data.datasets import registered_cards

    options = RunOptions(device=device, precision=precision, threads=threads, data_root=data_root,
                         dataset_cards=registered_cards(), verbosity=verbosity)
    outcome = run_sweep(specs, out=out, options=options, executor=executor, retry_failed=retry_failed,
                        workers=workers, runs_per_gpu=runs_per_gpu, address=address, slurm=slurm,
                        tracking=TrackingSettings(enabled=not no_mlflow, uri=tracking_uri, experiment=experiment),
                        echo=click.echo)
    exit_on_failed_runs(outcome)


def _list_runs(specs, out, retry_failed, executor, workers, threads, runs_per_gpu, device, grid_keys=(),
               slurm=None, *, precision="fp32", data_root=None) -> None:
    """--dry-run: one line per run (with its grid point), the count, the time estimate (from the store's
    timings, else a quick calibration of each configuration; and, for slurm, the sbatch parameters of the
    job array)."""
    from msabench.engine.calibration import calibrate
    from msabench.engine.options import RunOptions
    from msabench.plan.sweep import effective_workers, estimate
    from msabench.store.runs import Store

    for s in specs:
        point = ",".join(f"{k}={s.config[k]}" for k in grid_keys if k in s.config)
        click.echo(f"{s.run_id}  {s.protocol} {s.setting or '-'} {'+'.join(s.datasets)} {s.label} "
                   f"seed={s.seed} rate={s.rate:g} modalities={','.join(s.modalities)}"
                   + (f"  {point}" if point else ""))
    click.echo(f"{len(specs)} runs")
    options = RunOptions(device=device, precision=precision, threads=threads, data_root=data_root)
    est = estimate(specs, Store(out), retry_failed, calibrate=lambda spec: calibrate(spec, options))
    todo = est.known + est.unknown
    click.echo(est.describe(effective_workers(executor, workers, threads, runs_per_gpu, device, todo, slurm)))
    if slurm is not None and todo:
        from msabench.execution.slurm_executor import describe_sbatch

        click.echo(f"sbatch parameters of the job array ({todo} runs to do):")
        for line in describe_sbatch(slurm, RunOptions(device=device, threads=threads), todo):
            click.echo(f"  {line}")


def _run_study(sweep, *, out, data_root, tiny, dry_run, executor, workers, runs_per_gpu, address, threads, device,
               precision, retry_failed, no_mlflow, tracking_uri, experiment, slurm=None, verbosity=0) -> None:
    """`run --sweep FILE`: plain sweeps and grid studies, through msabench.sweeps (the Python API)."""
    from msabench import sweeps

    study = sweeps.plan(sweep, tiny=tiny, data_root=data_root)
    keys = sweep.grid_keys
    if dry_run:
        if study.selects:
            click.echo(f"phase 1, grid search: every configuration with seeds {study.seeds}")
        _list_runs(study.search, out, retry_failed, executor, workers, threads, runs_per_gpu, device, keys, slurm,
                   precision=precision, data_root=data_root)
        if study.selects:
            _describe_phase_two(study, out, retry_failed, executor, workers, threads, runs_per_gpu, device)
        return
    outcome = sweeps.run(study, out, executor=executor, workers=workers, threads=threads, device=device,
                         precision=precision, retry_failed=retry_failed, runs_per_gpu=runs_per_gpu, address=address,
                         slurm=slurm, mlflow=not no_mlflow, tracking_uri=tracking_uri, experiment=experiment,
                         data_root=data_root, echo=click.echo, verbosity=verbosity)
    if outcome.unchosen:
        click.echo(f"msabench: {len(outcome.unchosen)} group(s) have no configuration with every search run done; "
                   "their final runs were not started (fix the failures, then re-run with --retry-failed)", err=True)
    if outcome.failed or outcome.unchosen:
        exit_on_failed_runs(outcome, force=True)


def _describe_phase_two(study, out, retry_failed, executor, workers, threads, runs_per_gpu, device) -> None:
    from msabench import sweeps

    rule = study.sweep.select.rule or "the protocol's default rule"
    groups, runs = study.phase_two_size()
    click.echo(f"phase 2: per model and dataset ({groups} group(s)), the configuration with the best mean "
               f"validation score under {rule} (never test) is re-run over seeds {study.final_seeds}: "
               f"{runs} runs, the ones already run in phase 1 included")
    choices = sweeps.choose(study, out)
    if choices and all(c.config is not None for c in choices):
        for choice in choices:
            click.echo(choice.describe())
        click.echo("phase 2 from the search runs in the store:")
        _list_runs(sweeps.final_specs(study, choices), out, retry_failed, executor, workers, threads, runs_per_gpu,
                   device, study.sweep.grid_keys)
    else:
        click.echo("(the chosen configurations are known once the phase 1 runs are done)")


def exit_on_failed_runs(outcome, force: bool = False) -> None:
    """A sweep with failed runs (now, or earlier and not retried) exits EXIT_FAILED_RUNS (docs/architecture.md §3)."""
    if outcome.failed or force:
        if outcome.failed:
            click.echo(f"msabench: {len(outcome.failed)} run(s) failed (listed above); exit {EXIT_FAILED_RUNS}",
                       err=True)
        click.get_current_context().exit(EXIT_FAILED_RUNS)


SLURM_OPTIONS = ("slurm_partition", "slurm_time", "slurm_gpus", "slurm_parallelism", "slurm_opts")


def _slurm_settings(executor, partition, time_text, gpus, parallelism, opts):
    """The --slurm-* options as SlurmSettings (None for other executors, which refuse them)."""
    if executor != "slurm":
        ctx = click.get_current_context()
        given = [p.opts[0] for p in ctx.command.params if p.name in SLURM_OPTIONS
                 and ctx.get_parameter_source(p.name) not in (None, click.core.ParameterSource.DEFAULT)]
        if given:
            raise UserError(f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} with --executor slurm "
                            f"(got --executor {executor})")
        return None
    from msabench.execution.slurm_executor import SlurmSettings, parse_options, parse_time

    if gpus < 0:
        raise UserError(f"--slurm-gpus-per-task {gpus}: must be 0 or more")
    if parallelism is not None and parallelism < 1:
        raise UserError(f"--slurm-array-parallelism {parallelism}: must be at least 1")
    return SlurmSettings(partition=partition, time_minutes=parse_time(time_text), gpus_per_task=gpus,
                         array_parallelism=parallelism, extra=parse_options(opts))


def _table_requests(table, models, datasets, setting, seeds, modalities, rates, selection, user_set, data_root, tiny):
    """`run --table T`: one request per (setting, modalities) group of the template's rows whose models
    are registered (the others are skipped with a message); the template fixes protocol, models and
    their modalities."""
    from msabench.protocols.templates import template_requests

    if models:
        raise UserError(f"--table {table} runs the template's own rows; drop --model (or drop --table)")
    if modalities:
        raise UserError(f"--table {table}: the template sets each row's modalities; drop --modalities")
    requests = template_requests(table, datasets=tuple(datasets), seeds=seeds, selection=selection,
                                 user_set=user_set, data_root=data_root, tiny=tiny, rates=rates,
                                 echo=lambda m: click.echo(m, err=True))
    if setting is not None:
        requests = [r for r in requests if r.setting in (None, setting)]
    return requests


# Options that define the study: with --sweep they belong in the file.
STUDY_OPTIONS = ("protocol", "models", "datasets", "setting", "seeds", "n_seeds", "modalities", "rates", "selection",
                 "sets", "table")


@cli.command()
@out_option
def status(out) -> None:
    """Count the store's runs by status and list failed ones (and unreadable ones: exit 2)."""
    from msabench.store.runs import Store, StoreError

    store = Store(out, must_exist=True)
    counts: dict[str, int] = {}
    failed, unreadable, degenerate = [], [], []
    for rd in store.runs():
        st = rd.status()
        try:
            rd.verify(keep_records=True)  # a corrupted file or unknown schema: listed, then exit 2
        except StoreError as exc:
            unreadable.append((rd.run_id, str(exc)))
            st = "unreadable"
        counts[st] = counts.get(st, 0) + 1
        if st == "failed":
            failed.append((rd.run_id, _run_label(rd), rd.read_failure().get("reason", "")))
        elif st == "done":
            why = _degenerate(rd)
            if why:
                degenerate.append((rd.run_id, _run_label(rd), why))
    click.echo(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty store")
    if store.foreign_note():
        click.echo(store.foreign_note())
    for run_id, label, reason in failed:
        click.echo(f"failed {run_id}{label}: {reason}")
    for run_id, label, why in degenerate:
        click.echo(f"degenerate {run_id}{label}: {why}")
    for run_id, reason in unreadable:
        click.echo(f"unreadable {run_id}: {reason}")
    if unreadable:
        raise StoreError(f"{len(unreadable)} run(s) of {out} cannot be read; the first: {unreadable[0][1]}")


def _degenerate(rd) -> str:
    """Why a finished run's test predictions are degenerate at the epoch its first selection rule
    picks ('' when they are not; the lodo rule needs its helpers, so `last` stands in for it)."""
    from msabench.report.aggregate import RunView, degenerate_reason

    try:
        spec = rd.read_spec_dict()
        rule = next((r for r in spec.get("selection_rules") or ("val",) if r != "lodo"), "last")
        why = degenerate_reason(RunView(rd.run_id, spec, rd.read_records()), rule)
    except Exception:  # noqa: BLE001 - status still counts a run whose files it cannot judge
        return ""
    return f"{why} (selection '{rule}')" if why else ""


def _run_label(rd) -> str:
    """' (model datasets seed N)' from spec.json, or '' when the run failed before writing it."""
    try:
        spec = rd.read_spec_dict()
        from msabench.core.config import spec_label

        return f" ({spec_label(spec)} {'+'.join(spec['datasets'])} seed {spec['seed']})"
    except Exception:  # noqa: BLE001 - the label is a courtesy
        return ""


@cli.command()
@out_option
@click.option("--incomplete", is_flag=True, help="Remove runs that started but neither finished nor failed.")
def clean(out, incomplete) -> None:
    """Remove incomplete runs from the store."""
    from msabench.store.runs import Store

    if not incomplete:
        raise UserError("say what to clean: --incomplete")
    store = Store(out, must_exist=True)
    removed = store.clean_incomplete()
    click.echo(f"removed {len(removed)} incomplete runs")
    if store.foreign_note():
        click.echo(store.foreign_note())


@cli.command()
@out_option
@click.option("--table", "table", default=None, help="A paper template (msabench tables).")
@click.option("--format", "fmt", default="markdown", show_default=True)
@click.option("--selection", default=None, help="val|train-domain|oracle|lodo|last")
@click.option("-o", "output", default=None, help="Write to this file (default stdout).")
@click.option("--compare-paper", is_flag=True,
              help="With --table: the paper's numbers under ours (and the differences, on real data only).")
@click.option("--reference", default=None,
              help="Mark cells that differ from this row (its model spec, variant or label), Holm-adjusted across "
                   "the table.")
@click.option("--test", "test", default=None,
              help="With --reference: t (paired t over seeds, the default), wilcoxon (over seeds), or over test items "
                   "from the stored predictions: bootstrap (paired), mcnemar (accuracy columns), williams (Corr).")
@click.option("--plots", "plots", default=None, help="Also write plots (PNG and PDF) into this folder.")
def report(out, table, fmt, selection, output, compare_paper, reference, test, plots) -> None:
    """Tables from the store: one generic table per protocol and setting, or a paper layout (--table)."""
    from msabench.report.build import build_report

    text = build_report(out, table=table, fmt=fmt, selection=selection, compare_paper=compare_paper,
                        reference=reference, plots=plots, warn=lambda m: click.echo(m, err=True),
                        terminal=not output and stdout_is_terminal(), test=test)
    if output:
        from msabench.store.runs import atomic_write_text

        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


@cli.command("sync-mlflow")
@out_option
@click.option("--tracking-uri", "tracking_uri", default=None,
              help="MLflow tracking URI (default: SQLite under --out, sqlite:///OUT/mlflow.db).")
@click.option("--experiment", default="msabench", show_default=True, help="MLflow experiment name.")
def sync_mlflow_cmd(out, tracking_uri, experiment) -> None:
    """Log every done run of the store that MLflow lacks (after MLflow was down or off)."""
    from msabench.tracking import sync_mlflow

    counts = sync_mlflow(out, tracking_uri, experiment)
    click.echo(f"MLflow: {counts.get('logged', 0)} runs logged, {counts.get('present', 0)} already there")


@cli.command("export")
@out_option
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("-o", "output", default=None, help="Write to this file (csv default: stdout; parquet: required).")
def export_cmd(out, fmt, output) -> None:
    """The store as a tidy table: one row per run x epoch x split x domain x metric."""
    from msabench.report.export import export

    n = export(out, fmt, output)
    if output:
        click.echo(f"wrote {n} rows to {output}", err=True)


@cli.command()
@click.option("--baseline", "baseline", default=None, help="The baseline file (JSON) to check against.")
@out_option
@click.option("--run", "run_fresh", is_flag=True,
              help="Re-run the baseline's specs into a new temporary store (the default without an explicit --out).")
@click.option("--write-baseline", "write", default=None, help="Write a baseline of the store at --out to this file.")
@click.option("--k", "k", type=float, default=None, help="With --write-baseline: tolerance in seed stds (default 3).")
@click.option("--floor", "floor", type=float, default=None,
              help="With --write-baseline: absolute tolerance floor, in the metric's unit (default 0.01).")
@click.option("--selection", default=None, help="With --write-baseline: the selection rule (default each protocol's).")
@click.option("--keep", is_flag=True, help="With --run: keep the temporary store and print where it is.")
@click.pass_context
def check(ctx, baseline, out, run_fresh, write, k, floor, selection, keep) -> None:
    """Check a store (or fresh runs) against a stored baseline: exit 0 all cells hold, 1 regressions."""
    from click.core import ParameterSource

    from msabench.evaluation import check as checking

    explicit_out = ctx.get_parameter_source("out") == ParameterSource.COMMANDLINE
    if write:
        if baseline or run_fresh:
            raise UserError("--write-baseline writes from the store at --out; drop --baseline/--run")
        data = checking.write_baseline(write, out, k=checking.DEFAULT_K if k is None else k,
                                       floor=checking.DEFAULT_FLOOR if floor is None else floor, selection=selection)
        click.echo(f"wrote {write}: {len(data['cells'])} cells from {len(data['specs'])} runs of {out}")
        return
    if not baseline:
        raise UserError("give --baseline FILE (or --write-baseline FILE to make one)")
    if k is not None or floor is not None or selection is not None:
        raise UserError("--k, --floor and --selection go with --write-baseline; the baseline file holds them")
    if run_fresh and explicit_out:
        raise UserError("give --out DIR (check that store) or --run (fresh runs), not both")
    result = checking.check(baseline, out=out if explicit_out else None, run=not explicit_out, keep=keep,
                            echo=lambda m: click.echo(m, err=True))
    for line in result.regressions + result.missing_cells:
        click.echo(line)
    if result.missing_runs:
        shown = ", ".join(result.missing_runs[:5]) + (", ..." if len(result.missing_runs) > 5 else "")
        click.echo(f"missing runs: {len(result.missing_runs)} of the baseline's runs are not done in the store "
                   f"({shown}); run them (`msabench run` with the baseline's settings, or `msabench check --baseline "
                   f"{baseline} --run`), then check again")
    if not result.ok:
        found = [f"{len(result.regressions)} regression(s)"]
        if result.missing_runs:
            found.append(f"{len(result.missing_runs)} missing run(s)")
        if result.missing_cells:
            found.append(f"{len(result.missing_cells)} missing cell(s)")
        click.echo(f"check: {', '.join(found)} against {baseline}", err=True)
        sys.exit(1)  # SystemExit: msabench.cli.app.main maps click's own Exit codes to 0
    click.echo(f"check: every cell of {baseline} holds")
