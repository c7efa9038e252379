"""Per-item views of graded cells: one row per graded item, and two arms aligned by item id.

:func:`items_frame` reads a cell's graded rows (``store/grade/<key>/<benchmark>.jsonl``, format in
``cft_lab.eval.engine``) into one row per item, with these columns (the same in the W&B Table ``items`` that a cell
logs with its run and in the Parquet file the dashboard writes):

    benchmark, label, id, index, prompt, gold, output, tokens, finish_reason, samples, samples_correct,
    answer_<mode>, correct_<mode> (one pair per grading mode of the cell), mode, correct

``output``, ``answer_<mode>`` and ``correct_<mode>`` are the first sample's (the sample a benchmark's accuracy is
scored on); ``samples`` / ``samples_correct`` count every sample and those right in the primary mode; ``mode`` is
that primary mode (``scores.json``'s ``mode``) and ``correct`` its verdict, the flag ``cft_lab.eval.compare`` pairs.
Golds and answers are strings (a testbed gold is an integer, a paper one a LaTeX string; one column type each).

:func:`paired_frame` aligns two such frames by (benchmark, id): one row per item both arms graded, with
``outcome`` in :data:`OUTCOMES`; :func:`paired_counts` counts them per benchmark (the McNemar test's cells: ``only_a``
= b10, ``only_b`` = b01 of ``cft_lab.eval.metrics.paired_test``) with the exact McNemar p-value.
:data:`PAIR_RULES` says which arms of each table layout are compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pandas as pd

from cft_lab.eval import metrics
from cft_lab.pipeline.store import read_jsonl

OUTCOMES = ("both right", "only A", "only B", "both wrong")
_BASE_COLUMNS = ["benchmark", "label", "id", "index", "prompt", "gold", "output", "tokens", "finish_reason"]


def _text(value) -> str | None:
    return None if value is None else str(value)


def prompt_text(prompt) -> str:
    """A stored prompt as one string: a rendered prompt as it is; chat messages (an API model) as ``role: content``
    lines; MT-Bench's two turns one after the other.

    >>> prompt_text([{"role": "user", "content": "Hi"}])
    'user: Hi'
    """
    if isinstance(prompt, str):
        return prompt
    if prompt and all(isinstance(m, dict) for m in prompt):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt)
    return "\n\n--- next turn ---\n\n".join(prompt_text(p) for p in prompt)


def items_frame(grade_dir: Path, benchmarks: list[str] | None = None) -> pd.DataFrame:
    """One row per graded item of every benchmark in ``grade_dir`` (all in ``scores.json`` when ``benchmarks`` is
    None), in the graded files' order; columns as in the module docstring."""
    grade_dir = Path(grade_dir)
    scores = json.loads((grade_dir / "scores.json").read_text(encoding="utf-8"))
    rows, modes = [], []
    for bench in benchmarks if benchmarks is not None else list(scores):
        if bench not in scores:
            raise ValueError(f"{grade_dir} has no graded benchmark {bench} (graded: {', '.join(scores)})")
        primary = scores[bench].get("mode")
        for g in read_jsonl(grade_dir / f"{bench}.jsonl"):
            first = g["samples"][0]
            row = {
                "benchmark": bench,
                "label": scores[bench].get("label", bench),
                "id": str(g["id"]),
                "index": int(g["index"]),
                "prompt": prompt_text(g["prompt"]),
                "gold": _text(g.get("gold")),
                "output": first["output"],
                "tokens": int(first.get("tokens", 0)),
                "finish_reason": first.get("finish_reason"),
                "samples": len(g["samples"]),
                "samples_correct": sum(bool(s["correct"].get(primary)) for s in g["samples"]),
            }
            for mode in first["correct"]:
                if mode not in modes:
                    modes.append(mode)
                row[f"answer_{mode}"] = _text(first.get("pred", {}).get(mode))
                row[f"correct_{mode}"] = bool(first["correct"][mode])
            row["mode"] = primary
            row["correct"] = None if g["correct"] is None else bool(g["correct"])  # None: judged, not right/wrong
            rows.append(row)
    per_mode = [c for m in modes for c in (f"answer_{m}", f"correct_{m}")]
    columns = [*_BASE_COLUMNS, "samples", "samples_correct", *per_mode, "mode", "correct"]
    return pd.DataFrame.from_records(rows, columns=columns)


