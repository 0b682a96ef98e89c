"""Paper table templates (docs/architecture.md §10): each paper table's layout as data, registered in TEMPLATES.

A template names its paper and table, the protocol whose runs fill it, the datasets (real names;
the synthetic suite stands in for them: `synth-<name>`, or `synth-dg` for the DG domains), the DG
settings its column groups read, its columns (the paper's metrics, cell formats and scales) and its
rows (model specs or variants the harness runs; `model=None` for rows it cannot run, e.g. S2LIF's
MLLM rows or numbers a paper quotes from others, which are always "published only"). The published
numbers themselves are data in `published_<paper>.toml` (`msabench.protocols.published`).

Model names are those the papers' model plugins register under (`mult`, `almt`, `self_mm`, `mmim`, `tfr_net`, `emt_dlfr`, `mica`,
`m3sa`, `mtmd`, `s2lif`, `mad`, `ridg`, ...); a row whose model is not registered yet shows the
paper's numbers as "published only", and `msabench run --table T` skips it with a message.

Torch-free: `template_requests` imports the model registry only when it is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from msabench.core.errors import UserError
from msabench.core.registry import Registry

TEMPLATES: Registry = Registry("table")

DATASET_LABELS = {"mosi": "CMU-MOSI", "mosei": "CMU-MOSEI", "sims": "CH-SIMS", "meld": "MELD",
                  "iemocap": "IEMOCAP"}


@dataclass(frozen=True)
class TemplateColumn:
    """One column of a paper table. A cell is one value, or a compound "a/b" cell with one part per
    (domain, metric) pair (EMT's Acc-2 "has0/non0", S2LIF's two source domains)."""

    key: str  # the column's key in the published data ("mosi:acc2", "A:src", "A:tgt:mosi", "params")
    label: str  # the printed header
    parts: tuple[tuple[str, str], ...]  # ((domain, metric), ...); domain is a real dataset name
    group: str = ""  # first header level (dataset, DG setting)
    subgroup: str = ""  # second header level (source / target domain)
    setting: str = ""  # DG: the setting whose runs fill the column
    scale: str = "percent"  # percent (x100) | fraction | raw
    digits: int = 1
    direction: str = "max"
    value: str = "test"  # test: the test metric at the selected epoch; auilc: area under the rate curve;
    # mean-over-rates: the mean of the curve over the rate grid (missing-random); params

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "group": self.group, "subgroup": self.subgroup,
                "setting": self.setting, "parts": [list(p) for p in self.parts], "scale": self.scale,
                "digits": self.digits, "direction": self.direction, "value": self.value}


@dataclass(frozen=True)
class TemplateRow:
    key: str  # the row's id in the published data
    label: str  # shown label
    model: str | None = None  # model spec (NAME[@VARIANT][:k=v]); None: published only, never run
    group: str = ""
    modalities: tuple[str, ...] | None = None  # None: the protocol's default
    note: str = ""

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "model": self.model, "group": self.group,
                "modalities": list(self.modalities) if self.modalities else None, "note": self.note}


@dataclass(frozen=True)
class DGSetting:
    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Template:
    name: str
    paper: str
    table: str
    title: str
    protocol: str
    datasets: tuple[str, ...]  # real names; the synthetic suite stands in for them
    columns: tuple[TemplateColumn, ...]
    rows: tuple[TemplateRow, ...]
    settings: tuple[DGSetting, ...] = ()
    selection: str | None = None  # None: the protocol's default rule
    rates: tuple[float, ...] | None = None  # missing-rate grid (None: the protocol's)
    notes: tuple[str, ...] = field(default_factory=tuple)
    metric_note: str = ""  # e.g. which binary accuracy the paper's Acc-2 is
    # What a reader comparing with the paper must know about its numbers (inconsistencies found in the
    # paper, its splits and inputs); printed under the table, and pointed to by --compare-paper.
    paper_notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_dg(self) -> bool:
        from msabench.protocols import kind_of

        return kind_of(self.protocol) == "dg"

    def setting(self, name: str) -> DGSetting:
        for s in self.settings:
            if s.name == name:
                return s
        raise KeyError(name)

    def synthetic_datasets(self) -> tuple[str, ...]:
        """The synthetic stand-ins of the template's datasets (DG: the synth-dg suite)."""
        if self.is_dg:
            return ("synth-dg",)
        return tuple(f"synth-{d}" for d in self.datasets)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "paper": self.paper, "table": self.table, "title": self.title,
            "protocol": self.protocol, "datasets": list(self.datasets),
            "synthetic_datasets": list(self.synthetic_datasets()),
            "settings": [{"name": s.name, "sources": list(s.sources), "targets": list(s.targets)}
                         for s in self.settings],
            "selection": self.selection, "rates": list(self.rates) if self.rates else None,
            "columns": [c.describe() for c in self.columns], "rows": [r.describe() for r in self.rows],
            "column_groups": _ordered({c.group for c in self.columns if c.group}, [c.group for c in self.columns]),
            "row_groups": _ordered({r.group for r in self.rows if r.group}, [r.group for r in self.rows]),
            "models": sorted({r.model for r in self.rows if r.model}),
            "notes": list(self.notes) + ([self.metric_note] if self.metric_note else []),
            "paper_notes": list(self.paper_notes),
        }


def _ordered(values: set[str], order: list[str]) -> list[str]:
    out = []
    for v in order:
        if v in values and v not in out:
            out.append(v)
    return out


