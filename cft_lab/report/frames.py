"""Reproduced-vs-paper tables (Tables 2 and 7 of arXiv 2501.17703) as pandas frames (rendered by ``render``).

Contract
--------
Input is a list of :class:`CellResult` (or any objects with its attributes): ``model``, ``method``,
``teacher``, ``status`` in {"ok", "failed", "missing"}, ``error``, ``key`` and ``scores`` mapping a
benchmark label to a :class:`BenchScore` (``correct``, ``n``, ``ci_low``, ``ci_high``; CIs in percent).
Any other status is rendered as a hole noted "<status>: <error>" (and logged), never an exception.

* :func:`table2_frame` -> index ``(model, method label)``; for every model (first-seen order) the five
  method rows in the paper's order, then ``DELTA_LABEL``; columns = benchmarks + ``"AVG"``.
* :func:`table7_frame` -> index = benchmarks + ``"AVG"``; columns = ``"SFT-verified"`` then one column per
  CFT teacher label (first-seen order).
* :func:`paper_frame` -> the paper's printed numbers in the same layouts.
* :func:`write_table` -> ``{stem}.md/.csv/.tex/.png``.

Frame conventions (all frames)
------------------------------
Values are accuracies in percent, unrounded floats; a hole (failed / missing / unscored) is NaN.
AVG = plain mean of the benchmark columns (NaN if any is NaN). Delta = CFT minus the best of the three
SFT rows, per column (NaN unless CFT and all three SFT values exist); Delta AVG = CFT AVG - max SFT AVG.
A *run* is one sweep cell: a row of Table 2, a column of Table 7. ``frame.attrs`` holds:

* ``layout``: "table2" | "table7"; ``run_axis``: 0 (runs are rows) or 1 (runs are columns).
* ``notes``: {run label: reason} for every run with a hole, e.g. "failed: CUDA OOM", "not run",
  "no score for AIME24"; Delta rows get a note when a Delta value could not be computed.
* ``runs``: {run label: {"model", "method", "teacher", "status", "key"}} (Delta: status "derived").
* ``ci`` / ``n``: {(row label, column label): (ci_low, ci_high)} / problem count, measured values only
  (use :func:`ci_bounds` for aligned frames).
* ``best_sft`` (Table 2): {(model, column): SFT method label that Delta subtracted}.

Stand-in labels such as ``"tiny-math (≈Qwen2.5-Math-7B)"`` are matched to the paper's row/column through
the ``(≈...)`` part (:func:`align_paper`). ``attrs`` survive ``copy()``/``loc``; pass the frames the
builders return to :func:`write_table`.

Example
-------
>>> paper = paper_frame("table2")
>>> again = recompute(paper)               # AVG and Delta from the paper's own benchmark cells
>>> float(round(again.loc[("Qwen2.5-Math-7B", DELTA_LABEL), "AVG"], 2))  # printed 5.7; 56.0 - 50.4 = 5.6
5.65
>>> again.attrs["best_sft"][("Qwen2.5-Math-7B", "AVG")]
'WebInstruct-GPT4o-SFT'
>>> frame = table2_frame(cells, ["MATH", "GSM8K"])                        # doctest: +SKIP
>>> write_table(frame, Path("out"), "table2", "SFT vs CFT", paper=paper)  # doctest: +SKIP
{'md': PosixPath('out/table2.md'), 'csv': ..., 'tex': ..., 'png': ...}
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cft_lab.paths import ASSETS_DIR
from cft_lab.train.objectives import OBJECTIVES
from cft_lab.train.objectives import labels as objective_labels

log = logging.getLogger(__name__)

AVG = "AVG"
#: Table 2's rows are the paper's five arms, in its order (a layout, not the list of objectives: other objectives appear
#: in the tables that sweep them); their labels come from conf/objective/*.yaml and the SFT rows that Δ compares CFT
#: with are those of the registry's "sft" family (cft_lab.train.objectives).
METHOD_ORDER = ("base", "sft", "sft_verified", "sft_teacher", "cft")
METHOD_LABELS = objective_labels()
SFT_METHODS = tuple(name for name in METHOD_ORDER if OBJECTIVES[name].family == "sft")
DELTA_LABEL = "Δ = CFT − SFT_best"
SFT_VERIFIED_COLUMN = "SFT-verified"
PAPER_TABLES = ASSETS_DIR / "paper_tables.json"
PAPER_VERSIONS = {"v1": "rows", "v3_v4": "rows_v3_v4"}
#: ``metric``/``value``: "accuracy" rows repeat the accuracy; a layout's extra columns (frame.attrs["extra_columns"],
#: e.g. Table 8's tokens per item) are rows of their own, with ``accuracy`` empty.
CSV_COLUMNS = [
    "model",
    "method",
    "teacher",
    "benchmark",
    "accuracy",
    "ci_low",
    "ci_high",
    "n",
    "status",
    "note",
    "key",
    "paper",
    "paper_v3_v4",
    "metric",
    "value",
    "sd",
    "seeds",
    "quoted",  # a number the paper copied from another report (never the accuracy of a run here)
    "quoted_from",
]

_PAPER_DELTA = "Delta = CFT - SFT_best"
_STATUSES = ("ok", "failed", "missing")
_APPROX = re.compile(r"\(≈\s*([^)]+?)\s*\)")
_HOLE = "—"


@dataclass
class BenchScore:
    """One benchmark's result: accuracy = correct / n; 95% CI of the accuracy in percent. A row trained with several
    seeds (``run.seeds``) pools them: ``correct`` and ``n`` count items x seeds (so the accuracy is the mean over
    seeds), the CI is pooled over items x seeds (``cft_lab.eval.replicates``), ``sd`` is the spread of the seeds'
    accuracies and ``per_seed`` lists them."""

    correct: int
    n: int
    ci_low: float
    ci_high: float
    sd: float | None = None
    per_seed: tuple[float, ...] = ()
    value: float | None = None  # a score that is not a share of items (MT-Bench's mean rating, 1-10)


@dataclass
class CellResult:
    """One sweep cell as the report sees it (any object with these attributes is accepted)."""

    model: str  # paper row label, or a stand-in's own label such as "tiny-math (≈Qwen2.5-Math-7B)"
    method: str  # one of METHOD_ORDER
    teacher: str | None
    status: str  # "ok" | "failed" | "missing"
    error: str | None  # one-line reason when failed/missing
    scores: dict[str, BenchScore]  # benchmark column label -> score
    key: str  # cache key, quoted in the footnotes
    response_source: str | None = None  # "reference" | "self_generated" (Table 6 columns)
    # test-time decoding (Table 8): {"variant", "mode", "temperature", "n"}; where the graded rows are; the cell's
    # scores.json entries by column label (mode statistics, maj@k, pass@k)
    decoding: dict = field(default_factory=dict)
    grade_dir: Path | None = None
    raw_scores: dict = field(default_factory=dict)
    # the training ablations (Tables 4, 5, v4 9 and 10): the data's label, the method bundle's row label, the train
    # stage's pair and token counts, and the run's optimizer steps
    data: str | None = None
    label: str | None = None
    train_examples: dict = field(default_factory=dict)
    steps: int | None = None
    # the row's cells, one per training seed (run.seeds): their result.json and graded folders; the data size
    results: list[dict] = field(default_factory=list)
    grade_dirs: list[Path] = field(default_factory=list)
    data_size: int | None = None
    group: str | None = None  # the row group of a comparison table (Table 3), from run.group
    model_source: str | None = None  # hub | testbed | api (a comparison table lists the paper's rows at paper scale)
    ledger: dict = field(default_factory=dict)  # device time per stage (cft_lab.report.ledger.cell_ledger)


@dataclass
class _Run:
    """One cell's measured values on the requested benchmarks."""

    meta: dict[str, Any]
    values: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    note: str | None = None
    per_seed: dict[str, tuple[float, ...]] = field(default_factory=dict)  # runs with several seeds only

    def sd(self, benches: Sequence[str]) -> dict[str, float]:
        """The sd across seeds per benchmark, and of the seeds' AVG over ``benches`` when every one has them."""
        from statistics import fmean, stdev

        out = {b: stdev(v) for b, v in self.per_seed.items() if len(v) > 1}
        seeds = {len(self.per_seed.get(b, ())) for b in benches}
        if len(seeds) == 1 and min(seeds) > 1:
            out[AVG] = stdev([fmean(self.per_seed[b][i] for b in benches) for i in range(min(seeds))])
        return out


