"""Tests of cft_lab.report: frame values (AVG, Δ, holes, CIs), file outputs, and the paper's arithmetic.

Paper arithmetic (paper_tables.json, checked by test_paper_* below): every printed AVG equals the plain mean
of its benchmark cells and every Δ equals CFT − best SFT within rounding (|diff| <= 0.05; the x.x5 means
are rounded half up, e.g. Table 7 SFT-verified 40.35 -> 40.4), in v1 and v3/v4, with ONE exception:
  * v3/v4 Table 7, GPT-4o-mini AVG: printed 52.0, mean of its six cells 52.07 (-> 52.1).
Table 2's Δ AVG is CFT AVG − best SFT AVG from *unrounded* means: v1 Qwen2.5-Math-7B prints 5.7 = 56.03 −
50.38 (= 5.65), whereas the difference of the printed AVGs would be 56.0 − 50.4 = 5.6.
"""

from __future__ import annotations

import math
import re

import matplotlib.image
import pandas as pd
import pytest

from cft_lab import report
from cft_lab.report import (
    AVG,
    CSV_COLUMNS,
    DELTA_LABEL,
    METHOD_LABELS,
    BenchScore,
    CellResult,
    align_paper,
    ci_bounds,
    paper_frame,
    recompute,
    table2_frame,
    table7_frame,
    write_table,
)

BENCH = ["MATH", "GSM8K"]
TINY = "tiny-math (≈Qwen2.5-Math-7B)"
QWEN = "Qwen2.5-7B"
STRONG = "testbed-strong (≈GPT-4o-1120)"
WEAK = "testbed-weak (≈GPT-4o-mini)"
L = METHOD_LABELS  # short alias: L["cft"] == "WebInstruct-CFT"


def ok(model: str, method: str, key: str, teacher: str | None = None, **pct: float) -> CellResult:
    """An ok cell over n=100 problems; CI = accuracy ± 5 (asymmetric ones are built by hand)."""
    scores = {b: BenchScore(int(v), 100, v - 5.0, v + 5.0) for b, v in pct.items()}
    return CellResult(model, method, teacher, "ok", None, scores, key)


@pytest.fixture
def cells() -> list[CellResult]:
    """tiny-math: complete (Δ computable); Qwen2.5-7B: one failed, one missing, one absent, one partial."""
    return [
        ok(TINY, "base", "a0", MATH=40, GSM8K=50),
        ok(TINY, "sft", "a1", MATH=45, GSM8K=60),
        ok(TINY, "sft_verified", "a2", MATH=50, GSM8K=55),
        ok(TINY, "sft_teacher", "a3", teacher=STRONG, MATH=48, GSM8K=70),
        ok(TINY, "cft", "a4", teacher=STRONG, MATH=60, GSM8K=72),
        CellResult(
            QWEN,
            "base",
            None,
            "ok",
            None,
            {"MATH": BenchScore(60, 200, 23.9, 36.6), "GSM8K": BenchScore(80, 200, 33.5, 46.9)},
            "b0",
        ),
        CellResult(QWEN, "sft", None, "failed", "CUDA out of\n  memory (100% used)", {}, "b1"),
        ok(QWEN, "sft_verified", "b2", MATH=35),  # GSM8K never scored
        CellResult(QWEN, "cft", STRONG, "missing", None, {}, "b4"),  # and no sft_teacher cell at all
    ]


# ------------------------------------------------------------------------------------------ Table 2


def test_table2_layout_first_seen_model_order(cells):
    frame = table2_frame(cells, BENCH)
    methods = [L[m] for m in report.METHOD_ORDER] + [DELTA_LABEL]
    assert list(frame.index) == [(TINY, m) for m in methods] + [(QWEN, m) for m in methods]
    assert list(frame.columns) == ["MATH", "GSM8K", AVG]
    assert frame.index.names == ["model", "method"]