def _add(template: Template) -> Template:
    from msabench.protocols.published import published_rows, table_info

    keys = [c.key for c in template.columns]
    published_columns = table_info(template.paper, template.table)["columns"]
    if keys != published_columns:
        raise ValueError(f"template {template.name}: columns {keys} differ from the published data's "
                         f"{published_columns}")
    rows = {r.id for r in published_rows(template.paper, template.table)}
    unknown = [r.key for r in template.rows if r.key not in rows]
    if unknown or len({r.key for r in template.rows}) != len(template.rows):
        raise ValueError(f"template {template.name}: rows {unknown} are not in the published data (or repeat)")
    return TEMPLATES.add(template.name, template)


# -- column builders -------------------------------------------------------------------------------
_LABELS = {"mae": "MAE", "corr": "Corr", "acc7": "Acc-7", "acc5": "Acc-5", "acc3": "Acc-3", "acc2": "Acc-2",
           "f1": "F1"}


def _std_col(domain: str, metric: str, *, label: str | None = None, pair: bool = False, binary: str = "non0",
             value: str = "test", group: bool = True) -> TemplateColumn:
    """A column of the MOSI/MOSEI/SIMS tables: MAE/Corr raw with 3 digits, the rest percent with 1."""
    label = label or _LABELS[metric]
    if metric in ("mae", "corr"):
        return TemplateColumn(f"{domain}:{metric}", label, ((domain, metric),),
                              group=DATASET_LABELS[domain] if group else "", scale="raw", digits=3,
                              direction="min" if metric == "mae" else "max", value=value)
    if metric in ("acc2", "f1") and domain != "sims":
        base = "acc2" if metric == "acc2" else "f1"
        parts = ((domain, f"{base}_has0"), (domain, f"{base}_non0")) if pair else ((domain, f"{base}_{binary}"),)
    else:
        parts = ((domain, metric),)
    return TemplateColumn(f"{domain}:{metric}", label, parts, group=DATASET_LABELS[domain] if group else "",
                          scale="percent", digits=1, value=value)


def _std_cols(domain: str, metrics: Sequence[str], **kw) -> tuple[TemplateColumn, ...]:
    return tuple(_std_col(domain, m, **kw) for m in metrics)


def _rows(spec: Sequence[tuple]) -> tuple[TemplateRow, ...]:
    """(key, label, model[, group[, modalities]]) tuples -> rows; key None: the label is the key."""
    out = []
    for item in spec:
        key, label, model = item[0], item[1], item[2]
        group = item[3] if len(item) > 3 else ""
        modalities = item[4] if len(item) > 4 else None
        key = key or label
        out.append(TemplateRow(key=f"{group}/{key}" if group else key, label=label, model=model, group=group,
                               modalities=modalities))
    return tuple(out)


# -- S2LIF (domain generalisation; 3-class accuracy as fractions, 3 digits) --------------------------
_S2LIF_SINGLE = (DGSetting("A", ("mosei",), ("mosi", "meld")), DGSetting("B", ("mosi",), ("meld", "mosei")),
                 DGSetting("C", ("meld",), ("mosi", "mosei")))
_S2LIF_MULTI = (DGSetting("A", ("mosei", "meld"), ("mosi",)), DGSetting("B", ("mosi", "meld"), ("mosei",)),
                DGSetting("C", ("mosi", "mosei"), ("meld",)))
_TV, _T, _V = ("t", "v"), ("t",), ("v",)


def _dg_columns(settings: Sequence[DGSetting], kind: str) -> tuple[TemplateColumn, ...]:
    cols = []
    for s in settings:
        group = f"{kind} Setting {s.name}"
        if len(s.sources) == 1:
            src = s.sources[0]
            cols.append(TemplateColumn(f"{s.name}:src:{src}", DATASET_LABELS[src].replace("CMU-", ""),
                                       ((src, "acc"),), group=group, subgroup="Source Domain", setting=s.name,
                                       scale="fraction", digits=3))
        else:
            label = "/".join(DATASET_LABELS[d].replace("CMU-", "") for d in s.sources)
            cols.append(TemplateColumn(f"{s.name}:src", label, tuple((d, "acc") for d in s.sources), group=group,
                                       subgroup="Source Domain", setting=s.name, scale="fraction", digits=3))
        for t in s.targets:
            cols.append(TemplateColumn(f"{s.name}:tgt:{t}", DATASET_LABELS[t].replace("CMU-", ""), ((t, "acc"),),
                                       group=group, subgroup="Target Domain", setting=s.name, scale="fraction",
                                       digits=3))
    return tuple(cols)


