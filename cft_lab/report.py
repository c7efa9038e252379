"""Reproduced-vs-paper tables (Tables 2 and 7 of arXiv 2501.17703) as pandas frames and report files.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

AVG = "AVG"
METHOD_ORDER = ("base", "sft", "sft_verified", "sft_teacher", "cft")
METHOD_LABELS = {
    "base": "Base",
    "sft": "WebInstruct-SFT",
    "sft_verified": "WebInstruct-verified-SFT",
    "sft_teacher": "WebInstruct-GPT4o-SFT",
    "cft": "WebInstruct-CFT",
}
SFT_METHODS = ("sft", "sft_verified", "sft_teacher")
DELTA_LABEL = "Δ = CFT − SFT_best"
SFT_VERIFIED_COLUMN = "SFT-verified"
PAPER_TABLES = Path(__file__).resolve().parent / "assets" / "paper_tables.json"
PAPER_VERSIONS = {"v1": "rows", "v3_v4": "rows_v3_v4"}
CSV_COLUMNS = ["model", "method", "teacher", "benchmark", "accuracy", "ci_low", "ci_high", "n",
               "status", "note", "key", "paper"]

_PAPER_DELTA = "Delta = CFT - SFT_best"
_STATUSES = ("ok", "failed", "missing")
_APPROX = re.compile(r"\(≈\s*([^)]+?)\s*\)")
_HOLE = "—"


@dataclass
class BenchScore:
    """One benchmark's result: accuracy = correct / n; 95% CI of the accuracy in percent."""

    correct: int
    n: int
    ci_low: float
    ci_high: float


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


@dataclass
class _Run:
    """One cell's measured values on the requested benchmarks."""

    meta: dict[str, Any]
    values: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    note: str | None = None


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
        run.values[bench] = 100.0 * score.correct / score.n
        run.ci[bench] = (float(score.ci_low), float(score.ci_high))
        run.n[bench] = int(score.n)
    if unscored:
        run.note = "no score for " + ", ".join(unscored)
    return run


def _cell_meta(cell: CellResult | None, model: str, method_label: str) -> dict[str, Any]:
    if cell is None:
        return {"model": model, "method": method_label, "teacher": None, "status": "missing", "key": None}
    return {"model": cell.model, "method": method_label, "teacher": cell.teacher,
            "status": cell.status, "key": cell.key}


def _select(cands: list[CellResult], teacher: str | None, what: str,
            hint: str = "pass teacher= to pick one") -> CellResult | None:
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
        index=pd.MultiIndex.from_tuples(labels, names=["model", "method"]) if layout == "table2"
        else pd.Index(labels), columns=[*benchmarks, AVG], dtype=float)
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
    }
    return frame


def _benchmark_labels(frame: pd.DataFrame) -> list[Hashable]:
    labels = frame.columns if frame.attrs.get("layout", "table2") == "table2" else frame.index
    return [b for b in labels if b != AVG]


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