# ----------------------------------------------------------------------------------------- labels


def approx_target(label: Hashable) -> str | None:
    """The paper label a stand-in stands for: ``"tiny (≈Qwen2.5-Math-7B)"`` -> ``"Qwen2.5-Math-7B"``."""
    match = _APPROX.search(label) if isinstance(label, str) else None
    return match.group(1) if match else None


def _label_matches(label: str | None, wanted: str) -> bool:
    return label == wanted or approx_target(label) == wanted


def _one_line(text: Any) -> str:
    return " ".join(str(text).split()) if text else ""


# ------------------------------------------------------------------------------------ cells -> runs


def _measure(cell: CellResult, benchmarks: Sequence[str], meta: dict[str, Any]) -> _Run:
    """Accuracies, CIs and the hole note of one cell (a cell that is not "ok" is all holes)."""
    run = _Run(meta=meta)
    reason = _one_line(cell.error)
    if cell.status != "ok":
        if cell.status not in _STATUSES:
            log.warning("cell %s: unknown status %r, shown as a hole", cell.key, cell.status)
        if cell.status == "missing":
            run.note = reason if reason.startswith("not run") else f"not run: {reason}".rstrip(": ")
        else:
            run.note = f"{cell.status}: {reason or 'no reason recorded'}"
        return run
    unscored = []
    for bench in benchmarks:
        score = cell.scores.get(bench)
        if score is None or score.n <= 0:
            unscored.append(bench)
            continue
        run.values[bench] = score.value if score.value is not None else 100.0 * score.correct / score.n
        run.ci[bench] = (float(score.ci_low), float(score.ci_high))
        run.n[bench] = int(score.n)
        if len(getattr(score, "per_seed", ())) > 1:
            run.per_seed[bench] = tuple(score.per_seed)
    if unscored:
        run.note = "no score for " + ", ".join(unscored)
    return run


