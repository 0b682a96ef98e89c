"""CLI commands over runs and the store: run, status, clean, report."""

from __future__ import annotations

import os
import sys
import time

import click

from msabench.cli import cli, out_option
from msabench.config import parse_assignment
from msabench.errors import UserError


def parse_seeds(seeds: str | None, n_seeds: int | None) -> tuple[int, ...] | None:
    if seeds and n_seeds:
        raise UserError("give --seeds or --n-seeds, not both")
    if n_seeds is not None:
        if n_seeds < 1:
            raise UserError(f"--n-seeds {n_seeds}: must be at least 1")
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
@click.option("--dataset", "datasets", multiple=True, help="Repeatable; default: the protocol's synthetic suite.")
@click.option("--setting", default=None, help="DG setting A|B|C.")
@click.option("--seeds", default=None, help="Comma-separated, e.g. 1,2,3.")
@click.option("--n-seeds", type=int, default=None)
@click.option("--modalities", default=None, help="Comma-separated subset of t,a,v.")
@click.option("--rates", default=None, help="Missing rates, e.g. 0,0.1,0.2.")
@click.option("--selection", default=None, help="Restrict to one selection rule.")
@click.option("--data-root", default=lambda: os.environ.get("MSABENCH_DATA_ROOT"), help="Real data folder.")
@click.option("--set", "sets", multiple=True, help="KEY=VALUE for every run, e.g. train.lr=0.001.")
@out_option
@click.option("--device", default="auto", show_default=True, help="auto|cpu|cuda|cuda:N")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16", "fp16"]))
@click.option("--executor", default="local", show_default=True)
@click.option("--workers", type=int, default=None)
@click.option("--threads", type=int, default=0, help="Torch threads per run (0: torch's default).")
@click.option("--retry-failed", is_flag=True)
@click.option("--dry-run", is_flag=True, help="List the runs, count them, stop.")
@click.option("--tiny", is_flag=True, help="Tiny model configs, small data, few epochs: a smoke run.")
def run(protocol, models, datasets, setting, seeds, n_seeds, modalities, rates, selection, data_root, sets, out,
        device, precision, executor, workers, threads, retry_failed, dry_run, tiny) -> None:
    """Plan and execute a sweep (resumable: done runs are skipped)."""
    from msabench.planning import Request, plan

    if threads < 0:
        raise UserError(f"--threads {threads}: must be 0 (torch's default) or more")
    request = Request(
        protocol=protocol, models=tuple(models), datasets=tuple(datasets), setting=setting,
        seeds=parse_seeds(seeds, n_seeds),
        modalities=tuple(m.strip() for m in modalities.split(",")) if modalities else None,
        rates=parse_rates(rates), selection=selection, user_set=parse_sets(sets), data_root=data_root, tiny=tiny,
    )
    specs = plan(request)
    if dry_run:
        for s in specs:
            click.echo(f"{s.run_id}  {s.protocol} {s.setting or '-'} {'+'.join(s.datasets)} {s.model} "
                       f"seed={s.seed} rate={s.rate:g} modalities={','.join(s.modalities)}")
        click.echo(f"{len(specs)} runs")
        return
    from msabench.executors import EXECUTORS
    from msabench.runner import RunOptions, check_precision, resolve_device
    from msabench.store import Store

    check_precision(precision, resolve_device(device))
    store = Store(out)
    options = RunOptions(device=device, precision=precision, threads=threads, data_root=data_root)
    started = time.perf_counter()
    total = len(specs)
    counter = {"n": 0}

    def progress(spec, status):
        counter["n"] += 1
        click.echo(f"[{counter['n']}/{total}] {status:8s} {spec.model} {'+'.join(spec.datasets)} seed={spec.seed}"
                   f" rate={spec.rate:g}  ({time.perf_counter() - started:.0f}s)", err=True)

    outcome = EXECUTORS.get(executor)(specs, store, options, retry_failed=retry_failed, progress=progress,
                                      workers=workers)
    click.echo(f"done {len(outcome.done)}, failed {len(outcome.failed)}, skipped {len(outcome.skipped)} "
               f"of {total} runs in {time.perf_counter() - started:.0f}s; store {out}")
    if outcome.failed:
        click.echo("failed runs are kept with their reason; `msabench status` lists them, --retry-failed reruns them")
    click.echo(f"report: msabench report --out {out}")


@cli.command()
@out_option
def status(out) -> None:
    """Count the store's runs by status and list failed ones."""
    from msabench.store import Store

    store = Store(out, must_exist=True)
    counts: dict[str, int] = {}
    failed = []
    for rd in store.runs():
        st = rd.status()
        counts[st] = counts.get(st, 0) + 1
        if st == "failed":
            failed.append((rd.run_id, rd.read_failure().get("reason", "")))
    click.echo(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty store")
    for run_id, reason in failed:
        click.echo(f"failed {run_id}: {reason}")


@cli.command()
@out_option
@click.option("--incomplete", is_flag=True, help="Remove runs that started but neither finished nor failed.")
def clean(out, incomplete) -> None:
    """Remove incomplete runs from the store."""
    from msabench.store import Store

    if not incomplete:
        raise UserError("say what to clean: --incomplete")
    removed = Store(out, must_exist=True).clean_incomplete()
    click.echo(f"removed {len(removed)} incomplete runs")


@cli.command()
@out_option
@click.option("--table", "table", default=None, help="A paper template (msabench tables).")
@click.option("--format", "fmt", default="markdown", show_default=True)
@click.option("--selection", default=None, help="val|train-domain|oracle|lodo|last")
@click.option("-o", "output", default=None, help="Write to this file (default stdout).")
def report(out, table, fmt, selection, output) -> None:
    """Tables from the store: one generic table per protocol and setting."""
    from msabench.report.build import build_report

    text = build_report(out, table=table, fmt=fmt, selection=selection)
    if output:
        from msabench.store import atomic_write_text

        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)