def table2_frame(cells: Sequence[CellResult], benchmarks: Sequence[str], *,
                 teacher: str | None = None) -> pd.DataFrame:
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
            runs[(model, label)] = (_measure(cell, benchmarks, meta) if cell is not None
                                    else _Run(meta=meta, note="not run (no cell in the sweep)"))
        runs[(model, DELTA_LABEL)] = _Run(meta={"model": model, "method": DELTA_LABEL, "teacher": None,
                                                "status": "derived", "key": None})
    frame = recompute(_assemble(runs, benchmarks, "table2"))
    holes = {r: n for r, n in frame.attrs["notes"].items() if r[1] != DELTA_LABEL}
    log.info("table2: %d models, %d runs with holes", len(runs) // 6, len(holes))
    return frame


def _table7_model(cells: Sequence[CellResult], model: str | None) -> str:
    models = _unique([c.model for c in cells if c.method in ("sft_verified", "cft")])
    if model is not None:
        return model
    if len(models) != 1:
        raise ValueError(f"table7 needs sft_verified/cft cells of exactly one model, found {models}; "
                         "pass model=")
    return models[0]


def table7_frame(cells: Sequence[CellResult], benchmarks: Sequence[str], *,
                 model: str | None = None) -> pd.DataFrame:
    """Table 7 (CFT teacher ablation): rows = benchmarks + AVG; columns = SFT-verified, one per teacher.

    ``model`` is required only when the cells hold sft_verified/cft cells of more than one model.
    """
    model = _table7_model(cells, model)
    mine = [c for c in cells if c.model == model]
    sft_cell = _select([c for c in mine if c.method == "sft_verified"], None, f"{model} / SFT-verified",
                       "expected one sft_verified cell")
    sft_meta = _cell_meta(sft_cell, model, METHOD_LABELS["sft_verified"])
    runs: dict[Hashable, _Run] = {
        SFT_VERIFIED_COLUMN: _measure(sft_cell, benchmarks, sft_meta) if sft_cell is not None
        else _Run(meta=sft_meta, note="not run (no cell in the sweep)")}
    cft_cells = [c for c in mine if c.method == "cft"]
    for teacher in _unique([c.teacher for c in cft_cells]):
        cell = _select([c for c in cft_cells if c.teacher == teacher], None, f"{model} / CFT / {teacher}",
                       "expected one cft cell per teacher")
        label = teacher if teacher is not None else "CFT"
        runs[label] = _measure(cell, benchmarks, _cell_meta(cell, model, METHOD_LABELS["cft"]))
    frame = recompute(_assemble(runs, benchmarks, "table7"))
    frame.attrs["model"] = model
    log.info("table7: %s, %d columns, %d with holes", model, len(runs), len(frame.attrs["notes"]))
    return frame


def paper_frame(table: str, version: str = "v1", path: Path = PAPER_TABLES) -> pd.DataFrame:
    """The paper's printed ``table2``/``table7`` (``version`` "v1" or "v3_v4") in this module's layout."""
    if table not in ("table2", "table7") or version not in PAPER_VERSIONS:
        raise ValueError(f"supported: table in ('table2', 'table7'), version in {list(PAPER_VERSIONS)}")
    spec = json.loads(Path(path).read_text(encoding="utf-8"))[table]
    rows = pd.DataFrame(spec[PAPER_VERSIONS[version]])
    if table == "table2":
        rows["method"] = rows["method"].replace({_PAPER_DELTA: DELTA_LABEL})
        frame = rows.set_index(["model", "method"])[spec["columns"][2:]].astype(float)
    else:
        frame = rows.set_index("task").rename_axis("benchmark")[spec["columns"][1:]].astype(float)
    frame.attrs = {"layout": table, "run_axis": 0 if table == "table2" else 1, "version": version,
                   "title": spec.get("title", ""), "notes": {}, "runs": {}, "ci": {}, "n": {}}
    if table == "table7":
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


# ---------------------------------------------------------------------------------------- rendering


@dataclass
class _Grid:
    """A rendered table, format-neutral (Unicode symbols; md and tex escape them their own way)."""

    header: list[str]
    rows: list[list[str]]
    n_label_cols: int
    breaks: set[int]
    footnotes: list[str]
    legend: str


def _fmt_number(value: float, signed: bool) -> str:
    value = round(float(value), 1) + 0.0  # no "-0.0"
    if signed and value != 0:
        return f"{value:+.1f}".replace("-", "−")
    return f"{value:.1f}"


def _fmt_ci(value: float, lo: float, hi: float, style: str) -> str:
    below, above = value - lo, hi - value
    if style == "pm" or (style == "auto" and abs(round(below, 1) - round(above, 1)) <= 0.1):
        return f"{value:.1f} ± {(hi - lo) / 2:.1f}"
    return f"{value:.1f} [{lo:.1f}, {hi:.1f}]"


def _fmt_cell(value: float, ci: tuple[float, float] | None, paper: float, signed: bool,
              style: str) -> str:
    if pd.isna(value):
        text = _HOLE
    elif ci is not None and style != "none":
        text = _fmt_ci(value, ci[0], ci[1], style)
    else:
        text = _fmt_number(value, signed)
    if not pd.isna(paper):
        text += f" (paper {_fmt_number(paper, signed)})"
    return text


def _footnotes(frame: pd.DataFrame) -> tuple[dict[Hashable, str], list[str]]:
    """Marker per run label with a note (†1, †2, ...) and the footnote lines."""
    notes, runs = frame.attrs.get("notes", {}), frame.attrs.get("runs", {})
    order = frame.index if frame.attrs.get("run_axis", 0) == 0 else frame.columns
    markers, lines = {}, []
    for label in [r for r in order if r in notes]:
        markers[label] = f"†{len(markers) + 1}"
        name = " / ".join(label) if isinstance(label, tuple) else str(label)
        key = runs.get(label, {}).get("key")
        lines.append(f"{markers[label]} {name}{f' (cell {key})' if key else ''}: {notes[label]}")
    return markers, lines


_CI_LEGEND = {"auto": "x ± h = value ± half-width of the 95% CI ([lo, hi] where the CI is asymmetric)",
              "pm": "x ± h = value ± half-width of the 95% CI", "bracket": "x [lo, hi] = value [95% CI]"}


def _legend(frame: pd.DataFrame, paper: pd.DataFrame | None, style: str) -> str:
    see = " (see the footnotes)" if frame.attrs.get("notes") else ""
    parts = ["Accuracy in %", f"{_HOLE} = no result{see}"]
    if style != "none" and frame.attrs.get("ci"):
        parts.append(_CI_LEGEND[style])
    if frame.attrs.get("layout") == "table2":
        parts.append("AVG = mean of the benchmark columns; Δ = WebInstruct-CFT − the best of the three "
                     "SFT rows, per column")
    if paper is not None:
        parts.append(f"(paper x) = the paper's number ({paper.attrs.get('version', 'paper')})")
    return "; ".join(parts) + "."


def _row_labels(frame: pd.DataFrame) -> tuple[list[list[str]], set[int]]:
    """Label cells per row (a MultiIndex's first level only where it changes) and the group breaks."""
    labels, breaks, previous = [], set(), None
    for i, row in enumerate(frame.index):
        cells = [str(x) for x in (row if isinstance(row, tuple) else (row,))]
        if len(cells) > 1:
            if i and cells[0] != previous:
                breaks.add(i)
            previous, cells[0] = cells[0], ("" if cells[0] == previous else cells[0])
        elif row == AVG and i:
            breaks.add(i)
        labels.append(cells)
    return labels, breaks


def _grid(frame: pd.DataFrame, paper: pd.DataFrame | None, style: str) -> _Grid:
    aligned = align_paper(frame, paper) if paper is not None else None
    ci, runs_are_rows = frame.attrs.get("ci", {}), frame.attrs.get("run_axis", 0) == 0
    markers, footnotes = _footnotes(frame)
    names = [str(n).capitalize() if n else "Row" for n in frame.index.names]
    header = names + [str(c) + ("" if runs_are_rows else markers.get(c, "")) for c in frame.columns]
    labels, breaks = _row_labels(frame)
    rows = []
    for row, row_labels in zip(frame.index, labels):
        if runs_are_rows:
            row_labels[-1] += markers.get(row, "")
        signed = isinstance(row, tuple) and row[-1] == DELTA_LABEL
        cells = [_fmt_cell(frame.at[row, col], ci.get((row, col)),
                           np.nan if aligned is None else aligned.at[row, col], signed, style)
                 for col in frame.columns]
        rows.append(row_labels + cells)
    return _Grid(header, rows, len(names), breaks, footnotes, _legend(frame, paper, style))


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _render_md(grid: _Grid, title: str) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(_md_escape(c) for c in cells) + " |"

    align = [":---"] * grid.n_label_cols + ["---:"] * (len(grid.header) - grid.n_label_cols)
    out = [f"### {_md_escape(_one_line(title))}", "", line(grid.header), "| " + " | ".join(align) + " |"]
    out += [line(r) for r in grid.rows]
    out += [""] + [f"- {_md_escape(f)}" for f in grid.footnotes] + ([""] if grid.footnotes else [])
    out += [f"_{_md_escape(grid.legend)}_", ""]
    return "\n".join(out)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"±": r"$\pm$", "—": "---", "Δ": r"$\Delta$", "−": "$-$", "≈": r"$\approx$"}