def _cell_meta(cell: CellResult | None, model: str, method_label: str) -> dict[str, Any]:
    if cell is None:
        return {"model": model, "method": method_label, "teacher": None, "status": "missing", "key": None}
    return {
        "model": cell.model,
        "method": method_label,
        "teacher": cell.teacher,
        "status": cell.status,
        "key": cell.key,
    }


def _select(
    cands: list[CellResult], teacher: str | None, what: str, hint: str = "pass teacher= to pick one"
) -> CellResult | None:
    """The single cell for one table slot; ambiguity is an error unless ``teacher`` resolves it."""
    if len(cands) <= 1:
        return cands[0] if cands else None
    if teacher is not None:
        matched = [c for c in cands if _label_matches(c.teacher, teacher)]
        if len(matched) == 1:
            return matched[0]
    found = ", ".join(f"{c.key} (teacher={c.teacher!r})" for c in cands)
    raise ValueError(f"{what}: {len(cands)} candidate cells [{found}]; {hint}")


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------- frame assembly


def _assemble(runs: dict[Hashable, _Run], benchmarks: Sequence[str], layout: str) -> pd.DataFrame:
    """Runs as rows (Table 2) or columns (Table 7), with attrs; derived values are NaN until recomputed."""
    labels = list(runs)
    values = pd.DataFrame(
        [[runs[r].values.get(b, np.nan) for b in benchmarks] + [np.nan] for r in labels],
        index=pd.MultiIndex.from_tuples(labels, names=["model", "method"]) if layout == "table2" else pd.Index(labels),
        columns=[*benchmarks, AVG],
        dtype=float,
    )
    axis = 0 if layout == "table2" else 1
    frame = values if axis == 0 else values.T.rename_axis("benchmark")

    def pos(run_label: Hashable, bench: str) -> tuple[Hashable, Hashable]:
        return (run_label, bench) if axis == 0 else (bench, run_label)

    frame.attrs = {
        "layout": layout,
        "run_axis": axis,
        "notes": {r: run.note for r, run in runs.items() if run.note},
        "runs": {r: run.meta for r, run in runs.items()},
        "ci": {pos(r, b): ci for r, run in runs.items() for b, ci in run.ci.items()},
        "n": {pos(r, b): n for r, run in runs.items() for b, n in run.n.items()},
        "sd": {pos(r, b): sd for r, run in runs.items() for b, sd in run.sd(benchmarks).items()},
        "seeds": {r: len(next(iter(run.per_seed.values()))) for r, run in runs.items() if run.per_seed},
    }
    return frame


