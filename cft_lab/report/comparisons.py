"""Comparison tables: our cells beside models this project did not train (rendered by ``cft_lab.report.render``).

* :func:`table3_frame` -- Table 3: rows = (group, model) in the paper's order (the cells' ``run.group`` /
  ``run.label``, from ``experiments/row``), columns = the benchmarks + AVG. At paper scale every paper row is listed:
  a row the sweep measured shows its scores; a row nobody can run (rStar-Math: no public checkpoint) shows the
  paper's numbers as **quoted**; at tiny scale only the sweep's rows.
* :data:`QUOTED` -- the cells the paper copied from other reports (docs/protocol.md §2, §5), by layout: they render
  from ``assets/paper_tables.json`` with ``‡`` in every format (md, tex; ``status=quoted`` and the ``quoted`` /
  ``quoted_from`` CSV columns), never in a measured AVG, and beside our measurement where both exist.
* :func:`paper_frame` -- the paper's numbers in these layouts (``version`` "v1" or "v3_v4").
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cft_lab.report.frames import (
    AVG,
    METHOD_LABELS,
    PAPER_TABLES,
    CellResult,
    _cell_meta,
    _measure,
    _Run,
    approx_target,
)

ALL = "*"  # every benchmark column and AVG of the row

#: layout -> {(paper row label, column or ALL): where the paper's number came from}. Only cells whose provenance is
#: established (docs/protocol.md §2, §5) are listed; every other paper number is shown as "(paper x)" beside ours.
QUOTED: dict[str, dict[tuple[str, str], str]] = {
    "table3": {
        ("rStar-Math@Greedy", ALL): "the rStar-Math paper's greedy numbers; no public policy checkpoint to run",
        ("GPT-4o (2024-08-06)", "AIME24"): "9.3 is not k/30 (30 problems): not one greedy run (docs/protocol.md §5)",
        ("Mathstral-7B-v0.1", "AMC23"): "42.4 is not k/40 (40 problems): not one greedy run (docs/protocol.md §5)",
        ("Eurus-2-SFT", "AMC23"): "30.1 is not k/40 (40 problems): not one greedy run (docs/protocol.md §5)",
        ("Qwen2.5-Math-Base", "MATH"): "55.4 = the Qwen2.5-Math report's few-shot CoT number (docs/protocol.md §2)",
    },
    "rl_comparison": {
        ("SimpleRL-Zero", ALL): "the SimpleRL blog (which prints OlympiadBench 37.6, AVG 48.8); 32 H100 x 1.5 days",
        ("SimpleRL", ALL): "the SimpleRL blog; 32 H100 x 1.5 days",
    },
}


def _paper_spec(table: str, path: Path = PAPER_TABLES) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))[table]


def _rows_of(spec: dict, version: str) -> list[dict]:
    return spec.get("rows_v3_v4", spec["rows"]) if version == "v3_v4" else spec["rows"]


def _quoted_cells(layout: str, rows: list[dict], index: dict[str, Hashable], columns: Sequence[str]) -> dict:
    """``frame.attrs["quoted"]`` for a layout: {(row, column): {"value", "source"}} from the paper's rows."""
    out = {}
    by_label = {r["model"]: r for r in rows}
    for (label, col), source in QUOTED.get(layout, {}).items():
        if label not in by_label or label not in index:
            continue
        for c in [*columns, AVG] if col == ALL else [col]:
            value = by_label[label].get(c)
            if c in columns or c == AVG:
                if value is not None:
                    out[(index[label], c)] = {"value": float(value), "source": source}
    return out


