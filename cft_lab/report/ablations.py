"""The paper's other training ablations as frames (rendered by ``cft_lab.report.render`` like every table).

* :func:`table5_frame` -- Table 5, dataset source x objective: rows = benchmarks + AVG, columns = "<source>-SFT",
  "<source>-CFT" per data option of the sweep (testbed stand-ins keep their "(≈MetaMathQA-SFT)" alias).
* :func:`methods_frame` -- a table whose rows are methods of one model (v4 Table 9 ``combine_with_sft``, v4 Table 10
  ``token_length_control``): rows = the cells' row labels (the method bundle's ``run.label``, else the objective's),
  columns = benchmarks + AVG + ``Examples``, ``Loss tokens`` and ``Steps`` (what each arm trained on: whether the arms
  were matched in examples, tokens or steps is read off these).
* :func:`table4_frame` -- Table 4, 32B: rows = the instruct base, Sky-T1 and the CFT cell, then Δ = CFT − Sky-T1;
  columns = ``#Data`` (training examples) and the benchmarks.
* :func:`paper_frame` -- the paper's numbers of each in the same layout (version "v1" or "v3_v4"; the v4-only tables
  have one version).
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cft_lab.report.frames import (
    AVG,
    METHOD_LABELS,
    PAPER_TABLES,
    CellResult,
    _assemble,
    _cell_meta,
    _measure,
    _Run,
    _unique,
    approx_target,
    recompute,
)

ARM = {"sft": "SFT", "cft": "CFT"}
EXAMPLES, LOSS_TOKENS, STEPS, DATA = "Examples", "Loss tokens", "Steps", "#Data"
TABLE4_DELTA = "Δ = CFT − Sky-T1"


def source_label(data_label: str, arm: str) -> str:
    """``"MetaMathQA-SFT"``; a stand-in keeps its alias: ``"Testbed-rephrased-SFT (≈MetaMathQA-SFT)"``.

    >>> source_label("Testbed-rephrased (≈MetaMathQA)", "SFT")
    'Testbed-rephrased-SFT (≈MetaMathQA-SFT)'
    """
    target = approx_target(data_label)
    if target is None:
        return f"{data_label}-{arm}"
    base = re.sub(r"\s*\(≈[^)]*\)", "", data_label)
    return f"{base}-{arm} (≈{target}-{arm})"


def row_label(cell: CellResult) -> str:
    return cell.label or METHOD_LABELS.get(cell.method, cell.method)


def table5_frame(cells: Sequence[CellResult], benchmarks: Sequence[str]) -> pd.DataFrame:
    """Table 5: one column per (source, SFT|CFT) cell, in sweep order; rows = benchmarks + AVG."""
    runs: dict[Hashable, _Run] = {}
    for cell in cells:
        label = source_label(cell.data or "?", ARM.get(cell.method, cell.method))
        runs[label] = _measure(cell, benchmarks, _cell_meta(cell, cell.model, label))
    frame = recompute(_assemble(runs, benchmarks, "table7"))
    frame.attrs.update(layout="table5", model=_unique([c.model for c in cells])[0] if cells else "")
    return frame


def _rows(
    runs: dict[Hashable, _Run], benchmarks: Sequence[str], extras: dict[Hashable, dict[str, float]], layout: str
) -> pd.DataFrame:
    """Runs as rows (model, label): benchmarks, AVG (the plain mean; NaN with a hole), then extra columns."""
    names = list(dict.fromkeys(k for e in extras.values() for k in e))
    frame = pd.DataFrame(
        [
            [runs[r].values.get(b, np.nan) for b in benchmarks]
            + [np.nan]
            + [extras.get(r, {}).get(x, np.nan) for x in names]
            for r in runs
        ],
        index=pd.MultiIndex.from_tuples(list(runs), names=["model", "method"]),
        columns=[*benchmarks, AVG, *names],
        dtype=float,
    )
    frame[AVG] = frame[list(benchmarks)].mean(axis=1, skipna=False)
    frame.attrs = {
        "layout": layout,
        "run_axis": 0,
        "notes": {r: run.note for r, run in runs.items() if run.note},
        "runs": {r: run.meta for r, run in runs.items()},
        "ci": {(r, b): ci for r, run in runs.items() for b, ci in run.ci.items()},
        "n": {(r, b): n for r, run in runs.items() for b, n in run.n.items()},
        "sd": {(r, b): sd for r, run in runs.items() for b, sd in run.sd(benchmarks).items()},
        "seeds": {r: len(next(iter(run.per_seed.values()))) for r, run in runs.items() if run.per_seed},
        "extra_columns": {x: "{:.0f}" for x in names},
    }
    return frame


def methods_frame(cells: Sequence[CellResult], benchmarks: Sequence[str], *, layout: str = "methods") -> pd.DataFrame:
    """Rows = methods (one block per model), with what each arm trained on (see the module doc)."""
    runs: dict[Hashable, _Run] = {}
    extras: dict[Hashable, dict[str, float]] = {}
    for cell in cells:
        key = (cell.model, row_label(cell))
        runs[key] = _measure(cell, benchmarks, _cell_meta(cell, cell.model, key[1]))
        t = cell.train_examples or {}
        extras[key] = {
            EXAMPLES: t.get("examples", np.nan),
            LOSS_TOKENS: t.get("loss_tokens", np.nan),
            STEPS: np.nan if cell.steps is None else cell.steps,
        }
    frame = _rows(runs, benchmarks, extras, layout)
    frame.attrs["legend"] = [
        f"{EXAMPLES}, {LOSS_TOKENS} and {STEPS} = what the arm trained on (pairs after truncation and any "
        "selection, completion tokens in the loss, optimizer steps)"
    ]
    return frame


def combine_with_sft_frame(cells: Sequence[CellResult], benchmarks: Sequence[str]) -> pd.DataFrame:
    return methods_frame(cells, benchmarks, layout="combine_with_sft")


def token_length_control_frame(cells: Sequence[CellResult], benchmarks: Sequence[str]) -> pd.DataFrame:
    frame = methods_frame(cells, benchmarks, layout="token_length_control")
    short = [c for c in cells if (c.train_examples or {}).get("length_match")]
    for cell in short:
        lm = cell.train_examples["length_match"]
        frame.attrs.setdefault("footnotes", []).append(
            f"{row_label(cell)}: {lm['kept']} of {lm['candidates_total']} critiques kept by {lm['rule']}; completion "
            f"tokens p50/p90 {lm['candidates'].get('p50')}/{lm['candidates'].get('p90')} before, "
            f"{lm['kept_lengths'].get('p50')}/{lm['kept_lengths'].get('p90')} after, reference "
            f"({lm['reference_objective']}) {lm['reference'].get('p50')}/{lm['reference'].get('p90')}; two-sample KS "
            f"{lm['ks_candidates']} -> {lm['ks_kept']}; reference share no critique was short enough to match: "
            f"{lm.get('unmatched_reference_share', 0)}"
        )
    return frame


def table4_frame(cells: Sequence[CellResult], benchmarks: Sequence[str]) -> pd.DataFrame:
    """Table 4: the instruct base, Sky-T1 and the CFT cell (run labels), then Δ = CFT − Sky-T1 per column."""
    runs: dict[Hashable, _Run] = {}
    extras: dict[Hashable, dict[str, float]] = {}
    for cell in cells:
        label = cell.label or (f"{cell.model}-CFT" if cell.method == "cft" else cell.model)
        key = ("32B", label)
        runs[key] = _measure(cell, benchmarks, _cell_meta(cell, cell.model, label))
        extras[key] = {DATA: (cell.train_examples or {}).get("examples", np.nan)}
    frame = _rows(runs, benchmarks, extras, "table4").drop(columns=[AVG])
    cft = [k for k in runs if k[1].endswith("-CFT")]
    sky = [k for k in runs if "Sky-T1" in k[1]]
    delta = pd.Series(np.nan, index=frame.columns)
    if cft and sky:
        delta[list(benchmarks)] = frame.loc[cft[0], list(benchmarks)] - frame.loc[sky[0], list(benchmarks)]
    frame.loc[("32B", TABLE4_DELTA), :] = delta.to_numpy()
    frame.attrs["runs"][("32B", TABLE4_DELTA)] = {"model": "32B", "method": TABLE4_DELTA, "status": "derived"}
    frame.attrs["legend"] = [f"{DATA} = training examples of our cell; {TABLE4_DELTA} per column"]
    return frame


# ---- the paper's numbers ------------------------------------------------------------------------------------------


def paper_frame(table: str, version: str = "v1", path: Path = PAPER_TABLES) -> pd.DataFrame:
    """The paper's ``table5`` / ``combine_with_sft`` / ``token_length_control`` / ``table4`` in these layouts.
    The v4-only tables (combine_with_sft, token_length_control) have one set of numbers, returned for any version."""
    spec = json.loads(Path(path).read_text(encoding="utf-8"))[table]
    rows = spec.get("rows_v3_v4") if version == "v3_v4" and "rows_v3_v4" in spec else spec["rows"]
    shown = version if spec["paper_table_number"].get("v1") else "v4"
    attrs = {"version": shown, "title": spec.get("title", ""), "notes": {}, "runs": {}, "ci": {}, "n": {}}
    if table == "table5":
        frame = pd.DataFrame(rows).set_index("task").rename_axis("benchmark")[spec["columns"][1:]].astype(float)
        frame.attrs = {"layout": "table5", "run_axis": 1, "model": "Qwen2.5-Math-7B", **attrs}
        return frame
    columns = [c for c in spec["columns"] if c not in ("model", "#Data")]
    if table == "table4":
        labels = [r["model"].replace("Delta (CFT - Sky-T1)", TABLE4_DELTA) for r in rows]
        index = pd.MultiIndex.from_tuples([("32B", x) for x in labels], names=["model", "method"])
        data = [[r[c] for c in columns] + [_data_count(r.get("#Data"))] for r in rows]
        frame = pd.DataFrame(data, index=index, columns=[*columns, DATA], dtype=float)
        frame.attrs = {"layout": "table4", "run_axis": 0, **attrs}
        return frame
    rename = {"Qwen2.5-Math-7B-CFT": METHOD_LABELS["cft"]}
    index = pd.MultiIndex.from_tuples(
        [("Qwen2.5-Math-7B", rename.get(r["model"], r["model"])) for r in rows], names=["model", "method"]
    )
    frame = pd.DataFrame([[r[c] for c in columns] for r in rows], index=index, columns=columns, dtype=float)
    frame.attrs = {"layout": table, "run_axis": 0, **attrs}
    return frame


def _data_count(value: str | None) -> float:
    """``"17K"`` -> 17000.0 (the paper's #Data column)."""
    if not value:
        return np.nan
    return float(value.rstrip("Kk")) * (1000 if value[-1] in "Kk" else 1)


LAYOUTS = {
    "table5": table5_frame,
    "combine_with_sft": combine_with_sft_frame,
    "token_length_control": token_length_control_frame,
    "table4": table4_frame,
}