def _s2lif_rows(printed: dict[str, str]) -> tuple[TemplateRow, ...]:
    """S2LIF's baseline and S2LIF rows; `printed` maps our canonical row to the table's printed label."""
    spec = [
        ("MSA", "MuLT (M-Frozen)", "mult@frozen", _TV), ("MSA", "MuLT (M-Fine tuning)", "mult@finetune", _TV),
        ("MSA", "ALMT (M-Frozen)", "almt@frozen", _TV), ("MSA", "ALMT (M-Fine tuning)", "almt@finetune", _TV),
        ("MSA+Mask", "MuLT + Mask (M-Frozen)", "mult@mask-frozen", _TV),
        ("MSA+Mask", "MuLT + Mask (M-Fine tuning)", "mult@mask-finetune", _TV),
        ("MSA+Mask", "ALMT + Mask (M-Frozen)", "almt@mask-frozen", _TV),
        ("MSA+Mask", "ALMT + Mask (M-Fine tuning)", "almt@mask-finetune", _TV),
        ("OOD", "MAD (V)", "mad@v", _V), ("OOD", "MAD (T-Frozen)", "mad@t-frozen", _T),
        ("OOD", "MAD (T-Fine tuning)", "mad@t-finetune", _T), ("OOD", "MAD (M-Frozen)", "mad@m-frozen", _TV),
        ("OOD", "MAD (M-Fine tuning)", "mad@m-finetune", _TV),
        ("OOD", "RIDG (V)", "ridg@v", _V), ("OOD", "RIDG (T-Frozen)", "ridg@t-frozen", _T),
        ("OOD", "RIDG (T-Fine tuning)", "ridg@t-finetune", _T), ("OOD", "RIDG (M-Frozen)", "ridg@m-frozen", _TV),
        ("OOD", "RIDG (M-Fine tuning)", "ridg@m-finetune", _TV),
        ("MLLM", "Blip-2", None, None), ("MLLM", "InstructBlip", None, None), ("MLLM", "LLava-1.5-7B", None, None),
        ("MLLM", "LLava-1.5-13B", None, None), ("MLLM", "Qwen-VL", None, None),
        ("Ours", "S2LIF V→T (M-Frozen)", "s2lif@v2t-frozen", _TV), ("Ours", "S2LIF T&V (M-Frozen)", "s2lif@tv-frozen", _TV),
        ("Ours", "S2LIF T→V (M-Frozen)", "s2lif@t2v-frozen", _TV),
        ("Ours", "S2LIF V→T (M-Fine tuning)", "s2lif@v2t-finetune", _TV),
        ("Ours", "S2LIF T&V (M-Fine tuning)", "s2lif@tv-finetune", _TV),
        ("Ours", "S2LIF T→V (M-Fine tuning)", "s2lif@t2v-finetune", _TV),
    ]
    rows = []
    for group, label, model, modalities in spec:
        key = printed[label]
        rows.append(TemplateRow(key=f"{group}/{key}", label=label, model=model, group=group, modalities=modalities,
                                note="" if model else "not runnable here: published only"))
    return tuple(rows)


def _in_printed_order(rows: tuple[TemplateRow, ...], paper: str, table: str) -> tuple[TemplateRow, ...]:
    """Rows in the paper's printed order (S2LIF Table 2 lists MAD (M-Finetune) before MAD (M-Frozen))."""
    from msabench.protocols.published import published_rows

    order = [r.id for r in published_rows(paper, table)]
    return tuple(sorted(rows, key=lambda r: order.index(r.key)))


_S2LIF_T1 = {
    "MuLT (M-Frozen)": "MuLT (M-Frozen) (ACL2019)", "MuLT (M-Fine tuning)": "MuLT (M-Fine tuning) (ACL2019)",
    "ALMT (M-Frozen)": "ALMT (M-Frozen) (EMNLP2023)", "ALMT (M-Fine tuning)": "ALMT (M-Fine tuning)(EMNLP2023)",
    "MuLT + Mask (M-Frozen)": "MuLT + Mask (M-Frozen) (ACL2019)",
    "MuLT + Mask (M-Fine tuning)": "MuLT + Mask (M-Fine tuning) (ACL2019)",
    "ALMT + Mask (M-Frozen)": "ALMT + Mask (M-Frozen) (EMNLP2023)",
    "ALMT + Mask (M-Fine tuning)": "ALMT + Mask (M-Fine tuning) (EMNLP2023)",
    "MAD (V)": "MAD (V) (CVPR2023)", "MAD (T-Frozen)": "MAD (T-Frozen) (CVPR2023)",
    "MAD (T-Fine tuning)": "MAD (T-Fine tuning)(CVPR2023)", "MAD (M-Frozen)": "MAD (M-Frozen) (CVPR2023)",
    "MAD (M-Fine tuning)": "MAD (M-finetune) (CVPR2023)",
    "RIDG (V)": "RIDG (V) (ICCV2023)", "RIDG (T-Frozen)": "RIDG (T-Frozen) (ICCV2023)",
    "RIDG (T-Fine tuning)": "RIDG (T-Fine tuning) (ICCV2023)", "RIDG (M-Frozen)": "RIDG (M-Frozen) (ICCV2023)",
    "RIDG (M-Fine tuning)": "RIDG (M-Fine tuning) (ICCV2023)",
    "Blip-2": "Blip-2 (ICML2023)", "InstructBlip": "InstructBlip (NeurIPS2024)",
    "LLava-1.5-7B": "LLava-1.5-7B (NeurIPS2023)", "LLava-1.5-13B": "LLava-1.5-13B (NeurIPS2023)", "Qwen-VL": "Qwen-VL",
    "S2LIF V→T (M-Frozen)": "S2LIF V→T (M-Frozen)", "S2LIF T&V (M-Frozen)": "S2LIF T&V (M-Frozen)",
    "S2LIF T→V (M-Frozen)": "S2LIF T→V (M-Frozen)", "S2LIF V→T (M-Fine tuning)": "S2LIF V→T (M-Fine tuning)",
    "S2LIF T&V (M-Fine tuning)": "S2LIF T&V (M-Fine tuning)", "S2LIF T→V (M-Fine tuning)": "S2LIF T→V (M-Fine tuning)",
}
_S2LIF_T2 = {
    "MuLT (M-Frozen)": "MuLT (M-Frozen) (ACL2019)", "MuLT (M-Fine tuning)": "MuLT (M-Finetune) (ACL2019)",
    "ALMT (M-Frozen)": "ALMT (M-Frozen) (EMNLP2023)", "ALMT (M-Fine tuning)": "ALMT (M-Finetune) (EMNLP2023)",
    "MuLT + Mask (M-Frozen)": "MuLT (M-Frozen) (ACL2020)", "MuLT + Mask (M-Fine tuning)": "MuLT (M-Finetune) (ACL2020)",
    "ALMT + Mask (M-Frozen)": "ALMT (M-Frozen) (EMNLP2023)", "ALMT + Mask (M-Fine tuning)": "ALMT (M-Finetune) (EMNLP2023)",
    "MAD (V)": "MAD (V) (CVPR2023)", "MAD (T-Frozen)": "MAD (T-frozen) (CVPR2023)",
    "MAD (T-Fine tuning)": "MAD (T-finetune) (CVPR2023)", "MAD (M-Fine tuning)": "MAD (M-Finetune) (CVPR2023)",
    "MAD (M-Frozen)": "MAD (M-Frozen) (CVPR2023)",
    "RIDG (V)": "RIDG (V) (ICCV2023)", "RIDG (T-Frozen)": "RIDG (T-frozen) (ICCV2023)",
    "RIDG (T-Fine tuning)": "RIDG (T-finetune) (ICCV2023)", "RIDG (M-Frozen)": "RIDG (M-Frozen) (ICCV2023)",
    "RIDG (M-Fine tuning)": "RIDG (M-Fine tuning) (ICCV2023)",
    "Blip-2": "Blip-2 (ICML2023)", "InstructBlip": "InstructBlip (NeurIPS2024)",
    "LLava-1.5-7B": "LLava-1.5-7B (NeurIPS2023)", "LLava-1.5-13B": "LLava-1.5-13B (NeurIPS2023)", "Qwen-VL": "Qwen-VL",
    "S2LIF V→T (M-Frozen)": "S2LIF V→T (M-Frozen)", "S2LIF T&V (M-Frozen)": "S2LIF V&T (M-Frozen)",
    "S2LIF T→V (M-Frozen)": "S2LIF T→V (M-Frozen)", "S2LIF V→T (M-Fine tuning)": "S2LIF V→T (M-Finetine)",
    "S2LIF T&V (M-Fine tuning)": "S2LIF V&T (M-Finetune)", "S2LIF T→V (M-Fine tuning)": "S2LIF T→V (M-Finetune)",
}
_S2LIF_NOTES = ("3-class accuracy (rule 'round'), as fractions as the paper prints them; text and vision (S2LIF has no audio).",)
_S2LIF_PAPER = (
    "S2LIF's text states the 'sign' rule for the 3 classes, but the label counts it gives imply 'round' "
    "(the rule used here).",
    "S2LIF's appendix swaps the MELD and MOSEI label counts; its test sets have MELD 2,608 and MOSEI 4,591 samples.",
)