def test_table2_values_avg_and_delta(cells):
    frame = table2_frame(cells, BENCH)
    tiny = frame.loc[TINY]
    assert tiny.loc[L["base"]].tolist() == [40.0, 50.0, 45.0]
    assert tiny.loc[L["sft"], AVG] == 52.5
    assert tiny.loc[L["sft_teacher"], AVG] == 59.0
    assert tiny.loc[L["cft"], AVG] == 66.0
    # Δ per column against that column's best SFT; Δ AVG from the AVGs (7), not the mean of the Δs (6)
    assert tiny.loc[DELTA_LABEL].tolist() == [10.0, 2.0, 7.0]
    assert frame.attrs["best_sft"] == {
        (TINY, "MATH"): L["sft_verified"],
        (TINY, "GSM8K"): L["sft_teacher"],
        (TINY, AVG): L["sft_teacher"],
    }
    assert frame.loc[(QWEN, L["base"]), "MATH"] == pytest.approx(30.0, abs=1e-12)


def test_table2_holes_are_nan_with_notes(cells):
    frame = table2_frame(cells, BENCH)
    notes = frame.attrs["notes"]
    assert frame.loc[(QWEN, L["sft"])].isna().all()
    assert notes[(QWEN, L["sft"])] == "failed: CUDA out of memory (100% used)"
    assert frame.loc[(QWEN, L["cft"])].isna().all() and notes[(QWEN, L["cft"])] == "not run"
    assert notes[(QWEN, L["sft_teacher"])] == "not run (no cell in the sweep)"
    assert frame.attrs["runs"][(QWEN, L["sft_teacher"])]["status"] == "missing"
    # partial cell: the scored benchmark stays, the other is a hole, AVG is NaN
    partial = frame.loc[(QWEN, L["sft_verified"])]
    assert partial["MATH"] == 35.0 and math.isnan(partial["GSM8K"]) and math.isnan(partial[AVG])
    assert notes[(QWEN, L["sft_verified"])] == "no score for GSM8K"
    assert frame.loc[(QWEN, DELTA_LABEL)].isna().all() and (QWEN, DELTA_LABEL) in notes
    assert not any(label[0] == TINY for label in notes)
    assert not any(model == QWEN for model, _ in frame.attrs["best_sft"])


def test_table2_delta_needs_cft_and_all_three_sft(cells):
    cells[-1] = ok(QWEN, "cft", "b4", teacher=STRONG, MATH=70, GSM8K=80)
    cells.append(ok(QWEN, "sft_teacher", "b3", teacher=STRONG, MATH=20, GSM8K=30))
    frame = table2_frame(cells, BENCH)
    # MATH: sft failed -> no Δ even though CFT and two SFT rows exist; GSM8K: sft_verified unscored too
    assert frame.loc[(QWEN, DELTA_LABEL)].isna().all()
    cells[6] = ok(QWEN, "sft", "b1", MATH=40, GSM8K=90)
    frame = table2_frame(cells, BENCH)
    assert frame.loc[(QWEN, DELTA_LABEL), "MATH"] == 30.0  # 70 − max(40, 35, 20)
    assert math.isnan(frame.loc[(QWEN, DELTA_LABEL), "GSM8K"])
    assert frame.attrs["best_sft"] == {**table2_frame(cells[:5], BENCH).attrs["best_sft"], (QWEN, "MATH"): L["sft"]}


@pytest.mark.parametrize("error, note", [(None, "not run"), ("not run", "not run"), ("queued", "not run: queued")])
def test_missing_cell_note(cells, error, note):
    cells[-1].error = error
    assert table2_frame(cells, BENCH).attrs["notes"][(QWEN, L["cft"])] == note


def test_table2_cis_and_counts(cells):
    frame = table2_frame(cells, BENCH)
    low, high = ci_bounds(frame)
    assert low.loc[(QWEN, L["base"]), "MATH"] == 23.9 and high.loc[(QWEN, L["base"]), "GSM8K"] == 46.9
    assert low[AVG].isna().all() and high.loc[(TINY, DELTA_LABEL)].isna().all()
    assert low.loc[(QWEN, L["sft"])].isna().all()
    assert frame.attrs["n"][((QWEN, L["base"]), "MATH")] == 200


def test_table2_teacher_ablation_needs_teacher(cells):
    cells.append(ok(TINY, "cft", "a5", teacher=WEAK, MATH=55, GSM8K=65))
    with pytest.raises(ValueError, match="pass teacher="):
        table2_frame(cells, BENCH)
    frame = table2_frame(cells, BENCH, teacher="GPT-4o-1120")  # matched through "(≈GPT-4o-1120)"
    assert frame.loc[(TINY, L["cft"]), "MATH"] == 60.0
    assert frame.attrs["runs"][(TINY, L["cft"])]["key"] == "a4"


