"""Golden files: every paper template in every format (markdown, LaTeX, CSV, JSON), plus real-data
variants (with the "Δ" rows) and the generic tables of the standard, DG and missing-rate protocols.

The tables are built from hand-made RunViews (`fabricate`: deterministic records,
no store, no training), so a golden file changes only when the report layer's output does.

Regenerate (after a deliberate change to the report's output; say why in the commit):

    MSABENCH_REGEN_GOLDEN=1 /work/venv/bin/pytest tests/test_report_golden.py

then review `git diff tests/golden/`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fabricate import fabricate_views

from msabench.protocols.templates import TEMPLATES
from msabench.report.aggregate import generic_tables
from msabench.report.paper import build_template_table
from msabench.report.render import RENDERERS

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("MSABENCH_REGEN_GOLDEN") == "1"
EXTENSIONS = {"markdown": "md", "latex": "tex", "csv": "csv", "json": "json"}
EXTRA_MODEL = "linear_probe"  # a run in the store that is not a row of any paper table


def golden_models(template) -> list[str]:
    """The first two runnable rows of the template, plus a store-only model."""
    models = [r.model for r in template.rows if r.model][:2]
    return models + [EXTRA_MODEL]


def template_table(name: str, real: bool = False):
    template = TEMPLATES.get(name)
    models = golden_models(template)
    views = fabricate_views(template, models, real=real)
    return build_template_table(template, views, compare_paper=True, reference=models[0])


def _family(name: str) -> str:
    from msabench.data.names import base_name

    return base_name(name)


def generic(kind: str):
    template = TEMPLATES.get({"standard": "mtmd-table1", "dg": "s2lif-table2", "rate": "emt-table6"}[kind])
    views = fabricate_views(template, ["tfn", "lf_dnn", EXTRA_MODEL])
    return generic_tables(views, None, reference="tfn")


CASES = {f"{name}": (lambda n=name: [template_table(n)]) for name in TEMPLATES.names()}
CASES.update({
    "s2lif-table2.real": lambda: [template_table("s2lif-table2", real=True)],
    "emt-table4.real": lambda: [template_table("emt-table4", real=True)],
    "generic-standard": lambda: generic("standard"),
    "generic-dg": lambda: generic("dg"),
    "generic-missing-rate": lambda: generic("rate"),
})


def check_golden(path: Path, text: str) -> None:
    if REGEN or not path.exists():
        if not REGEN:
            pytest.fail(f"{path} is missing: regenerate with MSABENCH_REGEN_GOLDEN=1 pytest {__file__}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    expected = path.read_text()
    assert text == expected, (f"{path.name} differs from the golden file; if the change is intended, "
                              f"regenerate: MSABENCH_REGEN_GOLDEN=1 pytest {Path(__file__).name}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    tables = CASES[case]()
    for fmt, ext in EXTENSIONS.items():
        check_golden(GOLDEN / f"{case}.{ext}", RENDERERS[fmt](tables))


def test_every_template_has_golden_files():
    for name in TEMPLATES.names():
        for ext in EXTENSIONS.values():
            assert (GOLDEN / f"{name}.{ext}").is_file(), f"no golden {name}.{ext}"