_add(Template(
    name="s2lif-table1", paper="s2lif", table="1", protocol="dg-single",
    title="Single-source domain generalisation (S2LIF Table 1)", datasets=("mosi", "mosei", "meld"),
    settings=_S2LIF_SINGLE, columns=_dg_columns(_S2LIF_SINGLE, "Single-source"), rows=_in_printed_order(_s2lif_rows(_S2LIF_T1), "s2lif", "1"),
    notes=_S2LIF_NOTES, paper_notes=_S2LIF_PAPER,
))
_add(Template(
    name="s2lif-table2", paper="s2lif", table="2", protocol="dg-multisource",
    title="Multi-source domain generalisation (S2LIF Table 2)", datasets=("mosi", "mosei", "meld"),
    settings=_S2LIF_MULTI, columns=_dg_columns(_S2LIF_MULTI, "Multi-source"), rows=_in_printed_order(_s2lif_rows(_S2LIF_T2), "s2lif", "2"),
    notes=_S2LIF_NOTES + ("Source cells list the two source domains' accuracies.",),
    paper_notes=_S2LIF_PAPER + ("The Qwen-VL cells of setting B in S2LIF's Table 2 are permuted (shown as printed).",),
))
_add(Template(
    name="s2lif-table3", paper="s2lif", table="3", protocol="dg-multisource",
    title="Ablation study on multi-source setting A (S2LIF Table 3)", datasets=("mosi", "mosei", "meld"),
    settings=_S2LIF_MULTI[:1], columns=_dg_columns(_S2LIF_MULTI[:1], "Multi-source"),
    rows=_rows([(None, "Add Noise", "s2lif@add-noise", "", _TV), (None, "Using DS", "s2lif@using-ds", "", _TV),
                (None, "w/o key-frame mask", "s2lif@no-keyframe-mask", "", _TV),
                ("S2LIF T→V (M-Frozen)", "S2LIF T→V (M-Frozen)", "s2lif@t2v-frozen", "", _TV)]),
    notes=_S2LIF_NOTES + ("The paper prints the w/o key-frame mask target cell as '663'; read as 0.663.",),
    paper_notes=_S2LIF_PAPER,
))

# -- EMT-DLFR ---------------------------------------------------------------------------------------
_EMT_METRICS = ("mae", "corr", "acc7", "acc5", "acc2", "f1")
_SIMS_METRICS = ("mae", "corr", "acc5", "acc3", "acc2", "f1")
_QUOTED = "From the original papers"
_EMT_NOTE = "Acc-2 and F1 print 'has0/non0': negative vs non-negative, then negative vs positive (zeros excluded)."