def test_table2_rejects_unknown_method(cells):
    cells[0].method = "rl"
    with pytest.raises(ValueError, match="rl"):
        table2_frame(cells, BENCH)


def test_table2_unknown_status_is_a_noted_hole(cells, caplog):
    cells[0].status, cells[0].error = "running", None
    frame = table2_frame(cells, BENCH)
    assert frame.loc[(TINY, L["base"])].isna().all()
    assert frame.attrs["notes"][(TINY, L["base"])] == "running: no reason recorded"
    assert "unknown status 'running'" in caplog.text


# ------------------------------------------------------------------------------------------ Table 7


@pytest.fixture
def t7_cells(cells) -> list[CellResult]:
    weak = ok(TINY, "cft", "a5", teacher=WEAK, MATH=55)
    weak.scores["GSM8K"] = BenchScore(65, 100, 55.0, 72.0)  # asymmetric CI
    failed = CellResult(TINY, "cft", "testbed-mid", "failed", "loss is NaN", {}, "a6")
    return [weak, *cells, failed]


def test_table7_layout_and_values(t7_cells):
    frame = table7_frame(t7_cells, BENCH, model=TINY)
    assert list(frame.columns) == ["SFT-verified", WEAK, STRONG, "testbed-mid"]
    assert list(frame.index) == ["MATH", "GSM8K", AVG]
    assert frame["SFT-verified"].tolist() == [50.0, 55.0, 52.5]
    assert frame[WEAK].tolist() == [55.0, 65.0, 60.0]
    assert frame[STRONG].tolist() == [60.0, 72.0, 66.0]
    assert frame["testbed-mid"].isna().all()
    assert frame.attrs["notes"] == {"testbed-mid": "failed: loss is NaN"}
    assert frame.attrs["ci"][("GSM8K", WEAK)] == (55.0, 72.0)
    assert frame.attrs["model"] == TINY


def test_table7_model_must_be_unambiguous(t7_cells):
    with pytest.raises(ValueError, match="pass model="):
        table7_frame(t7_cells, BENCH)  # Qwen2.5-7B also has sft_verified/cft cells
    frame = table7_frame([c for c in t7_cells if c.model == QWEN], BENCH)
    assert list(frame.columns) == ["SFT-verified", STRONG] and frame[STRONG].isna().all()


# ---------------------------------------------------------------------------------- paper numbers


def test_paper_frame_layouts():
    t2, t2_new = paper_frame("table2"), paper_frame("table2", "v3_v4")
    assert t2.shape == (18, 7) and t2.index.names == ["model", "method"]
    assert t2.loc[("Qwen2.5-Math-7B", L["cft"]), "MATH"] == 79.4
    assert t2_new.loc[("Qwen2.5-Math-7B", L["cft"]), "MATH"] == 80.2
    assert t2.loc[("DeepSeek-Math-7B", DELTA_LABEL), "AVG"] == 3.5
    t7 = paper_frame("table7", "v3_v4")
    assert list(t7.columns) == ["SFT-verified", "GPT-4o-mini", "GPT-4o-1120"]
    assert t7.loc[AVG, "GPT-4o-mini"] == 52.0
    with pytest.raises(ValueError):
        paper_frame("table2", "v2")


@pytest.mark.parametrize("version", ["v1", "v3_v4"])
def test_paper_table7_columns_equal_table2_rows(version):
    t2, t7 = paper_frame("table2", version), paper_frame("table7", version)
    qm = t2.loc["Qwen2.5-Math-7B"]
    assert t7["SFT-verified"].tolist() == qm.loc[L["sft_verified"]].tolist()
    assert t7["GPT-4o-1120"].tolist() == qm.loc[L["cft"]].tolist()


def _off(printed: pd.Series, recomputed: pd.Series, tol: float) -> set:
    return {label for label in printed.index if abs(printed[label] - recomputed[label]) > tol + 1e-9}


