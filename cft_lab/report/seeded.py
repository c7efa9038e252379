"""Rows trained with several seeds (``run.seeds``), as the tables see them, and what each arm's training cost.

* :func:`pooled_scores` -- one row's seeds pooled per benchmark (``cft_lab.eval.replicates.seed_summary``): the mean
  over seeds, the sd across seeds and the CI pooled over items x seeds, as the :class:`~cft_lab.report.BenchScore`
  the frames read;
* :func:`paired_footnotes` -- Table 2's test of CFT against the best SFT row (the SFT row with the highest AVG), per
  base: the exact McNemar test on (item, seed) pairs pooled over every benchmark column and the item-clustered
  bootstrap CI of the difference (``cft_lab.eval.replicates.paired_over_seeds``), as footnotes and
  ``frame.attrs["paired"]``;
* :func:`add_compute_columns` -- Table 2's optional columns (``run.show_compute=true``): loss tokens, attended
  tokens, optimizer steps, FLOPs (``6 · parameters · attended tokens``), training seconds and the share of test
  outputs with a parseable final answer; means over a row's seeds.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cft_lab.eval.replicates import paired_over_seeds, seed_summary
from cft_lab.pipeline.store import read_jsonl
from cft_lab.report.frames import AVG, DELTA_LABEL, METHOD_LABELS, SFT_METHODS, BenchScore

log = logging.getLogger(__name__)


def item_grades(grade_dir: Path, benchmark: str) -> dict[str, bool]:
    """``{item id: correct}`` of one graded benchmark (the table's grading mode, first sample)."""
    return {r["id"]: bool(r["correct"]) for r in read_jsonl(grade_dir / f"{benchmark}.jsonl")}


def _aligned(grade_dirs: Sequence[Path], benchmark: str) -> list[list[bool]]:
    """Seeds x items, items in the first seed's order; every seed must have graded the same items."""
    per_seed = [item_grades(d, benchmark) for d in grade_dirs]
    ids = list(per_seed[0])
    if any(set(g) != set(ids) for g in per_seed[1:]):
        raise ValueError(f"{benchmark}: the seeds graded different items; rerun them with the same eval settings")
    return [[g[i] for i in ids] for g in per_seed]


def pooled_scores(results: Sequence[dict], grade_dirs: Sequence[Path], n_boot: int = 10000) -> dict[str, BenchScore]:
    """One row's seeds pooled per benchmark, keyed by column label (see the module doc)."""
    out = {}
    for name, s in results[0]["scores"].items():
        summary = seed_summary(_aligned(grade_dirs, name), n_boot=n_boot)
        out[s.get("label", name)] = BenchScore(
            correct=summary["correct"],
            n=summary["n"] * summary["seeds"],
            ci_low=summary["ci_low"],
            ci_high=summary["ci_high"],
            sd=summary["sd"],
            per_seed=tuple(summary["seed_accuracies"]),
        )
    return out


def _row_grades(cell: Any, columns: Sequence[str]) -> list[list[bool]]:
    """Seeds x items of a row over every benchmark column (items of all columns concatenated)."""
    names = {label: name for label, name in cell.decoding.get("benchmarks", {}).items()}
    per_column = [_aligned(cell.grade_dirs, names[c]) for c in columns]
    return [[g for col in per_column for g in col[s]] for s in range(len(cell.grade_dirs))]


def paired_footnotes(frame: pd.DataFrame, cells: Sequence[Any], columns: Sequence[str]) -> list[str]:
    """Per base of a Table 2 frame: CFT against its best SFT row over items x seeds (see the module doc)."""
    lines, paired = [], {}
    sft_labels = {METHOD_LABELS[m]: m for m in SFT_METHODS}
    for model in dict.fromkeys(frame.index.get_level_values(0)):
        block = frame.loc[model].drop(index=DELTA_LABEL, errors="ignore")
        sft = block.loc[[label for label in sft_labels if label in block.index], AVG].dropna()
        mine = {c.method: c for c in cells if c.model == model and c.status == "ok" and c.grade_dirs}
        if sft.empty or "cft" not in mine:
            continue
        best = sft_labels[str(sft.idxmax())]
        if best not in mine or len(mine[best].grade_dirs) != len(mine["cft"].grade_dirs):
            continue
        try:
            res = paired_over_seeds(_row_grades(mine[best], columns), _row_grades(mine["cft"], columns))
        except (ValueError, KeyError, FileNotFoundError) as e:  # a table is still written; the test is left out
            log.warning("%s: no paired test of CFT vs %s: %s", model, best, e)
            continue
        paired[model] = {"baseline": METHOD_LABELS[best], **res}
        lines.append(
            f"{model}: CFT vs {METHOD_LABELS[best]} (the best SFT row by AVG), all columns pooled, "
            f"{res['n']} items × {res['seeds']} seed{'s' if res['seeds'] > 1 else ''} = {res['pairs']} pairs: "
            f"only CFT right {res['b01']}, only {METHOD_LABELS[best]} right {res['b10']}, exact McNemar p = "
            f"{res['p_value']:.2g}; CFT − SFT = {res['diff']:+.1f} points, 95% CI [{res['diff_low']:+.1f}, "
            f"{res['diff_high']:+.1f}] (items resampled with all their seeds)"
        )
    frame.attrs["paired"] = paired
    return lines


#: Table 2's optional columns: label -> (where in a cell's result, format).
COMPUTE_COLUMNS = {
    "Loss tokens": (("compute", "loss_tokens"), "{:.0f}"),
    "Attended tokens": (("compute", "attended_tokens"), "{:.0f}"),
    "Steps": (("compute", "optimizer_steps"), "{:.0f}"),
    "TFLOPs": (("compute", "flops"), "{:.2f}"),
    "Train s": (("compute", "train_wall_s"), "{:.0f}"),
    "Parsed %": (("answer_format", "share"), "{:.1f}"),
}


def _value(results: Sequence[dict], path: tuple[str, str]) -> float:
    found = [(r.get(path[0]) or {}).get(path[1]) for r in results]
    values = [float(v) for v in found if isinstance(v, (int, float))]
    if not values:
        return np.nan
    mean = statistics.fmean(values)
    return mean / 1e12 if path[1] == "flops" else mean


def add_compute_columns(frame: pd.DataFrame, cells: Sequence[Any]) -> pd.DataFrame:
    """Table 2 with :data:`COMPUTE_COLUMNS` after AVG (means over a row's seeds; the Δ row has none)."""
    out = frame.copy()
    out.attrs = dict(frame.attrs)
    by_row = {(c.model, METHOD_LABELS.get(c.method, c.method)): c for c in cells}
    for label, (path, _) in COMPUTE_COLUMNS.items():
        out[label] = [
            _value(by_row[row].results, path) if row in by_row and by_row[row].results else np.nan for row in out.index
        ]
    out.attrs["extra_columns"] = {
        **frame.attrs.get("extra_columns", {}),
        **{k: f for k, (_, f) in COMPUTE_COLUMNS.items()},
    }
    out.attrs.setdefault("legend", [])
    out.attrs["legend"] = [
        *out.attrs["legend"],
        "Loss tokens / Attended tokens = completion tokens in the loss / all non-padding tokens the model read, over "
        "every epoch; TFLOPs = 6 · parameters · attended tokens / 1e12; Train s = training wall time; Parsed % = test "
        "outputs with a parseable final answer (means over seeds)",
    ]
    return out