_add(Template(
    name="emt-table4", paper="emt-dlfr", table="4", protocol="standard",
    title="Complete modality setting on CMU-MOSI and CMU-MOSEI (EMT-DLFR Table 4)", datasets=("mosi", "mosei"),
    columns=_std_cols("mosi", _EMT_METRICS, pair=True) + _std_cols("mosei", _EMT_METRICS, pair=True),
    rows=_rows([(None, "TFN†", None, _QUOTED), (None, "LMF†", None, _QUOTED), (None, "MuT†", None, _QUOTED),
                (None, "MISA†", None, _QUOTED), (None, "Self-MM†", None, _QUOTED), (None, "MMIM†", None, _QUOTED),
                (None, "AMML‡", None, _QUOTED), (None, "TFR-Net◇", None, _QUOTED),
                (None, "MuT", "mult", "Reproduced"), (None, "Self-MM", "self_mm", "Reproduced"),
                (None, "MMIM", "mmim", "Reproduced"), (None, "TFR-Net", "tfr_net", "Reproduced"),
                (None, "EMT", "emt_dlfr@emt", "Reproduced")]),
    metric_note=_EMT_NOTE,
))
_add(Template(
    name="emt-table5", paper="emt-dlfr", table="5", protocol="standard",
    title="Complete modality setting on CH-SIMS (EMT-DLFR Table 5)", datasets=("sims",),
    columns=_std_cols("sims", _SIMS_METRICS, group=False),
    rows=_rows([(None, "TFN†", None, _QUOTED), (None, "LMF†", None, _QUOTED), (None, "MuT†", None, _QUOTED),
                (None, "MISA†", None, _QUOTED), (None, "Self-MM†", None, _QUOTED),
                (None, "MuT", "mult", "Reproduced"), (None, "Self-MM", "self_mm", "Reproduced"),
                (None, "MMIM", "mmim", "Reproduced"), (None, "TFR-Net", "tfr_net", "Reproduced"),
                (None, "EMT", "emt_dlfr@emt", "Reproduced")]),
))
_RATE_NOTE = ("Cells are AUILCs: the trapezoid area under each metric's curve over the missing-rate grid, "
              "including rate 0.0 and unnormalised (as the paper's numbers are, although its captions start at 0.1).")
_add(Template(
    name="emt-table6", paper="emt-dlfr", table="6", protocol="missing-rate",
    title="Incomplete modality setting on CMU-MOSI and CMU-MOSEI, AUILC (EMT-DLFR Table 6)",
    datasets=("mosi", "mosei"),
    columns=(_std_cols("mosi", _EMT_METRICS, pair=True, value="auilc")
             + _std_cols("mosei", _EMT_METRICS, pair=True, value="auilc")),
    rows=_rows([(None, "TFN◇", None, "From [16]"), (None, "MuT◇", None, "From [16]"), (None, "MISA◇", None, "From [16]"),
                (None, "TFR-Net◇", None, "From [16]"),
                (None, "TFN", "tfn", "Reproduced"), (None, "LMF", "lmf", "Reproduced"), (None, "MuT", "mult", "Reproduced"),
                (None, "MISA", "misa", "Reproduced"), (None, "Self-MM", "self_mm", "Reproduced"),
                (None, "MMIM", "mmim", "Reproduced"), (None, "TFR-Net", "tfr_net", "Reproduced"),
                (None, "EMT-DLFR", "emt_dlfr", "Reproduced")]),
    notes=(_RATE_NOTE,), metric_note=_EMT_NOTE,
))
_add(Template(
    name="emt-table7", paper="emt-dlfr", table="7", protocol="missing-rate",
    title="Incomplete modality setting on CH-SIMS, AUILC (EMT-DLFR Table 7)", datasets=("sims",),
    columns=_std_cols("sims", _SIMS_METRICS, value="auilc", group=False),
    rows=_rows([(None, "TFN◇", None, "From [16]"), (None, "MuT◇", None, "From [16]"), (None, "MISA◇", None, "From [16]"),
                (None, "TFR-Net◇", None, "From [16]"),
                (None, "TFN", "tfn", "Reproduced"), (None, "LMF", "lmf", "Reproduced"), (None, "MuT", "mult", "Reproduced"),
                (None, "MISA", "misa", "Reproduced"), (None, "Self-MM", "self_mm", "Reproduced"),
                (None, "MMIM", "mmim", "Reproduced"), (None, "TFR-Net", "tfr_net", "Reproduced"),
                (None, "EMT-DLFR", "emt_dlfr", "Reproduced")]),
    notes=(_RATE_NOTE,),
))
_add(Template(
    name="emt-table9", paper="emt-dlfr", table="9", protocol="missing-rate",
    title="Hierarchical parameter sharing in EMT on CMU-MOSI, AUILC (EMT-DLFR Table 9)", datasets=("mosi",),
    columns=(TemplateColumn("params", "#Params (M)", (("mosi", "params"),), scale="raw", digits=1, direction="min",
                            value="params"),)
    + _std_cols("mosi", ("mae", "corr"), value="auilc", group=False),
    rows=_rows([("none shared", "MPU ×, modality ×, layer ×", "emt_dlfr@share-none"),
                ("MPU", "MPU ✓, modality ×, layer ×", "emt_dlfr@share-mpu"),
                ("modality", "MPU ×, modality ✓, layer ×", "emt_dlfr@share-modality"),
                ("layer", "MPU ×, modality ×, layer ✓", "emt_dlfr@share-layer"),
                ("MPU + modality", "MPU ✓, modality ✓, layer ×", "emt_dlfr@share-mpu-modality"),
                ("MPU + layer", "MPU ✓, modality ×, layer ✓", "emt_dlfr@share-mpu-layer"),
                ("modality + layer", "MPU ×, modality ✓, layer ✓", "emt_dlfr@share-modality-layer"),
                ("all shared", "MPU ✓, modality ✓, layer ✓", "emt_dlfr@share-all")]),
    notes=(_RATE_NOTE, "#Params: the inference-time networks only, as the paper counts them (text encoder included, "
                       "networks used only in training left out; MSAModel.inference_parameter_count, recorded in "
                       "env.json as inference_params)."),
))