@pytest.mark.parametrize("version", ["v1", "v3_v4"])
@pytest.mark.parametrize("model", ["DeepSeek-Math-7B", "Qwen2.5-7B", "Qwen2.5-Math-7B"])
def test_paper_table2_avg_and_delta_recompute(version, model):
    printed = paper_frame("table2", version).loc[model]
    again = recompute(paper_frame("table2", version)).loc[model]
    # rounding consistency (<= 0.05) is stricter than the brief's ±0.1; no exceptions in Table 2
    assert _off(printed[AVG], again[AVG], 0.05) == set()
    assert _off(printed.loc[DELTA_LABEL], again.loc[DELTA_LABEL], 0.05) == set()


def test_paper_table2_delta_avg_uses_unrounded_means():
    printed = paper_frame("table2")
    again = recompute(printed).loc["Qwen2.5-Math-7B"]
    assert again.loc[DELTA_LABEL, AVG] == pytest.approx(5.65, abs=1e-9)  # printed 5.7
    assert printed.loc[("Qwen2.5-Math-7B", DELTA_LABEL), AVG] == 5.7
    assert round(again.loc[L["cft"], AVG], 1) - round(again.loc[L["sft_teacher"], AVG], 1) == pytest.approx(
        5.6
    )  # what differencing the printed AVGs would give


@pytest.mark.parametrize("version, exceptions", [("v1", set()), ("v3_v4", {"GPT-4o-mini"})])
def test_paper_table7_avg_recompute(version, exceptions):
    printed = paper_frame("table7", version)
    again = recompute(printed)
    assert _off(printed.loc[AVG], again.loc[AVG], 0.05) == exceptions
    assert _off(printed.loc[AVG], again.loc[AVG], 0.1) == set()
    if exceptions:
        assert again.loc[AVG, "GPT-4o-mini"] == pytest.approx(312.4 / 6)  # 52.07 printed as 52.0


def test_align_paper_uses_standin_aliases(cells):
    frame = table2_frame(cells, BENCH)
    aligned = align_paper(frame, paper_frame("table2"))
    assert aligned.loc[(TINY, L["cft"]), "MATH"] == 79.4
    assert aligned.loc[(TINY, DELTA_LABEL), "GSM8K"] == 0.9
    assert aligned.loc[(QWEN, L["base"]), "GSM8K"] == 85.4


# ------------------------------------------------------------------------------------------- files