def table3_frame(cells: Sequence[CellResult], benchmarks: Sequence[str]) -> pd.DataFrame:
    """Table 3 (see the module doc): measured rows, and at paper scale the paper's other rows, quoted or missing."""
    paper_scale = bool(cells) and all(c.model_source != "testbed" for c in cells)
    runs: dict[Hashable, _Run] = {}
    spec = _paper_spec("table3")
    rows = spec["rows"]
    if paper_scale:  # the paper's rows first, in its order: a row with no cell is quoted or named as missing
        for r in rows:
            runs[(r["group"], r["model"])] = _Run(
                meta={"model": r["model"], "method": r["group"], "teacher": None, "status": "missing", "key": None},
                note="not run (no cell in the sweep)",
            )
    for cell in cells:
        label = cell.label or cell.model
        group = cell.group or "Measured"
        meta = _cell_meta(cell, label, group)
        meta["model"], meta["method"] = label, group
        runs[(group, label)] = _measure(cell, benchmarks, meta)
    index = {key[1]: key for key in runs}
    frame = pd.DataFrame(
        [[runs[k].values.get(b, np.nan) for b in benchmarks] for k in runs],
        index=pd.MultiIndex.from_tuples(list(runs), names=["group", "model"]),
        columns=list(benchmarks),
        dtype=float,
    )
    frame[AVG] = frame[list(benchmarks)].mean(axis=1, skipna=False)
    quoted = _quoted_cells("table3", rows, index, list(benchmarks)) if paper_scale else {}
    notes = {k: r.note for k, r in runs.items() if r.note}
    for row, _ in quoted:  # a row the sweep cannot have (no cell at all) is quoted, not a hole to explain
        if runs[row].meta["status"] == "missing" and runs[row].meta["key"] is None:
            notes.pop(row, None)
            runs[row].meta["status"] = "quoted"
    frame.attrs = {
        "layout": "table3",
        "run_axis": 0,
        "notes": notes,
        "runs": {k: r.meta for k, r in runs.items()},
        "ci": {(k, b): ci for k, r in runs.items() for b, ci in r.ci.items()},
        "n": {(k, b): n for k, r in runs.items() for b, n in r.n.items()},
        "quoted": quoted,
    }
    trained = [c for c in cells if (c.train_examples or {}).get("examples")]
    if trained:
        frame.attrs["legend"] = [
            "; ".join(f"{c.label or c.model}: {c.train_examples['examples']:,} training examples" for c in trained)
        ]
    return frame


TRAIN_H, ALL_H = "Train device-h", "All stages device-h"
RL_LABELS = {"cft": "CFT", "sft": "SFT", "base": "Base"}  # the RL table's row names
RL_MODEL = "Qwen2.5-Math-7B"


def rl_comparison_frame(cells: Sequence[CellResult], benchmarks: Sequence[str]) -> pd.DataFrame:
    """The RL comparison (v3 Table 5 / v4 Table 4): our cells (CFT, and any other arm of the sweep) with their
    measured device-hours (``cft_lab.report.ledger``) beside SimpleRL-Zero and SimpleRL, whose rows are quoted (they
    were never trained here) at paper scale. Rows (model, method); columns benchmarks, AVG, train and all-stage
    device-hours."""
    from cft_lab.report.ledger import summed

    paper_scale = bool(cells) and all(c.model_source != "testbed" for c in cells)
    runs: dict[Hashable, _Run] = {}
    extras: dict[Hashable, dict[str, float]] = {}
    unrecorded, kinds = [], set()
    for cell in cells:
        label = cell.label or RL_LABELS.get(cell.method, METHOD_LABELS.get(cell.method, cell.method))
        model = RL_MODEL if paper_scale and stand_in(cell.model) == RL_MODEL else cell.model
        key = (model, label)
        runs[key] = _measure(cell, benchmarks, _cell_meta(cell, model, label))
        led = cell.ledger or {}
        kinds |= {k for k in led.get("device_hours", {}) if k != "api"}
        extras[key] = {
            TRAIN_H: summed(led["train_device_hours"]) if led.get("stages") else np.nan,
            ALL_H: summed(led["device_hours"]) if led.get("stages") else np.nan,
        }
        if led.get("unrecorded"):
            unrecorded.append(f"{label}: {', '.join(led['unrecorded'])}")
    spec = _paper_spec("rl_comparison")
    rows = spec["rows"]
    if paper_scale:
        for r in rows:
            key = (RL_MODEL, r["model"])
            if key not in runs:
                runs[key] = _Run(meta={"model": RL_MODEL, "method": r["model"], "status": "missing", "key": None})
                extras[key] = {TRAIN_H: np.nan, ALL_H: np.nan}
    from cft_lab.report.ablations import _rows

    frame = _rows(runs, benchmarks, extras, "rl_comparison")
    frame.attrs["extra_columns"] = {TRAIN_H: "{:.2f}", ALL_H: "{:.2f}"}
    index = {k[1]: k for k in runs}
    quoted = _quoted_cells("rl_comparison", rows, index, list(benchmarks)) if paper_scale else {}
    if paper_scale:
        for label, _ in QUOTED["rl_comparison"]:
            if label in index:
                row = next(r for r in rows if r["model"] == label)
                quoted[(index[label], TRAIN_H)] = {"value": float(row["gpu_hours_h100"]), "source": "the paper"}
                runs[index[label]].meta["status"] = "quoted"
    frame.attrs["quoted"] = quoted
    for row in [k for k in frame.attrs["notes"] if k in {q[0] for q in quoted}]:
        frame.attrs["notes"].pop(row)
    frame.attrs["legend"] = [
        f"{TRAIN_H} / {ALL_H} = wall-clock hours x devices of the training stage / of every stage (data, train, "
        f"select, infer, grade), as each artefact's DONE.json recorded its build"
        + (f" (devices here: {', '.join(sorted(kinds))})" if kinds else "")
        + "; the paper's are H100 GPU-hours of training"
    ]
    if paper_scale:
        frame.attrs["legend"].append(
            "training data (the paper): " + "; ".join(f"{r['model']} {r['data_size']}" for r in rows)
        )
    if unrecorded:
        frame.attrs["footnotes"] = [f"device time not recorded for {u}" for u in unrecorded]
    return frame