# -- missing-random (LNLN's robustness protocol): the mean over test rates --------------------------
_add(Template(
    name="lnln-mean-over-rates", paper="lnln", table="mean-over-rates", protocol="missing-random",
    title="Robustness to random missingness: each metric's mean over missing rates 0.0..0.9 (LNLN's protocol)",
    datasets=("mosi", "mosei"), rates=tuple(round(0.1 * i, 1) for i in range(10)),
    columns=(_std_cols("mosi", _EMT_METRICS, pair=True, value="mean-over-rates")
             + _std_cols("mosei", _EMT_METRICS, pair=True, value="mean-over-rates")),
    rows=_rows([(None, "TFN", "tfn"), (None, "LF-DNN", "lf_dnn"), (None, "MulT", "mult"), (None, "Self-MM", "self_mm"),
                (None, "MMIM", "mmim"), (None, "TFR-Net", "tfr_net"), (None, "EMT-DLFR", "emt_dlfr")]),
    notes=("One model per seed, trained with a random missing rate per sample and modality (redrawn every epoch), "
           "selected on valid at rate 0.5, its checkpoint tested at every rate; a cell is the mean over the rates "
           "per seed, then mean ± std over seeds (LNLN, Haoyu-ha/LNLN core/dataset.py, robust_evaluation.py).",
           "A layout, not a reproduction: LNLN's paper is not among the project's papers, so no published numbers "
           "are shown."),
    metric_note=_EMT_NOTE,
))

# -- MICA -------------------------------------------------------------------------------------------
# MICA Table 4 prints Happy, Sad, Angry, Neutral; each column reads its emotion by name, so the
# label-column order (IEMOCAP_EMOTIONS, MulT's) does not move a cell.
_MICA_EMOTIONS = ("happy", "sad", "angry", "neutral")
_MICA_NOTE = "Acc-2 and F1 are MulT's binary metrics: negative vs positive, zeros excluded (non0)."
_MICA_BASE = [(None, "EF-LSTM", "ef_lstm"), (None, "LF-LSTM", "lf_lstm")]
_MICA_PAPER = ("MICA's F1 is most likely MulT's f1_score called with its arguments swapped (predictions as the "
               "truth), so its weights follow the predicted classes; ours is the weighted F1 with the true labels.",
               "MICA's inputs are GloVe (300), COVAREP (74) and Facet (35) features (its section 4.1); compare with "
               "runs on the same features.")
_add(Template(
    name="mica-table2", paper="mica", table="2", protocol="standard", title="Comparison on CMU-MOSI (MICA Table 2)",
    datasets=("mosi",), columns=_std_cols("mosi", ("acc7", "acc2", "f1"), group=False),
    rows=_rows(_MICA_BASE + [(None, "MFM†", "mfm"), (None, "RAVEN", None), (None, "MCTN", "mctn"), (None, "MuT", "mult"),
                             (None, "MICA (ours)", "mica")]),
    notes=("† needs manually aligned sequences.",), metric_note=_MICA_NOTE, paper_notes=_MICA_PAPER,
))
_add(Template(
    name="mica-table3", paper="mica", table="3", protocol="standard", title="Comparison on CMU-MOSEI (MICA Table 3)",
    datasets=("mosei",), columns=_std_cols("mosei", ("acc7", "acc2", "f1"), group=False),
    rows=_rows(_MICA_BASE + [(None, "GMFN†", "graph_mfn"), (None, "RAVEN", None), (None, "MCTN", "mctn"), (None, "MuT", "mult"),
                             (None, "MICA (ours)", "mica")]),
    notes=("† needs manually aligned sequences.",), metric_note=_MICA_NOTE, paper_notes=_MICA_PAPER,
))
_add(Template(
    name="mica-table4", paper="mica", table="4", protocol="standard",
    title="Comparison on IEMOCAP, binary accuracy and F1 per emotion (MICA Table 4)", datasets=("iemocap",),
    columns=tuple(TemplateColumn(f"iemocap:{kind}_{emo}", "Acc" if kind == "acc" else "F1",
                                 (("iemocap", f"{kind}_{emo}"),), group=emo.capitalize(), scale="percent", digits=1)
                  for emo in _MICA_EMOTIONS for kind in ("acc", "f1")),
    rows=_rows(_MICA_BASE + [(None, "RAVEN", None), (None, "MCTN", "mctn"), (None, "MuT", "mult"),
                             (None, "MICA (ours)", "mica")]),
    notes=("F1 per emotion is the weighted F1 of that emotion's binary decision (MulT).",), paper_notes=_MICA_PAPER,
))
_add(Template(
    name="mica-table5", paper="mica", table="5", protocol="standard", title="Ablation study on CMU-MOSEI (MICA Table 5)",
    datasets=("mosei",), columns=_std_cols("mosei", ("acc7", "acc2", "f1"), group=False),
    rows=_rows([(None, "Backbone w/o align", "mica@backbone"), (None, "MMD align", "mica@mmd"),
                (None, "MMD align + PE align (full model)", "mica"),
                (None, "MMD align + PE align w/o propagation", "mica@no-propagation")]),
    notes=("The paper prints mean±std over 5 runs.",), metric_note=_MICA_NOTE, paper_notes=_MICA_PAPER,
))

# -- M3SA -------------------------------------------------------------------------------------------
_M3SA_METRICS = ("acc7", "acc2", "f1", "mae", "corr")
_M3SA_NOTE = "Acc-2 is 'positive or negative' (the paper's appendix C.2): zeros excluded (non0), F1 likewise."
_M3SA_BASE = [(None, "EF-LSTM", "ef_lstm"), (None, "LF-LSTM", "lf_lstm"), (None, "TFN", "tfn"), (None, "LMF", "lmf"),
              (None, "MFN", "mfn"), (None, "RAVEN", None), (None, "MULT", "mult")]