def _tex_escape(text: str) -> str:
    text = "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)
    text = re.sub(r"†(\d+)", r"\\textsuperscript{\\dag\1}", text)
    for uni, tex in _TEX_UNICODE.items():
        text = text.replace(uni, tex)
    return text


def _render_tex(grid: _Grid, title: str) -> str:
    ncols = len(grid.header)
    spec = "l" * grid.n_label_cols + "r" * (ncols - grid.n_label_cols)
    out = [f"% {_one_line(title)}", f"% {grid.legend}", "% requires \\usepackage{booktabs}",
           f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(_tex_escape(h) for h in grid.header) + r" \\", r"\midrule"]
    for i, row in enumerate(grid.rows):
        if i in grid.breaks:
            out.append(r"\midrule")
        out.append(" & ".join(_tex_escape(c) for c in row) + r" \\")
    out.append(r"\bottomrule")
    for note in grid.footnotes:
        out.append(f"\\multicolumn{{{ncols}}}{{l}}{{\\footnotesize {_tex_escape(note)}}} \\\\")
    out.append(r"\end{tabular}")
    return "\n".join(out) + "\n"


def _long_table(frame: pd.DataFrame, paper: pd.DataFrame | None) -> pd.DataFrame:
    """Tidy rows: one per (run, benchmark incl. AVG); see ``CSV_COLUMNS``."""
    aligned = align_paper(frame, paper) if paper is not None else None
    axis, attrs = frame.attrs.get("run_axis", 0), frame.attrs
    run_labels, benches = (frame.index, frame.columns) if axis == 0 else (frame.columns, frame.index)
    records = []
    for run in run_labels:
        meta = attrs.get("runs", {}).get(run) or _paper_meta(frame, run)
        for bench in benches:
            pos = (run, bench) if axis == 0 else (bench, run)
            value = frame.at[pos]
            lo, hi = attrs.get("ci", {}).get(pos, (np.nan, np.nan))
            records.append({
                **{k: meta.get(k) for k in ("model", "method", "teacher", "status", "key")},
                "benchmark": bench, "accuracy": value, "ci_low": lo, "ci_high": hi,
                "n": attrs.get("n", {}).get(pos, np.nan),
                "note": attrs.get("notes", {}).get(run) if pd.isna(value) else None,
                "paper": np.nan if aligned is None else aligned.at[pos]})
    return pd.DataFrame.from_records(records, columns=CSV_COLUMNS)