def paired_frame(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Items both arms graded, aligned by (benchmark, id), in A's order: benchmark, label, id, correct_a,
    correct_b, answer_a, answer_b (each arm's primary-mode answer), outcome. A benchmark whose two arms were graded
    in different modes is refused, as ``cft_lab.eval.compare`` refuses it."""
    if a.empty or b.empty:
        return pd.DataFrame(
            columns=["benchmark", "label", "id", "correct_a", "answer_a", "correct_b", "answer_b", "outcome"]
        )
    for bench in sorted(set(a["benchmark"]) & set(b["benchmark"])):
        ma, mb = a.loc[a["benchmark"] == bench, "mode"].iloc[0], b.loc[b["benchmark"] == bench, "mode"].iloc[0]
        if ma != mb:
            raise ValueError(f"{bench}: arm A was scored in mode {ma}, arm B in {mb}; compare one grader only")

    def side(frame: pd.DataFrame, suffix: str) -> pd.DataFrame:
        answers = [row.get(f"answer_{row['mode']}") for row in frame.to_dict("records")]
        return frame.assign(answer=answers)[["benchmark", "label", "id", "correct", "answer"]].rename(
            columns={"correct": f"correct_{suffix}", "answer": f"answer_{suffix}"}
        )

    a, b = a[a["correct"].notna()], b[b["correct"].notna()]  # judged items (MT-Bench) have no right/wrong to pair
    merged = side(a, "a").merge(side(b, "b").drop(columns="label"), on=["benchmark", "id"], how="inner")
    merged["outcome"] = [_outcome(bool(x), bool(y)) for x, y in zip(merged["correct_a"], merged["correct_b"])]
    return merged


def _outcome(a: bool, b: bool) -> str:
    return "both right" if a and b else "only A" if a else "only B" if b else "both wrong"


def paired_counts(paired: pd.DataFrame) -> list[dict]:
    """Per benchmark (in first-seen order): n and the four outcome counts, accuracies of A and B, their difference
    B − A in points and the exact McNemar p-value of the discordant counts."""
    out = []
    for bench in dict.fromkeys(paired["benchmark"]):
        rows = paired[paired["benchmark"] == bench]
        counts = {o: int((rows["outcome"] == o).sum()) for o in OUTCOMES}
        n = len(rows)
        out.append(
            {
                "benchmark": bench,
                "label": rows["label"].iloc[0],
                "n": n,
                "both_right": counts["both right"],
                "only_a": counts["only A"],
                "only_b": counts["only B"],
                "both_wrong": counts["both wrong"],
                "accuracy_a": 100.0 * (counts["both right"] + counts["only A"]) / n,
                "accuracy_b": 100.0 * (counts["both right"] + counts["only B"]) / n,
                "diff": 100.0 * (counts["only B"] - counts["only A"]) / n,
                "p_value": metrics.mcnemar_exact_p(counts["only B"], counts["only A"]),
            }
        )
    return out


# ------------------------------------------------------------------------------------------------ pair rules
# Each rule takes the frame's runs ({run label: {"method", "status", "key", ...}}, in table order) and returns
# (A, B) run labels: B is the arm under study, A its baseline (differences are B − A, as in `compare A B`).

_Runs = dict[Any, dict]  # run label (a (model, method) tuple or a column name) -> its meta
_Pairs = list[tuple[Any, Any]]


def _table2_pairs(runs: _Runs) -> _Pairs:
    """Per model: every other row against CFT."""
    from cft_lab.report.frames import DELTA_LABEL, METHOD_LABELS

    pairs: _Pairs = []
    for label in runs:
        if isinstance(label, tuple) and label[1] == METHOD_LABELS["cft"]:
            model = label[0]
            pairs += [(r, label) for r in runs if r[0] == model and r != label and r[1] != DELTA_LABEL]
    return pairs


def _table6_pairs(runs: _Runs) -> _Pairs:
    """Base against either CFT column, then self-generated against reference responses."""
    from cft_lab.report.frames import BASE_COLUMN, REFERENCE_COLUMN, SELF_COLUMN

    return [(BASE_COLUMN, SELF_COLUMN), (BASE_COLUMN, REFERENCE_COLUMN), (SELF_COLUMN, REFERENCE_COLUMN)]


def _table7_pairs(runs: _Runs) -> _Pairs:
    """SFT-verified against every CFT teacher column."""
    from cft_lab.report.frames import SFT_VERIFIED_COLUMN

    return [(SFT_VERIFIED_COLUMN, label) for label in runs if label != SFT_VERIFIED_COLUMN]


def _table8_pairs(runs: _Runs) -> _Pairs:
    """Per model block: every decoding row against direct inference at the same temperature."""
    from cft_lab.report.table8 import MODE_LABELS

    direct = {(r[0], r[1].split(", T=")[-1]): r for r in runs if r[1].startswith(MODE_LABELS["direct"] + ",")}
    return [
        (direct[(r[0], r[1].split(", T=")[-1])], r)
        for r in runs
        if r not in direct.values() and (r[0], r[1].split(", T=")[-1]) in direct
    ]


PAIR_RULES: dict[str, Callable[[_Runs], _Pairs]] = {
    "table2": _table2_pairs,
    "table6": _table6_pairs,
    "table7": _table7_pairs,
    "table8": _table8_pairs,
}


def run_label(label: Hashable) -> str:
    """A frame's run label as one string: ``("tiny-math (≈...)", "Base")`` -> ``"tiny-math (≈...) · Base"``."""
    return " · ".join(str(x) for x in label) if isinstance(label, tuple) else str(label)


def pair_name(a: Hashable, b: Hashable) -> str:
    """``"tiny-math (≈...): Base vs WebInstruct-CFT"`` for two rows of one model, else both labels in full."""
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0]:
        return f"{a[0]}: {' · '.join(map(str, a[1:]))} vs {' · '.join(map(str, b[1:]))}"
    return f"{run_label(a)} vs {run_label(b)}"


def arm_pairs(layout: str, runs: _Runs) -> _Pairs:
    """The (A, B) run labels of ``layout`` whose two cells both finished (derived rows, holes and a cell paired with
    itself are left out)."""
    if layout not in PAIR_RULES:
        raise ValueError(f"no pair rule for layout {layout!r} (known: {', '.join(PAIR_RULES)})")

    def ok(label: Hashable) -> bool:
        meta = runs.get(label) or {}
        return meta.get("status") == "ok" and bool(meta.get("key"))

    return [(a, b) for a, b in PAIR_RULES[layout](runs) if ok(a) and ok(b) and runs[a]["key"] != runs[b]["key"]]