_add(Template(
    name="m3sa-table1", paper="m3sa", table="1", protocol="standard", title="Comparison on CMU-MOSI (M3SA Table 1)",
    datasets=("mosi",), columns=_std_cols("mosi", _M3SA_METRICS, group=False),
    rows=_rows(_M3SA_BASE + [(None, "QMF", None), (None, "MAG-BERT", "mag_bert"), (None, "M3SA (Hard)", "m3sa@hard"),
                             (None, "M3SA (Soft)", "m3sa@soft")]),
    notes=("QMF's numbers come from its paper (no code).",), metric_note=_M3SA_NOTE,
))
_add(Template(
    name="m3sa-table2", paper="m3sa", table="2", protocol="standard", title="Comparison on CMU-MOSEI (M3SA Table 2)",
    datasets=("mosei",), columns=_std_cols("mosei", _M3SA_METRICS, group=False),
    rows=_rows(_M3SA_BASE + [(None, "IMR", None), (None, "QMF", None), (None, "MAG-BERT", "mag_bert"),
                             (None, "M3SA (Hard)", "m3sa@hard"), (None, "M3SA (Soft)", "m3sa@soft")]),
    notes=("IMR cannot regress: no MAE or Corr.",), metric_note=_M3SA_NOTE,
    paper_notes=("M3SA's CMU-MOSEI split is 16,265/1,869/4,643 (train/valid/test, its appendix C.1), not MMSA's "
                 "16,326/1,871/4,659.",),
))
_add(Template(
    name="m3sa-table3", paper="m3sa", table="3", protocol="standard", title="Ablation studies on CMU-MOSI (M3SA Table 3)",
    datasets=("mosi",), columns=_std_cols("mosi", _M3SA_METRICS, group=False),
    rows=_rows([(None, "M3SA (Hard) (W/O ML)", "m3sa@hard-no-ml"), (None, "M3SA (Soft) (W/O ML)", "m3sa@soft-no-ml"),
                (None, "M3SA (Hard) (W/O MFM)", "m3sa@hard-no-mfm"), (None, "M3SA (Soft) (W/O MFM)", "m3sa@soft-no-mfm"),
                (None, "M3SA (Hard) (W/O BE)", "m3sa@hard-no-be"), (None, "M3SA (Soft) (W/O BE)", "m3sa@soft-no-be"),
                (None, "M3SA (Hard)", "m3sa@hard"), (None, "M3SA (Soft)", "m3sa@soft")]),
    notes=("ML: modulation loss; MFM: modality filter module; BE: baseline embedding.",), metric_note=_M3SA_NOTE,
))
_add(Template(
    name="m3sa-table4", paper="m3sa", table="4", protocol="standard", title="Fusion strategies on CMU-MOSI (M3SA Table 4)",
    datasets=("mosi",), columns=_std_cols("mosi", _M3SA_METRICS, group=False),
    rows=_rows([(None, "Concatenation+FC (Hard)", "m3sa@hard-concat", "Hard"), (None, "Addition (Hard)", "m3sa@hard", "Hard"),
                (None, "Tensor Fusion (Hard)", "m3sa@hard-tensor", "Hard"),
                (None, "Graph Fusion (Hard)", "m3sa@hard-graph", "Hard"),
                (None, "Concatenation+FC (Soft)", "m3sa@soft-concat", "Soft"), (None, "Addition (Soft)", "m3sa@soft", "Soft"),
                (None, "Tensor Fusion (Soft)", "m3sa@soft-tensor", "Soft"),
                (None, "Graph Fusion (Soft)", "m3sa@soft-graph", "Soft")]),
    notes=("Addition is M3SA's default fusion.",), metric_note=_M3SA_NOTE,
))