def _md_table_rows(md: str) -> list[list[str]]:
    rows = [line for line in md.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", r)[1:-1]] for r in rows]


def test_write_table2_files(cells, tmp_path):
    frame = table2_frame(cells, BENCH)
    paths = write_table(frame, tmp_path / "out", "table2", "SFT vs CFT", paper=paper_frame("table2"))
    assert set(paths) == {"md", "csv", "tex", "png"} and all(p.exists() for p in paths.values())

    md = paths["md"].read_text(encoding="utf-8")
    rows = _md_table_rows(md)
    assert len(rows) == 2 + 12 and {len(r) for r in rows} == {5}
    assert all(re.fullmatch(r":?-{3,}:?", c) for c in rows[1])
    assert "60.0 ± 5.0 (paper 79.4)" in md
    assert "+10.0 (paper +6.2)" in md
    assert "— (paper 30.8)" in md  # failed Qwen2.5-7B SFT, MATH
    assert "\n- †1 Qwen2.5-7B / WebInstruct-SFT (cell b1): failed: CUDA out of memory (100% used)\n" in md
    assert "\n- †4 Qwen2.5-7B / WebInstruct-CFT (cell b4): not run\n" in md
    assert "WebInstruct-SFT†1" in md


def test_write_table2_csv_roundtrip(cells, tmp_path):
    frame = table2_frame(cells, BENCH)
    paths = write_table(frame, tmp_path, "t2", "t", paper=paper_frame("table2"))
    csv = pd.read_csv(paths["csv"])
    assert list(csv.columns) == CSV_COLUMNS and len(csv) == 12 * 3
    cft = csv[(csv.model == TINY) & (csv.method == L["cft"]) & (csv.benchmark == "MATH")].iloc[0]
    assert (cft.accuracy, cft.ci_low, cft.ci_high, cft.n, cft.paper, cft.status, cft.key) == (
        60.0,
        55.0,
        65.0,
        100,
        79.4,
        "ok",
        "a4",
    )
    failed = csv[(csv.model == QWEN) & (csv.method == L["sft"])]
    assert failed.accuracy.isna().all() and set(failed.status) == {"failed"}
    assert set(failed.note) == {"failed: CUDA out of memory (100% used)"}
    assert set(csv[csv.method == DELTA_LABEL].status) == {"derived"}


def test_write_table2_tex_and_png(cells, tmp_path):
    paths = write_table(table2_frame(cells, BENCH), tmp_path, "t2", "SFT_vs_CFT 100%")
    tex = paths["tex"].read_text(encoding="utf-8")
    for token in (
        r"\begin{tabular}{llrrr}",
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\end{tabular}",
        r"SFT\_best",
        r"$\approx$",
        r"\textsuperscript{\dag1}",
        r"$\pm$",
    ):
        assert token in tex, token
    assert tex.count(r"\midrule") == 2  # under the header, and between the two models
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert not re.search(r"(?<!\\)[_%]", body)  # specials escaped outside the comment lines
    assert tex.startswith("% SFT_vs_CFT 100%\n")
    png = paths["png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert matplotlib.image.imread(paths["png"]).shape[0] > 100


def test_write_table7_with_paper(t7_cells, tmp_path):
    frame = table7_frame(t7_cells, BENCH, model=TINY)
    paths = write_table(frame, tmp_path, "t7", "Teacher", paper=paper_frame("table7", "v3_v4"))
    md = paths["md"].read_text(encoding="utf-8")
    rows = _md_table_rows(md)
    assert rows[0] == ["Benchmark", "SFT-verified", WEAK, STRONG, "testbed-mid†1"]
    assert len(rows) == 2 + 3 and {len(r) for r in rows} == {5}
    assert "65.0 [55.0, 72.0]" in md  # asymmetric CI in brackets
    assert "55.0 ± 5.0 (paper 73.9)" in md and "60.0 (paper 52.0)" in md
    assert "- †1 testbed-mid (cell a6): failed: loss is NaN" in md
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == 4 * 3 and set(csv.method) == {L["sft_verified"], L["cft"]}


def test_write_table_paper_frame_and_bad_style(tmp_path):
    paths = write_table(paper_frame("table2"), tmp_path, "paper", "Paper Table 2")
    md = paths["md"].read_text(encoding="utf-8")
    assert "| Qwen2.5-Math-7B | Base | 55.4 |" in md and "+11.1" in md and "†" not in md
    assert len(pd.read_csv(paths["csv"])) == 18 * 7
    with pytest.raises(ValueError):
        write_table(paper_frame("table2"), tmp_path, "x", "x", ci_style="sd")


# ------------------------------------------------------------------------------------------ Table 6


def test_table6_columns_by_response_source(cells):
    base = ok(TINY, "base", "a0", MATH=40, GSM8K=50)
    self_gen = ok(TINY, "cft", "s1", teacher=STRONG, MATH=58, GSM8K=66)
    self_gen.response_source = "self_generated"
    ref = ok(TINY, "cft", "a4", teacher=STRONG, MATH=60, GSM8K=72)
    ref.response_source = "reference"
    frame = report.table6_frame([base, self_gen, ref], BENCH)
    assert list(frame.columns) == ["Base", "Self-generated", "Reference"]
    assert frame["Self-generated"].tolist() == [58.0, 66.0, 62.0] and frame["Reference"].tolist() == [60.0, 72.0, 66.0]
    holes = report.table6_frame([base, ref], BENCH)
    assert holes["Self-generated"].isna().all() and holes.attrs["notes"] == {"Self-generated": "not run"}


@pytest.mark.parametrize("version, self_avg, ref_avg", [("v1", 54.5, 56.0), ("v3_v4", 55.1, 57.1)])
def test_paper_table6_avg_recompute_and_reference_is_table2_cft(version, self_avg, ref_avg):
    printed = paper_frame("table6", version)
    assert list(printed.columns) == ["Base", "Self-generated", "Reference"]
    assert (printed.loc[AVG, "Self-generated"], printed.loc[AVG, "Reference"]) == (self_avg, ref_avg)
    assert _off(printed.loc[AVG], recompute(printed).loc[AVG], 0.05) == set()
    t2 = paper_frame("table2", version).loc["Qwen2.5-Math-7B"]
    assert printed["Reference"].tolist() == t2.loc[L["cft"]].tolist()