IF_STRICT, IF_LOOSE, MT = "IF-Eval strict", "IF-Eval loose", "MT-Bench"
#: our row labels -> v4 Table 8's (Table 3 calls the base "Qwen2.5-Math-Base")
IF_ALIASES = {"Qwen2.5-Math-Base": "Qwen2.5-Math-7B"}


def if_eval_mtbench_frame(cells: Sequence[CellResult], benchmarks: Sequence[str]) -> pd.DataFrame:
    """v4 Table 8: rows (group, model); columns IF-Eval instruction-level strict and loose (percent, where the paper
    prints fractions) and MT-Bench (the mean judge rating, 1-10), from each cell's scores."""
    runs: dict[Hashable, _Run] = {}
    for cell in cells:
        label = IF_ALIASES.get(cell.label or cell.model, cell.label or cell.model)
        key = (cell.group or "Measured", label)
        meta = _cell_meta(cell, label, key[0])
        meta["model"], meta["method"] = label, key[0]
        run = _Run(meta=meta)
        if cell.status != "ok":
            run.note = f"{cell.status}: {cell.error or 'not run'}"
        else:
            raw = cell.raw_scores
            ifeval, mt = (raw.get("IF-Eval") or {}).get("ifeval"), raw.get("MT-Bench")
            if ifeval:
                run.values[IF_STRICT], run.values[IF_LOOSE] = ifeval["instruction_strict"], ifeval["instruction_loose"]
                run.ci[IF_STRICT] = (raw["IF-Eval"]["ci_low"], raw["IF-Eval"]["ci_high"])
                run.n[IF_STRICT] = run.n[IF_LOOSE] = ifeval["instructions"]
            if mt:
                run.values[MT] = mt["value"]
                run.ci[MT] = (mt["ci_low"], mt["ci_high"])
                run.n[MT] = mt["mt_bench"]["judged"]
            missing = [c for c in (IF_STRICT, IF_LOOSE, MT) if c not in run.values]
            if missing:
                run.note = "no score for " + ", ".join(missing)
        runs[key] = run
    columns = [IF_STRICT, IF_LOOSE, MT]
    frame = pd.DataFrame(
        [[r.values.get(c, np.nan) for c in columns] for r in runs.values()],
        index=pd.MultiIndex.from_tuples(list(runs), names=["group", "model"]),
        columns=columns,
        dtype=float,
    )
    judges = sorted(
        {
            f"{j.get('name')} ({j.get('model')}, prompts {j.get('prompt_version')})"
            for c in cells
            for j in [((c.raw_scores.get("MT-Bench") or {}).get("mt_bench") or {}).get("judge") or {}]
            if j
        }
    )
    unparsed = {
        c.label or c.model: m["mt_bench"]["unparsed"]
        for c in cells
        for m in [c.raw_scores.get("MT-Bench") or {}]
        if m and m["mt_bench"]["unparsed"]
    }
    frame.attrs = {
        "layout": "if_eval_mtbench",
        "run_axis": 0,
        "notes": {k: r.note for k, r in runs.items() if r.note},
        "runs": {k: r.meta for k, r in runs.items()},
        "ci": {(k, b): ci for k, r in runs.items() for b, ci in r.ci.items()},
        "n": {(k, b): n for k, r in runs.items() for b, n in r.n.items()},
        "legend": [
            "IF-Eval = instruction-level accuracy in % (the paper prints fractions: 0.335 = 33.5), strict / loose "
            "(google's loose variants); MT-Bench = mean judge rating (1-10) over both turns"
            + (f"; judge: {', '.join(judges)}" if judges else "")
        ],
    }
    if unparsed:
        frame.attrs["footnotes"] = [f"MT-Bench judgments without a rating (left out of the mean): {unparsed}"]
    return frame