# -- MTMD -------------------------------------------------------------------------------------------
_MTMD_METRICS = ("acc7", "acc2", "f1", "mae", "corr")
_MTMD_NOTE = "Acc-2 and F1 print 'has0/non0': negative vs non-negative (zeros kept), then negative vs positive (zeros excluded)."
_add(Template(
    name="mtmd-table1", paper="mtmd", table="1", protocol="standard",
    title="Comparison on CMU-MOSI and CMU-MOSEI (MTMD Table I)", datasets=("mosi", "mosei"),
    columns=_std_cols("mosi", _MTMD_METRICS, pair=True) + _std_cols("mosei", _MTMD_METRICS, pair=True),
    rows=_rows([(None, "EF-LSTM", "ef_lstm"), (None, "LF-DNN", "lf_dnn"), (None, "TFN", "tfn"), (None, "LMF", "lmf"),
                (None, "MFN", "mfn"), (None, "Graph-MFN", "graph_mfn"), (None, "MFM", "mfm"), (None, "MulT", "mult"),
                (None, "MISA", "misa"), (None, "MAG-BERT", "mag_bert"), (None, "Self-MM", "self_mm"),
                (None, "MMIM", "mmim"), (None, "MTMD", "mtmd")]),
    metric_note=_MTMD_NOTE,
))
_add(Template(
    name="mtmd-table2", paper="mtmd", table="2", protocol="standard", title="Ablation study on CMU-MOSI (MTMD Table II)",
    datasets=("mosi",), columns=_std_cols("mosi", _MTMD_METRICS, pair=True, group=False),
    rows=_rows([("w/o L^u_reg", "w/o L^u_reg", "mtmd@no-reg", "(1) DMD"),
                ("w/o L^u_cls", "w/o L^u_cls", "mtmd@no-cls", "(1) DMD"),
                ("w/o L^u_feat", "w/o L^u_feat", "mtmd@no-feat", "(1) DMD"),
                ("w/o queue", "w/o queue", "mtmd@no-queue", "(1) DMD"),
                ("w/o MoM", "w/o MoM", "mtmd@dmd-no-mom", "(1) DMD"),
                ("w/o w_t/a/v", "w/o w_t/a/v", "mtmd@no-fusion-factors", "(2) MFD"),
                ("w/o HardAtt", "w/o HardAtt", "mtmd@no-hardatt", "(2) MFD"),
                ("w/o L^u_fusion", "w/o L^u_fusion", "mtmd@no-fusion-distill", "(2) MFD"),
                ("w/o MoM", "w/o MoM", "mtmd@mfd-no-mom", "(2) MFD"),
                ("w/o t subtask", "w/o t subtask", "mtmd@no-t-subtask", "(2) MFD"),
                ("w/o a subtask", "w/o a subtask", "mtmd@no-a-subtask", "(2) MFD"),
                ("w/o v subtask", "w/o v subtask", "mtmd@no-v-subtask", "(2) MFD"),
                ("No Distill", "No Distill", "mtmd@no-distill", "(2) MFD"),
                ("MTMD", "MTMD", "mtmd", "Full model")]),
    metric_note=_MTMD_NOTE,
))
_add(Template(
    name="mtmd-table3", paper="mtmd", table="3", protocol="standard",
    title="Negative sampling of the contrastive distillation on CMU-MOSI (MTMD Table III)", datasets=("mosi",),
    columns=_std_cols("mosi", _MTMD_METRICS, pair=True, group=False),
    rows=_rows([("i ≠ j", "i ≠ j (instances)", "mtmd@instance-negatives"), ("cls_i ≠ cls_j", "cls_i ≠ cls_j (classes)", "mtmd")]),
    notes=("Only the Acc-2 and Corr cells of the paper's Table III are legible in its text; the others show '-'.",),
    metric_note=_MTMD_NOTE,
))


# -- planning the runs a template needs ------------------------------------------------------------
def template_requests(name: str, *, real: bool = False, datasets: Sequence[str] = (), seeds=None,
                      selection: str | None = None, user_set: dict | None = None, data_root: str | None = None,
                      tiny: bool = False, rates=None, registered: Sequence[str] | None = None,
                      echo: Callable[[str], None] = print) -> list:
    """The `Request`s that fill template `name`: one per (setting, modalities) group of the
    rows whose models are registered; the others are skipped with a message through `echo`.

    Synthetic by default (the template's synthetic stand-ins); `real=True` or real `datasets` plan on
    the real datasets. `registered` (model names) defaults to the model registry.
    """
    from msabench.core.config import parse_model_spec
    from msabench.data.names import all_synthetic
    from msabench.plan.request import Request

    template = TEMPLATES.get(name)
    variants: dict[str, set[str]] | None = None
    if registered is None:
        import msabench.models  # noqa: F401  (registers the plugins)
        from msabench.api.model import MODELS

        registered = MODELS.names()
        variants = {n: set(getattr(cls, "VARIANTS", {}) or {}) for n, cls in MODELS.items()}
    registered = set(registered)
    aligned_models: set[str] = set()
    if variants is not None:
        aligned_models = {n for n, cls in MODELS.items() if getattr(cls, "NEEDS_ALIGNED", False)}
    runnable: list[tuple[str, tuple[str, ...] | None]] = []
    for row in template.rows:
        if row.model is None:
            continue
        spec = parse_model_spec(row.model)
        if spec.name not in registered:
            echo(f"{name}: skipping {row.label!r}: model {spec.name!r} is not registered yet (published only)")
            continue
        if variants is not None and spec.variant and spec.variant not in variants.get(spec.name, set()):
            echo(f"{name}: skipping {row.label!r}: {spec.name} has no variant {spec.variant!r} yet (published only)")
            continue
        model = row.model
        if spec.name in aligned_models and not any(k in spec.overrides for k in ("data.aligned", "data.source")):
            # a row whose model needs word-aligned input reads the aligned files (synthetic: data.aligned)
            on_real = real or (datasets and not all_synthetic(datasets))
            aligned = {"data.source": "aligned"} if on_real else {"data.aligned": True}
            model = str(type(spec)(spec.name, spec.variant, {**spec.overrides, **aligned}))
        runnable.append((model, row.modalities))
    if not runnable:
        raise UserError(
            f"no row of table {name!r} has a registered model yet, so there is nothing to run for it; its rows "
            f"show the paper's numbers as 'published only'. Run the protocol's quick list instead: "
            f"msabench run --protocol {template.protocol}")
    if datasets:
        data = tuple(datasets)
    elif real:
        data = template.datasets
    else:
        data = () if template.is_dg else template.synthetic_datasets()
    settings: Sequence[str | None] = [s.name for s in template.settings] if template.is_dg else [None]
    by_modalities: dict[tuple[str, ...] | None, list[str]] = {}
    for model, modalities in runnable:
        by_modalities.setdefault(modalities, [])
        if model not in by_modalities[modalities]:
            by_modalities[modalities].append(model)
    requests = []
    for setting in settings:
        for modalities, models in by_modalities.items():
            requests.append(Request(
                protocol=template.protocol, models=tuple(models), datasets=data, setting=setting,
                seeds=tuple(seeds) if seeds else None, modalities=modalities,
                rates=tuple(rates) if rates else template.rates, selection=selection or template.selection,
                user_set=dict(user_set or {}), data_root=data_root, tiny=tiny,
            ))
    return requests
