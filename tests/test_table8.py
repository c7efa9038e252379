"""Table 8's frame (cft_lab.report.table8) from hand-made cells and graded rows: the paper's row order and labels,
the compute-matched maj@k and oracle pass@k rows, the paired test against direct inference (checked against a hand
computation), the extra columns in every output format, and the paper's numbers beside ours."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cft_lab.eval import metrics
from cft_lab.report import BenchScore, CellResult, write_table
from cft_lab.report.table8 import DELTA, P_VALUE, ROUNDS, TOKENS, paper_frame, row_label, table8_frame

COLS = ["MATH", "Minerva-Math"]
NAMES = {"MATH": "math", "Minerva-Math": "minerva_math"}
QWEN = "Qwen2.5-Math-7B"


def _cell(tmp_path, key, mode, t, outcomes, preds=None, *, tokens=100.0, rounds=1.0, n=1) -> CellResult:
    """An ok cell whose graded rows hold ``outcomes[column][item] = [correct per sample]`` (and answers)."""
    grade = tmp_path / key
    grade.mkdir()
    scores, raw = {}, {}
    for label, items in outcomes.items():
        rows = []
        for i, flags in enumerate(items):
            answers = (preds or {}).get(label, [[str(int(f)) for f in flags] for flags in items])[i]
            rows.append(
                {
                    "id": f"{label}-{i}",
                    "samples": [{"correct": {"paper": f}, "pred": {"paper": a}} for f, a in zip(flags, answers)],
                }
            )
        (grade / f"{NAMES[label]}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        first = [flags[0] for flags in items]
        s = metrics.score_items(first, n_boot=200)
        scores[label] = BenchScore(s["correct"], s["n"], s["boot_low"], s["boot_high"])
        raw[label] = {"mode": "paper", "inference": {"tokens_per_sample": tokens, "mean_rounds": rounds}}
    decoding = {"mode": mode, "temperature": t, "n": n, "candidates": 8, "benchmarks": NAMES}
    return CellResult(QWEN, "cft", None, "ok", None, scores, key, decoding=decoding, grade_dir=grade, raw_scores=raw)


@pytest.fixture
def cells(tmp_path):
    # 10 items per column. Direct T=0.3 with 4 samples: sample 0 right on items 0-4; two-stage right on 0-7.
    samples = [[True, False, False, True]] * 5 + [[False, True, True, False]] * 3 + [[False] * 4] * 2
    answers = [["1", "2", "2", "1"]] * 5 + [["9", "7", "7", "9"]] * 3 + [["3", "4", "5", "6"]] * 2
    direct_t3 = _cell(
        tmp_path, "d3", "direct", 0.3, {c: samples for c in COLS}, {c: answers for c in COLS}, tokens=100.0, n=4
    )
    staged = [[True]] * 8 + [[False]] * 2
    two_stage_t3 = _cell(tmp_path, "s3", "two_stage", 0.3, {c: staged for c in COLS}, tokens=290.0, rounds=1.4)
    direct_t0 = _cell(tmp_path, "d0", "direct", 0.0, {c: [[True]] * 6 + [[False]] * 4 for c in COLS})
    single = _cell(tmp_path, "p3", "single_pass", 0.3, {c: [[True]] * 3 + [[False]] * 7 for c in COLS}, tokens=150)
    return [two_stage_t3, single, direct_t3, direct_t0]  # out of order on purpose


def test_rows_follow_the_papers_order_then_the_derived_rows(cells):
    frame = table8_frame(cells, COLS)
    assert list(frame.index.get_level_values(1)) == [
        row_label("direct", 0.0),
        row_label("direct", 0.3),
        row_label("single_pass", 0.3),
        row_label("two_stage", 0.3),
        "maj@3 (compute-matched), T=0.3",
        "oracle pass@3 (compute-matched), T=0.3",
    ]
    assert row_label("two_stage", 0.3) == "Two-stage self-critique, T=0.3"
    assert list(frame.columns) == [*COLS, TOKENS, ROUNDS, DELTA, P_VALUE]


def test_compute_matched_rows_and_the_paired_test_by_hand(cells):
    frame = table8_frame(cells, COLS).loc[QWEN]
    # k = round(290 / 100) = 3. maj@3 of [T,F,F]/[1,2,2] -> "2" wrong; [F,T,T]/[9,7,7] -> "7" right; [3,4,5] -> "3"
    # (first of a three-way tie) wrong: items 5-7 right, 3/10. oracle pass@3: items 0-7 have a right sample: 8/10.
    maj, oracle = "maj@3 (compute-matched), T=0.3", "oracle pass@3 (compute-matched), T=0.3"
    assert frame.loc[maj, "MATH"] == 30.0 and frame.loc[oracle, "MATH"] == 80.0
    assert frame.loc[maj, TOKENS] == 300.0 and frame.loc[maj, ROUNDS] == 3.0
    # two-stage vs direct (first samples), both columns pooled: direct right on 0-4, two-stage on 0-7 -> b01 = 3 x 2
    staged = row_label("two_stage", 0.3)
    assert frame.loc[staged, DELTA] == pytest.approx(30.0)
    assert frame.loc[staged, P_VALUE] == pytest.approx(metrics.mcnemar_exact_p(6, 0))
    assert frame.loc[staged, TOKENS] == 290.0 and frame.loc[staged, ROUNDS] == 1.4
    # single pass (right on 0-2) vs direct (0-4): b10 = 2 per column
    single = row_label("single_pass", 0.3)
    assert frame.loc[single, DELTA] == pytest.approx(-20.0)
    assert frame.loc[single, P_VALUE] == pytest.approx(metrics.mcnemar_exact_p(0, 4))
    assert np.isnan(frame.loc[row_label("direct", 0.0), DELTA])  # no row is tested against itself
    assert frame.loc[row_label("direct", 0.3), "MATH"] == 50.0  # the direct row is the first sample


def test_extra_columns_render_as_numbers_and_long_csv_rows(cells, tmp_path):
    frame = table8_frame(cells, COLS)
    paths = write_table(frame, tmp_path / "out", "t8", "Table 8")
    md = paths["md"].read_text()
    line = next(x for x in md.splitlines() if "Two-stage self-critique, T=0.3" in x)
    assert "| 290 | 1.40 | +30.0 | 0.031 |" in line and "80.0" in line
    assert "Tokens/item = generated tokens per item" in md and "critique_train_v1" in md  # legend and prompt note
    csv = pd.read_csv(paths["csv"])
    tok = csv[(csv.metric == TOKENS) & (csv.method == "Two-stage self-critique, T=0.3")]
    assert len(tok) == 1 and tok.value.iloc[0] == 290.0 and tok.accuracy.isna().all()
    acc = csv[csv.metric == "accuracy"]
    assert (acc.value == acc.accuracy).all() and set(acc.benchmark) == set(COLS)


def test_paper_numbers_align_beside_ours(cells, tmp_path):
    paper = paper_frame("v3_v4")
    assert paper.loc[(QWEN, row_label("direct", 0.0)), "MATH"] == 80.2
    assert paper.loc[(QWEN, row_label("two_stage", 0.1)), "Minerva-Math"] == 38.2
    assert len(paper) == 10 and paper_frame("v1").loc[(QWEN, row_label("direct", 0.0)), "MATH"] == 79.4
    md = write_table(table8_frame(cells, COLS), tmp_path, "t8", "Table 8", paper=paper)["md"].read_text()
    assert "(paper 80.2)" in md and "(paper 75.8)" in md


def test_a_failed_cell_is_a_hole_with_its_reason(cells):
    failed = CellResult(
        QWEN,
        "cft",
        None,
        "failed",
        "RuntimeError: out of memory",
        {},
        "x9",
        decoding={"mode": "self_verify", "temperature": 0.6, "n": 1, "candidates": 8, "benchmarks": NAMES},
    )
    frame = table8_frame([*cells, failed], COLS)
    label = (QWEN, "Self-verified best-of-8, T=0.6")
    assert frame.loc[label, COLS].isna().all()
    assert frame.attrs["notes"][label] == "failed: RuntimeError: out of memory"