def _benchmark_labels(frame: pd.DataFrame) -> list[Hashable]:
    """The accuracy columns (rows, for run-as-column layouts): not AVG, not a layout's extra columns."""
    labels = frame.columns if frame.attrs.get("run_axis", 0) == 0 else frame.index
    extra = frame.attrs.get("extra_columns", {})
    return [b for b in labels if b != AVG and b not in extra]


def _delta(block: pd.DataFrame, model: str) -> tuple[pd.Series, dict[tuple[str, str], str]]:
    """Per column: CFT minus the best SFT row (ties -> first in paper order); NaN if an input is NaN."""
    sft_labels = [METHOD_LABELS[m] for m in SFT_METHODS]
    delta = pd.Series(np.nan, index=block.columns, dtype=float)
    best: dict[tuple[str, str], str] = {}
    if not set(sft_labels + [METHOD_LABELS["cft"]]) <= set(block.index):
        return delta, best
    sft = block.loc[sft_labels]
    cft = block.loc[METHOD_LABELS["cft"]]
    for col in block.columns:
        if pd.isna(cft[col]) or sft[col].isna().any():
            continue
        best_label = sft[col].idxmax()
        best[(model, col)] = best_label
        delta[col] = cft[col] - sft.at[best_label, col]
    return delta, best