def _paper_meta(frame: pd.DataFrame, run: Hashable) -> dict[str, Any]:
    """Run metadata for frames without ``attrs['runs']`` (e.g. :func:`paper_frame`)."""
    if isinstance(run, tuple):
        return {"model": run[0], "method": run[1], "status": "paper"}
    return {"model": frame.attrs.get("model"), "method": run, "status": "paper"}


# --------------------------------------------------------------------------------------------- plot


_Panel = tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]


def _panels(frame: pd.DataFrame, paper: pd.DataFrame | None) -> list[_Panel]:
    """(title, values, low, high, paper) per subplot; each frame is bars (rows) x benchmark groups."""
    low, high = ci_bounds(frame)
    ref = align_paper(frame, paper) if paper is not None else frame * np.nan
    benches = _benchmark_labels(frame)
    if frame.attrs.get("layout") == "table7":
        return [(str(frame.attrs.get("model", "")),
                 *(f.loc[benches].T for f in (frame, low, high, ref)))]
    panels = []
    for model in _unique(list(frame.index.get_level_values(0))):
        rows = [r for r in frame.loc[model].index if r != DELTA_LABEL]
        panels.append((str(model), *(f.loc[model].loc[rows, benches] for f in (frame, low, high, ref))))
    return panels


def _bar_panel(ax: Any, title: str, values: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame,
               ref: pd.DataFrame) -> None:
    """Grouped bars (one group per benchmark), CI whiskers where known, ``×`` for holes, ``—`` paper."""
    x = np.arange(values.shape[1])
    width = 0.8 / max(len(values), 1)
    for i, series in enumerate(values.index):
        h = values.loc[series].to_numpy(dtype=float)
        lo, hi = low.loc[series].to_numpy(dtype=float), high.loc[series].to_numpy(dtype=float)
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, np.nan_to_num(h), width, label=str(series))
        known = ~(np.isnan(h) | np.isnan(lo) | np.isnan(hi))
        if known.any():
            ax.errorbar(pos[known], h[known], yerr=np.vstack([h - lo, hi - h])[:, known], fmt="none",
                        ecolor="black", elinewidth=0.8, capsize=2)
        for p in pos[np.isnan(h)]:
            ax.text(p, 1, "×", ha="center", va="bottom", fontsize=8, color="red")
        ref_h = ref.loc[series].to_numpy(dtype=float)
        if not np.isnan(ref_h).all():
            ax.scatter(pos, ref_h, marker="_", s=120, color="black", zorder=3,
                       label="paper" if i == 0 else None)
    ax.set_xticks(x, [str(c) for c in values.columns], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _plot(frame: pd.DataFrame, paper: pd.DataFrame | None, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(frame, paper)
    n_groups = max(p[1].shape[1] for p in panels)
    fig = Figure(figsize=(max(7.0, 1.3 * n_groups + 4), 3.2 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        _bar_panel(ax, *panel)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)


# -------------------------------------------------------------------------------------------- write


def write_table(frame: pd.DataFrame, out_dir: Path, stem: str, title: str,
                paper: pd.DataFrame | None = None, *, ci_style: str = "auto") -> dict[str, Path]:
    """Write ``{stem}.md``, ``.csv``, ``.tex`` and ``.png`` under ``out_dir``; return them by suffix.

    ``paper`` (e.g. ``paper_frame("table2")``) adds "(paper x)" to each cell, a ``paper`` CSV column and
    black markers on the bars. ``ci_style``: "auto" (± if symmetric at 0.1 precision, else [lo, hi]),
    "pm", "bracket" or "none".
    """
    if ci_style not in ("auto", "pm", "bracket", "none"):
        raise ValueError(f"ci_style must be auto|pm|bracket|none, got {ci_style!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("md", "csv", "tex", "png")}
    grid = _grid(frame, paper, ci_style)
    paths["md"].write_text(_render_md(grid, title), encoding="utf-8")
    paths["tex"].write_text(_render_tex(grid, title), encoding="utf-8")
    _long_table(frame, paper).to_csv(paths["csv"], index=False)
    _plot(frame, paper, paths["png"], title)
    log.info("wrote %s.{md,csv,tex,png} to %s (%d footnotes)", stem, out_dir, len(grid.footnotes))
    return paths


__all__ = [
    "AVG", "CSV_COLUMNS", "DELTA_LABEL", "METHOD_LABELS", "METHOD_ORDER", "PAPER_TABLES", "SFT_METHODS",
    "SFT_VERIFIED_COLUMN", "BenchScore", "CellResult", "align_paper", "approx_target", "ci_bounds",
    "paper_frame", "recompute", "table2_frame", "table7_frame", "write_table",
]
