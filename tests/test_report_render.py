"""Renderers and report semantics: ranks by each metric's direction (per part of compound cells,
among our rows only), significance marks, "published only" rows, --compare-paper (differences only
on real data), CSV/JSON round trips, the LaTeX output compiling with pdflatex, and `msabench report`
over a store (a fabricated one: no training)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fabricate import fabricate_views, write_store

from msabench.protocols.templates import TEMPLATES
from msabench.report.paper import build_template_table
from msabench.report.render import latex_document, tex_escape, to_csv, to_json, to_latex, to_markdown
from msabench.report.table import Cell, Column, Row, Table

GOLDEN = Path(__file__).parent / "golden"
CLI = [sys.executable, "-c", "import sys; from msabench.cli import main; sys.exit(main())"]


def small_table() -> Table:
    cols = [Column("mae", "MAE", metric="mae", direction="min", scale="raw", digits=3),
            Column("acc", "Acc-2", metric="acc2", scale="percent", digits=1, parts=["has0", "non0"])]
    rows = [
        Row("a", "A", cells={"mae": Cell(0.70, 0.01, 3),
                              "acc": Cell(parts=[Cell(0.80, None, 3), Cell(0.85, None, 3)])}),
        Row("b", "B", cells={"mae": Cell(0.71, 0.02, 3),
                              "acc": Cell(parts=[Cell(0.82, None, 3), Cell(0.84, None, 3)])}),
        Row("c", "C", cells={"mae": Cell(0.90, 0.02, 3),
                              "acc": Cell(parts=[Cell(0.81, None, 3), Cell(0.849, None, 3)])}),
        Row("p", "P", kind="published", published_only=True,
            cells={"mae": Cell(0.50), "acc": Cell(parts=[Cell(0.99), Cell(0.99)])}),
    ]
    return Table("t", "T", cols, rows, caption="cap")


def test_ranks_follow_direction_per_part_among_our_rows():
    t = small_table()
    t.rank_cells()
    ranks = {r.key: (r.cells["mae"].rank, [p.rank for p in r.cells["acc"].parts]) for r in t.rows}
    assert ranks["a"] == (1, [0, 1])  # lowest MAE is best; 85.0 beats C's 84.9 as shown
    assert ranks["b"] == (2, [1, 0])
    assert ranks["c"] == (0, [2, 2])
    assert ranks["p"] == (0, [0, 0])  # published rows are never ranked against ours


def test_ties_on_the_shown_value_share_a_rank():
    cols = [Column("x", "X", scale="percent", digits=1)]
    rows = [Row("a", "A", cells={"x": Cell(0.8501)}), Row("b", "B", cells={"x": Cell(0.8504)}),
            Row("c", "C", cells={"x": Cell(0.80)})]
    t = Table("t", "T", cols, rows)
    t.rank_cells()
    assert [r.cells["x"].rank for r in rows] == [1, 1, 2]


def test_markdown_bold_underline_marks_and_published_only():
    t = small_table()
    t.rank_cells()
    t.rows[1].cells["mae"].mark = "*"
    md = to_markdown(t)
    assert "| A | - | **0.700 ± 0.010** | 80.0/**85.0** |" in md
    assert "<u>0.710 ± 0.020</u>*" in md
    assert "P (published only)" in md


def test_latex_escapes_and_structure():
    assert tex_escape("S2LIF T→V & 50% #1_a") == r"S2LIF T$\rightarrow$V \& 50\% \#1\_a"
    t = small_table()
    t.rank_cells()
    tex = to_latex(t)
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\textbf{0.700{\scriptsize$\pm$0.010}}" in tex and r"\underline{" in tex


def test_csv_is_tidy_and_parses():
    t = small_table()
    t.rank_cells()
    rows = list(csv.DictReader(io.StringIO(to_csv([t]))))
    assert len(rows) == 4 * 3  # 4 rows x (1 + 2 parts)
    first = rows[0]
    assert (first["row"], first["column"], first["mean"], first["rank"]) == ("a", "mae", "0.7", "1")
    acc = [r for r in rows if r["row"] == "a" and r["column"] == "acc"]
    assert [r["part"] for r in acc] == ["0", "1"] and acc[1]["mean"] == "85.0"  # percent as shown


def test_json_round_trips_and_drops_defaults():
    data = json.loads(to_json([small_table()]))
    cell = data[0]["rows"][0]["cells"]["mae"]
    assert cell == {"mean": 0.7, "std": 0.01, "n": 3}


def test_compare_paper_differences_only_on_real_data():
    template = TEMPLATES.get("mtmd-table1")
    synthetic = build_template_table(template, fabricate_views(template, ["tfn"]), compare_paper=True)
    real = build_template_table(template, fabricate_views(template, ["tfn"], real=True), compare_paper=True)
    kinds = lambda t: [r.kind for r in t.rows if r.key.startswith("TFN")]  # noqa: E731
    assert kinds(synthetic) == ["ours", "paper"]
    assert kinds(real) == ["ours", "paper", "delta"]
    ours, paper, delta = [r for r in real.rows if r.key.startswith("TFN")]
    assert delta.cells["mosi:mae"].mean == pytest.approx(ours.cells["mosi:mae"].mean - 0.925)
    assert paper.cells["mosi:acc7"].mean == pytest.approx(0.337)  # percent as data, fractions inside
    assert "synthetic data" in synthetic.caption and "no differences" in synthetic.caption
    assert "real data" in real.caption and "Δ" in real.caption
    assert [r.kind for r in synthetic.rows if r.key.startswith("MTMD")] == ["published"]


def test_reference_marks_are_paired_and_holm_adjusted():
    template = TEMPLATES.get("emt-table4")
    views = fabricate_views(template, ["mult", "emt_dlfr@emt"], seeds=(1, 2, 3, 4, 5))
    table = build_template_table(template, views, reference="mult")
    tests = table.meta["reference"]["tests"]
    assert len(tests) == 16 and all(t["n_seeds"] == 5 for t in tests)
    assert all(t["p_holm"] >= t["p"] for t in tests)
    marked = sum(1 for r in table.rows for c in r.cells.values() for p in (c.parts or [c]) if p.mark == "*")
    assert marked == sum(1 for t in tests if t["p_holm"] < 0.05)
    assert "Holm" in table.caption and "MuT" in table.caption


def test_unknown_reference_is_a_user_error():
    from msabench.core.errors import UserError

    template = TEMPLATES.get("emt-table4")
    with pytest.raises(UserError, match="reference"):
        build_template_table(template, fabricate_views(template, ["mult"]), reference="nope")


def test_selection_rule_is_applied_post_hoc_and_captioned():
    template = TEMPLATES.get("s2lif-table2")
    views = fabricate_views(template, ["mult@frozen"])
    default = build_template_table(template, views)
    oracle = build_template_table(template, views, selection="oracle")
    last = build_template_table(template, views, selection="last")
    assert "'train-domain'" in default.caption and "oracle: selected on the target valid split" in oracle.caption
    get = lambda t: t.rows[0].cells["A:tgt:mosi"].mean  # noqa: E731
    assert get(last) != get(default) or get(oracle) != get(default)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_golden_files_compile(tmp_path):
    body = "".join(p.read_text() + "\n\\clearpage\n" for p in sorted(GOLDEN.glob("*.tex")))
    (tmp_path / "tables.tex").write_text(latex_document(body))
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 10_000


@pytest.fixture(scope="module")
def dg_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "runs-store"
    template = TEMPLATES.get("s2lif-table2")
    write_store(fabricate_views(template, ["mult@frozen", "linear_probe"]), str(out))
    return out


def test_report_cli_latex_compare_paper(dg_store, tmp_path):
    target = tmp_path / "t2.tex"
    result = subprocess.run(CLI + ["report", "--out", str(dg_store), "--format", "latex", "--table", "s2lif-table2",
                                   "--compare-paper", "--reference", "linear_probe", "-o", str(target)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    tex = target.read_text()
    assert r"\begin{tabular}" in tex and "published only" in tex and "(paper)" in tex and "Holm" in tex


def test_report_cli_generic_formats(dg_store, capsys):
    from msabench.cli import main

    for fmt in ("markdown", "latex", "csv", "json"):
        assert main(["report", "--out", str(dg_store), "--format", fmt]) == 0
        assert "linear" in capsys.readouterr().out


def test_report_cli_user_errors_exit_2(dg_store, capsys):
    from msabench.cli import main

    cases = [["report", "--out", str(dg_store), "--table", "s2lif-tabel2"],
             ["report", "--out", str(dg_store), "--compare-paper"],
             ["report", "--out", str(dg_store), "--format", "html"],
             ["report", "--out", str(dg_store) + "-missing"],
             ["report", "--out", str(dg_store), "--reference", "nope"]]
    for args in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "Traceback" not in err and "msabench: error:" in err, (args, err)