def _recompute_table2(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    benches = _benchmark_labels(out)
    out[AVG] = out[benches].mean(axis=1, skipna=False)
    best_sft: dict[tuple[str, str], str] = {}
    notes = dict(out.attrs.get("notes", {}))
    for model in _unique(list(out.index.get_level_values(0))):
        block = out.loc[model].drop(index=DELTA_LABEL, errors="ignore")
        delta, best = _delta(block, model)
        best_sft.update(best)
        if (model, DELTA_LABEL) in out.index:
            out.loc[(model, DELTA_LABEL), :] = delta.to_numpy()
            notes.pop((model, DELTA_LABEL), None)
            if delta.isna().any():
                notes[(model, DELTA_LABEL)] = "needs WebInstruct-CFT and all three SFT rows"
    out.attrs.update({"best_sft": best_sft, "notes": notes})
    return out


def recompute(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with AVG (and, for Table 2, Delta) recomputed from its benchmark values.

    Works on :func:`paper_frame` output too, which is how the paper's own arithmetic is checked.
    """
    layout = frame.attrs.get("layout")
    if layout == "table2":
        return _recompute_table2(frame)
    if layout != "table7":
        raise ValueError(f"frame.attrs['layout'] must be 'table2' or 'table7', got {layout!r}")
    out = frame.copy()
    out.loc[AVG] = out.loc[_benchmark_labels(out)].mean(axis=0, skipna=False)
    return out


# ---------------------------------------------------------------------------------- public builders


def table2_frame(cells: Sequence[CellResult], benchmarks: Sequence[str], *, teacher: str | None = None) -> pd.DataFrame:
    """Table 2 (SFT vs CFT per base model); see the module docstring for the layout and attrs.

    ``teacher`` picks among several cells of one (model, method), e.g. CFT cells of a teacher ablation;
    it matches a teacher label exactly or through its ``(≈...)`` alias.
    """
    unknown = {c.method for c in cells} - set(METHOD_ORDER)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; expected {METHOD_ORDER}")
    runs: dict[Hashable, _Run] = {}
    for model in _unique([c.model for c in cells]):
        for method in METHOD_ORDER:
            label = METHOD_LABELS[method]
            cands = [c for c in cells if c.model == model and c.method == method]
            cell = _select(cands, teacher, f"{model} / {label}")
            meta = _cell_meta(cell, model, label)
            runs[(model, label)] = (
                _measure(cell, benchmarks, meta)
                if cell is not None
                else _Run(meta=meta, note="not run (no cell in the sweep)")
            )
        runs[(model, DELTA_LABEL)] = _Run(
            meta={"model": model, "method": DELTA_LABEL, "teacher": None, "status": "derived", "key": None}
        )
    frame = recompute(_assemble(runs, benchmarks, "table2"))
    holes = {r: n for r, n in frame.attrs["notes"].items() if r[1] != DELTA_LABEL}
    log.info("table2: %d models, %d runs with holes", len(runs) // 6, len(holes))
    return frame


def _table7_model(cells: Sequence[CellResult], model: str | None) -> str:
    models = _unique([c.model for c in cells if c.method in ("sft_verified", "cft")])
    if model is not None:
        return model
    if len(models) != 1:
        raise ValueError(f"table7 needs sft_verified/cft cells of exactly one model, found {models}; pass model=")
    return models[0]


def table7_frame(cells: Sequence[CellResult], benchmarks: Sequence[str], *, model: str | None = None) -> pd.DataFrame:
    """Table 7 (CFT teacher ablation): rows = benchmarks + AVG; columns = SFT-verified, one per teacher.

    ``model`` is required only when the cells hold sft_verified/cft cells of more than one model.
    """
    model = _table7_model(cells, model)
    mine = [c for c in cells if c.model == model]
    sft_cell = _select(
        [c for c in mine if c.method == "sft_verified"],
        None,
        f"{model} / SFT-verified",
        "expected one sft_verified cell",
    )
    sft_meta = _cell_meta(sft_cell, model, METHOD_LABELS["sft_verified"])
    runs: dict[Hashable, _Run] = {
        SFT_VERIFIED_COLUMN: _measure(sft_cell, benchmarks, sft_meta)
        if sft_cell is not None
        else _Run(meta=sft_meta, note="not run (no cell in the sweep)")
    }
    cft_cells = [c for c in mine if c.method == "cft"]
    for teacher in _unique([c.teacher for c in cft_cells]):
        cell = _select(
            [c for c in cft_cells if c.teacher == teacher],
            None,
            f"{model} / CFT / {teacher}",
            "expected one cft cell per teacher",
        )
        label = teacher if teacher is not None else "CFT"
        runs[label] = _measure(cell, benchmarks, _cell_meta(cell, model, METHOD_LABELS["cft"]))
    frame = recompute(_assemble(runs, benchmarks, "table7"))
    frame.attrs["model"] = model
    log.info("table7: %s, %d columns, %d with holes", model, len(runs), len(frame.attrs["notes"]))
    return frame


BASE_COLUMN, SELF_COLUMN, REFERENCE_COLUMN = "Base", "Self-generated", "Reference"
TABLE6_COLUMNS = [BASE_COLUMN, SELF_COLUMN, REFERENCE_COLUMN]


def table6_frame(cells: Sequence[CellResult], benchmarks: Sequence[str], *, model: str | None = None) -> pd.DataFrame:
    """Table 6 (who wrote the critiqued responses): rows = benchmarks + AVG; columns = Base, CFT on critiques of
    self-generated responses, CFT on critiques of the dataset's reference responses. Laid out like Table 7 (runs as
    columns)."""
    if model is None:
        models = _unique([c.model for c in cells])
        if len(models) != 1:
            raise ValueError(f"table6 needs cells of exactly one model, found {models}; pass model=")
        model = models[0]
    mine = [c for c in cells if c.model == model]
    runs: dict[Hashable, _Run] = {}
    for column, method, source in (
        (BASE_COLUMN, "base", None),
        (SELF_COLUMN, "cft", "self_generated"),
        (REFERENCE_COLUMN, "cft", "reference"),
    ):
        cands = [c for c in mine if c.method == method and (source is None or c.response_source == source)]
        cell = _select(cands, None, f"{model} / {column}", f"expected one {method} cell ({column})")
        meta = _cell_meta(cell, model, METHOD_LABELS[method])
        runs[column] = _measure(cell, benchmarks, meta) if cell is not None else _Run(meta=meta, note="not run")
    frame = recompute(_assemble(runs, benchmarks, "table7"))
    frame.attrs["model"] = model
    return frame


def paper_frame(table: str, version: str = "v1", path: Path = PAPER_TABLES) -> pd.DataFrame:
    """The paper's printed ``table2``/``table6``/``table7`` (``version`` "v1" or "v3_v4") in this module's layout
    (Table 6's "Reference" (v1) / "Other-generated" (v3, v4) column is labelled "Reference")."""
    if table not in ("table2", "table6", "table7") or version not in PAPER_VERSIONS:
        raise ValueError(f"supported: table in ('table2', 'table6', 'table7'), version in {list(PAPER_VERSIONS)}")
    spec = json.loads(Path(path).read_text(encoding="utf-8"))[table]
    rows = pd.DataFrame(spec[PAPER_VERSIONS[version]])
    if table == "table2":
        rows["method"] = rows["method"].replace({_PAPER_DELTA: DELTA_LABEL})
        frame = rows.set_index(["model", "method"])[spec["columns"][2:]].astype(float)
    elif table == "table6":
        rows = rows.rename(columns={"Other-generated": REFERENCE_COLUMN})
        frame = rows.set_index("task").rename_axis("benchmark")[TABLE6_COLUMNS].astype(float)
    else:
        frame = rows.set_index("task").rename_axis("benchmark")[spec["columns"][1:]].astype(float)
    frame.attrs = {
        "layout": "table2" if table == "table2" else "table7",
        "run_axis": 0 if table == "table2" else 1,
        "version": version,
        "title": spec.get("title", ""),
        "notes": {},
        "runs": {},
        "ci": {},
        "n": {},
    }
    if table in ("table6", "table7"):
        frame.attrs["model"] = "Qwen2.5-Math-7B"
    return frame


def ci_bounds(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(low, high) frames aligned with ``frame``; NaN where there is no measured CI (AVG, Delta, holes)."""
    low = pd.DataFrame(np.nan, index=frame.index, columns=frame.columns)
    high = low.copy()
    for (row, col), (lo, hi) in frame.attrs.get("ci", {}).items():
        low.at[row, col] = lo
        high.at[row, col] = hi
    return low, high


def _resolve(label: Hashable, known: set[Hashable]) -> Hashable | None:
    if label in known:
        return label
    if isinstance(label, tuple):
        alt: Hashable = tuple(approx_target(x) or x for x in label)
    else:
        alt = approx_target(label)
    return alt if alt in known else None


def align_paper(frame: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """``paper``'s numbers on ``frame``'s labels (stand-ins matched through ``(≈label)``); NaN elsewhere."""
    out = pd.DataFrame(np.nan, index=frame.index, columns=frame.columns)
    rows, cols = set(paper.index), set(paper.columns)
    for row in frame.index:
        prow = _resolve(row, rows)
        for col in frame.columns:
            pcol = _resolve(col, cols)
            if prow is not None and pcol is not None:
                out.at[row, col] = paper.at[prow, pcol]
    return out
