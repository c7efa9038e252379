"""Paired comparison of two cells' graded items (cft_lab.eval.compare): alignment by id, counts, one grader only."""

from __future__ import annotations

import json

import pytest

from cft_lab.eval.compare import main, paired
from cft_lab.pipeline.store import Store, write_json, write_jsonl


def _cell(store: Store, key: str, verdicts: dict[str, bool], mode: str = "paper") -> None:
    grade = store.path("grade", f"g{key}")
    grade.mkdir(parents=True)
    write_jsonl(grade / "math.jsonl", [{"id": i, "correct": c} for i, c in verdicts.items()])
    write_json(grade / "scores.json", {"math": {"label": "MATH", "mode": mode}})
    store.write_cell_result(key, {"status": "ok", "stages": {"grade": f"g{key}"}, "scores": {}})


def test_paired_comparison_aligns_items_by_id(tmp_path, capsys):
    store = Store(tmp_path)
    _cell(store, "sft", {"q1": True, "q2": True, "q3": False, "q4": False, "q5": True})
    _cell(store, "cft", {"q5": True, "q4": True, "q3": True, "q2": False, "q1": True, "q6": True})  # q6: B only
    r = paired(store, "sft", "cft")["math"]
    # aligned on q1..q5: A = 1,1,0,0,1 (60%), B = 1,0,1,1,1 (80%); B right where A wrong: q3, q4; the reverse: q2
    assert (r["n"], r["accuracy_a"], r["accuracy_b"], r["diff"]) == (5, 60.0, 80.0, 20.0)
    assert (r["b01"], r["b10"], r["only_in_a"], r["only_in_b"]) == (2, 1, 0, 1)
    assert r["p_value"] == pytest.approx(1.0)  # 2 * P(X <= 1), X ~ Bin(3, 1/2) = 2 * 4/8, capped at 1
    assert r["diff_low"] <= 20.0 <= r["diff_high"]
    main(["sft", "cft", "--outputs", str(tmp_path)])
    out = capsys.readouterr().out
    assert "MATH" in out and "+20.0" in out
    main(["sft", "cft", "--outputs", str(tmp_path), "--json"])
    assert json.loads(capsys.readouterr().out)["math"]["b01"] == 2


def test_different_graders_are_refused(tmp_path):
    store = Store(tmp_path)
    _cell(store, "a", {"q1": True}, mode="paper")
    _cell(store, "b", {"q1": True}, mode="strict")
    with pytest.raises(ValueError, match="one grader only"):
        paired(store, "a", "b")
    with pytest.raises(FileNotFoundError, match="no cell zzz"):
        paired(store, "a", "zzz")
