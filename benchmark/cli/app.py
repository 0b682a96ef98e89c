"""The command line (docs/architecture.md §3): a thin click layer over the library.

User errors (UserError, click usage errors) print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys

import click

from msabench import __version__
from msabench.core.errors import UserError

DEFAULT_OUT = "./msabench-runs"
# Exit codes: 0 success; 1 `check` found regressions; 2 bad input (nothing started); 3 a sweep ended
# with failed runs (now, or earlier and not retried; the others' results are kept); 130 interrupted.
EXIT_FAILED_RUNS = 3

out_option = click.option(
    "--out", "out", default=lambda: os.environ.get("MSABENCH_OUT", DEFAULT_OUT), show_default="./msabench-runs",
    help="The run store (env MSABENCH_OUT).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="msabench")
def cli() -> None:
    """msabench: reproducible benchmarks for multimodal sentiment analysis."""


def _emit(obj, as_json: bool, lines) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
    else:
        for line in lines:
            click.echo(line)


def model_summary(cls) -> str:
    """The first line of the model's docstring (its class's, else its module's), without the
    leading "`name`:" that the listing already shows."""
    import sys

    doc = cls.__dict__.get("__doc__") or getattr(sys.modules.get(cls.__module__), "__doc__", None) or ""
    first = next((line.strip() for line in doc.strip().splitlines() if line.strip()), "")
    prefix = f"`{cls.name}`:"
    return first[len(prefix):].strip() if first.startswith(prefix) else first


@cli.command()
@json_option
@click.option("--params", "params_preset", default=None, metavar="FAMILY",
              help="Count every model's parameters for a dataset family (mosi, mosei, sims, meld, iemocap) "
                   "on the meta device: no data, no weights.")
@click.option("--set", "sets", multiple=True, help="With --params: KEY=VALUE, e.g. text.encoder=bert-base-uncased.")
def models(as_json: bool, params_preset: str | None, sets: tuple[str, ...]) -> None:
    """List the registered model plugins."""
    import dataclasses

    import msabench.models  # noqa: F401
    from msabench.api.model import MODELS

    if sets and params_preset is None:
        raise UserError("--set goes with --params")
    if params_preset is not None:
        from msabench.core.config import parse_assignment
        from msabench.plan.param_count import count_params

        counts = count_params(params_preset, dict(parse_assignment(p, "--set") for p in sets))
        _emit(counts, as_json, [f"{n:16s} {c['trainable']:>12,d} trainable {c['frozen']:>12,d} frozen  "
                                f"{c['seconds']:.2f}s" + (f"  ({c['text_encoder']})" if c["text_encoder"] else "")
                                for n, c in counts.items()])
        return

    info = {}
    for name, cls in MODELS.items():
        info[name] = {
            "impl_version": cls.impl_version, "variants": sorted(cls.VARIANTS),
            "modalities": list(cls.SUPPORTED_MODALITIES), "tasks": list(cls.TASKS),
            "config": dataclasses.asdict(cls.config_cls()), "train_defaults": cls.TRAIN_DEFAULTS,
            "presets": cls.PRESETS, "summary": model_summary(cls),
        }
    _emit(info, as_json, [f"{n:16s} v{i['impl_version']}  {i['summary']}" for n, i in info.items()])


@cli.command()
@json_option
def protocols(as_json: bool) -> None:
    """List the protocols with their versions, settings, selection rules and defaults."""
    from msabench.protocols import PROTOCOLS

    info = {name: p.describe() for name, p in PROTOCOLS.items()}
    _emit(info, as_json, [f"{n:18s} v{p['version']}  {p['summary']}" for n, p in info.items()])


@cli.command()
@json_option
@click.option("--data-root", default=None,
              help="Also list the corpora registered by cards under it (DIR/*/dataset.toml).")
def datasets(as_json: bool, data_root: str | None) -> None:
    """List the dataset names (real, synthetic, and your own from their cards)."""
    from msabench.data.datasets import describe_datasets, register_root_cards

    if data_root:
        register_root_cards(data_root)

    info = describe_datasets()
    _emit(info, as_json, [f"{n:18s} {d.get('kind', '')}  {d.get('summary', '')}" for n, d in info.items()])


@cli.command()
@json_option
def tables(as_json: bool) -> None:
    """List the paper table templates."""
    from msabench.protocols.templates import TEMPLATES

    info = {name: t.describe() for name, t in TEMPLATES.items()}
    _emit(info, as_json, [f"{n:16s} {t['title']}" for n, t in info.items()] or ["(no templates yet)"])


CACHE_KINDS = ("synth", "text")


@cli.group()
def cache() -> None:
    """The cache ($MSABENCH_CACHE, default ~/.cache/msabench): synthetic datasets and frozen text encodings."""


@cache.command("list")
@json_option
def cache_list(as_json: bool) -> None:
    """List the synthetic datasets and the cached encoder outputs, with their sizes."""
    from msabench.data.synth import cache_root
    from msabench.data.synth_cache import human, list_synth
    from msabench.store.text_cache import list_entries, text_cache_dir

    folders, entries = list_synth(cache_root()), list_entries()
    lines = [f"{f['folder']:40s} {human(f['bytes']):>10s}  " + (
        "incomplete (an interrupted generation)" if f.get("incomplete") else
        f"{f['name']} scale {f['options'].get('scale')} seed {f['options'].get('seed')}"
        + (" aligned" if f["options"].get("aligned") else "") + (" + data.pkl" if f["mmsa_pickle"] else ""))
        for f in folders]
    lines.append(f"{len(folders)} synthetic datasets, {human(sum(f['bytes'] for f in folders))} in {cache_root()}")
    lines += [f"{e['key'][:16]}  {e['bytes'] / 2**20:8.1f} MiB  " + (
        "incomplete (rebuilt on next use)" if e.get("incomplete") else
        f"{e['parts'].get('encoder')} {e['parts'].get('pooling')} layer {e['parts'].get('layer')} "
        f"{e['parts'].get('dtype')} max_length {e['parts'].get('max_length')} split {e['parts'].get('split')} "
        f"mask {e['parts'].get('mask')}") for e in entries]
    total = sum(e["bytes"] for e in entries)
    lines.append(f"{len(entries)} entries, {total / 2**20:.1f} MiB in {text_cache_dir()}")
    _emit({"synth": folders, "text": entries}, as_json, lines)


@cache.command("clear")
@click.option("--only", type=click.Choice(CACHE_KINDS), default=None, help="Clear one part only.")
def cache_clear(only: str | None) -> None:
    """Delete the cached synthetic datasets and encoder outputs (recomputed, identical, when needed)."""
    from msabench.data.synth import cache_root
    from msabench.data.synth_cache import clear_synth
    from msabench.store.text_cache import clear, text_cache_dir

    if only in (None, "synth"):
        click.echo(f"deleted {clear_synth(cache_root())} synthetic datasets from {cache_root()}")
    if only in (None, "text"):
        click.echo(f"deleted {clear()} entries from {text_cache_dir()}")


@cli.group()
def data() -> None:
    """Generate the synthetic suite and check data files."""


@data.command("synth")
@click.argument("preset")
@click.option("--dest", default=None, help="Folder to write into (default: the cache).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--scale", default=1.0, show_default=True, type=float, help="Multiplies the split sizes.")
@click.option("--aligned", is_flag=True, help="Write the aligned_50 layout.")
@click.option("--noise-modality", type=click.Choice(["t", "a", "v"]), default=None,
              help="Replace this modality by pure noise.")
@click.option("--mmsa-pickle", "mmsa_pickle", is_flag=True,
              help="Also write MMSA's data.pkl (a second copy of the data, for MMSA itself or `data check`).")
@click.option("--yes", "-y", "yes", is_flag=True, help="Write more than the confirmation threshold without asking "
              "(env MSABENCH_SYNTH_CONFIRM_GB, default 4).")
def data_synth(preset, dest, seed, scale, aligned, noise_modality, mmsa_pickle, yes) -> None:
    """Generate a synthetic preset (deterministic; cached)."""
    from msabench.data.synth import bytes_to_write, cache_root, generate
    from msabench.data.synth_cache import confirm_threshold, human

    if scale <= 0:
        raise UserError(f"--scale {scale}: must be positive")
    options = dict(dest=dest, seed=seed, scale=scale, aligned=aligned, noise_modality=noise_modality)
    nbytes = bytes_to_write(preset, mmsa_pickle=mmsa_pickle, **options)
    where = cache_root(dest)
    if nbytes > confirm_threshold():
        if not yes and not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise UserError(f"{preset} would write about {human(nbytes)} under {where}, more than the "
                            f"{human(confirm_threshold())} written without asking; add --yes to write it")
        if not yes and not click.confirm(f"{preset}: write about {human(nbytes)} under {where}?", err=True):
            raise UserError(f"nothing written: {preset} needs about {human(nbytes)}; use a smaller --scale")
        click.echo(f"writing about {human(nbytes)} under {where}", err=True)
    folder = generate(preset, mmsa_pickle=mmsa_pickle, confirmed=True, **options)
    click.echo(str(folder))


@data.command("check")
@click.argument("path")
@click.option("--label-rule", type=click.Choice(["sign", "round"]), default="sign", show_default=True)
@json_option
def data_check(path, label_rule, as_json) -> None:
    """Validate a data file or a data root and summarise it."""
    from msabench.data.check import check_path, format_summary

    summary = check_path(path, label_rule=label_rule)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        click.echo(format_summary(summary))