def paper_frame(table: str, version: str = "v1", path: Path = PAPER_TABLES) -> pd.DataFrame:
    """The paper's ``table3``, ``rl_comparison`` or ``if_eval_mtbench`` in this module's layouts."""
    spec = _paper_spec(table, path)
    rows = _rows_of(spec, version)
    if table == "if_eval_mtbench":
        group = "Initialized from Qwen2.5-Math-7B-Base"
        frame = pd.DataFrame(
            [[100 * r["IF_Eval_strict"], 100 * r["IF_Eval_loose"], r["MT-Bench"]] for r in rows],
            index=pd.MultiIndex.from_tuples([(group, r["model"]) for r in rows], names=["group", "model"]),
            columns=[IF_STRICT, IF_LOOSE, MT],
            dtype=float,
        )
        frame.attrs = {"layout": table, "run_axis": 0, "version": "v4", "title": spec.get("title", "")}
        frame.attrs.update({"notes": {}, "runs": {}, "ci": {}, "n": {}})
        return frame
    if table == "rl_comparison":
        cols = [c for c in spec["columns"] if c not in ("model", "data_size", "gpu_hours_h100")]
        frame = pd.DataFrame(
            [[r[c] for c in cols] + [r["gpu_hours_h100"]] for r in rows],
            index=pd.MultiIndex.from_tuples([(RL_MODEL, r["model"]) for r in rows], names=["model", "method"]),
            columns=[*cols, TRAIN_H],
            dtype=float,
        )
        frame.attrs = {"layout": table, "run_axis": 0, "version": "v3_v4", "title": spec.get("title", "")}
        frame.attrs.update({"notes": {}, "runs": {}, "ci": {}, "n": {}})
        return frame
    if table != "table3":
        raise ValueError(f"no paper frame for {table} here")
    columns = [c for c in spec["columns"] if c not in ("model", "group", "#Data")]
    frame = pd.DataFrame(
        [[np.nan if r.get(c) is None else r[c] for c in columns] for r in rows],
        index=pd.MultiIndex.from_tuples([(r["group"], r["model"]) for r in rows], names=["group", "model"]),
        columns=columns,
        dtype=float,
    )
    frame.attrs = {"layout": table, "run_axis": 0, "version": version, "title": spec.get("title", ""), "notes": {}}
    frame.attrs.update({"runs": {}, "ci": {}, "n": {}})
    return frame


def stand_in(label: str) -> str:
    """The paper row a tiny row stands for (``"tiny-math-CFT (≈Qwen2.5-Math-7B-CFT)"`` -> the CFT row)."""
    return approx_target(label) or label


LAYOUTS = {"table3": table3_frame, "rl_comparison": rl_comparison_frame, "if_eval_mtbench": if_eval_mtbench_frame}
