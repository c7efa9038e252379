"""Rendering a table frame (``cft_lab.report.frames``) to Markdown, CSV, LaTeX and a PNG plot.

``write_table(frame, out_dir, stem, title, paper=None)`` writes ``{stem}.md/.csv/.tex/.png`` and returns their
paths. Markdown cells read "60.0 ± 5.0 (paper 79.4)"; holes show "—" with a footnote giving the reason; the CSV is
tidy (one row per run x benchmark); the LaTeX uses booktabs; the plot has one panel per model (Table 2) with CI
whiskers and the paper's value as a tick.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cft_lab.report.frames import (
    _HOLE,
    AVG,
    CSV_COLUMNS,
    DELTA_LABEL,
    _benchmark_labels,
    _one_line,
    _unique,
    align_paper,
    ci_bounds,
)

log = logging.getLogger(__name__)


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


QUOTED_MARK = "‡"


def _fmt_cell(
    value: float,
    ci: tuple[float, float] | None,
    paper: float,
    signed: bool,
    style: str,
    later: float = np.nan,
    sd: float | None = None,
    quoted: dict | None = None,
) -> str:
    if quoted is not None:  # the paper copied this number from another report: never shown as ours
        q = f"{_fmt_number(quoted['value'], signed)}{QUOTED_MARK}"
        if pd.isna(value):
            return q
        text = _fmt_ci(value, ci[0], ci[1], style) if ci is not None and style != "none" else _fmt_number(value, signed)
        return f"{text} (quoted {q})"
    if pd.isna(value):
        text = _HOLE
    elif sd is not None:  # several seeds: mean (sd across seeds) [CI pooled over items x seeds]
        text = f"{_fmt_number(value, signed)} (sd {sd:.1f})"
        if ci is not None and style != "none":
            text += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    elif ci is not None and style != "none":
        text = _fmt_ci(value, ci[0], ci[1], style)
    else:
        text = _fmt_number(value, signed)
    if not pd.isna(paper) and not pd.isna(later) and round(paper, 1) != round(later, 1):
        text += f" (paper {_fmt_number(paper, signed)} v1, {_fmt_number(later, signed)} v3/v4)"
    elif not pd.isna(paper):
        text += f" (paper {_fmt_number(paper, signed)})"
    return text


def _fmt_extra(value: float, fmt: str, quoted: dict | None, paper: float) -> str:
    """A layout's extra column (counts, device-hours): its own format, quoted or beside the paper's like the rest."""

    def show(v: float) -> str:
        return fmt.format(v).replace("-", "−")

    if quoted is not None:
        q = show(quoted["value"]) + QUOTED_MARK
        return q if pd.isna(value) else f"{show(value)} (quoted {q})"
    text = _HOLE if pd.isna(value) else show(value)
    return text if pd.isna(paper) else f"{text} (paper {show(paper)})"


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
    return markers, lines + list(frame.attrs.get("footnotes", [])) + _quoted_footnotes(frame)


def _quoted_footnotes(frame: pd.DataFrame) -> list[str]:
    """One line per source of quoted cells: which cells, from where."""
    by_source: dict[str, list[str]] = {}
    for (row, col), q in frame.attrs.get("quoted", {}).items():
        name = str(row[-1]) if isinstance(row, tuple) else str(row)
        by_source.setdefault(q["source"], []).append(f"{name} {col}")
    return [f"{QUOTED_MARK} quoted, not measured: {', '.join(cells)} ({src})" for src, cells in by_source.items()]


_CI_LEGEND = {
    "auto": "x ± h = value ± half-width of the 95% CI ([lo, hi] where the CI is asymmetric)",
    "pm": "x ± h = value ± half-width of the 95% CI",
    "bracket": "x [lo, hi] = value [95% CI]",
}


def _legend(frame: pd.DataFrame, paper: pd.DataFrame | None, style: str) -> str:
    see = " (see the footnotes)" if frame.attrs.get("notes") else ""
    parts = ["Accuracy in %", f"{_HOLE} = no result{see}"]
    if style != "none" and frame.attrs.get("ci"):
        parts.append(_CI_LEGEND[style])
    if frame.attrs.get("sd"):
        seeds = sorted(set(frame.attrs.get("seeds", {}).values()))
        parts.append(
            f"rows trained with {'/'.join(map(str, seeds))} seeds: x (sd s) [lo, hi] = mean over seeds (sd of the "
            "seeds' accuracies) [95% CI pooled over items × seeds: items resampled with all their seeds]"
        )
    axis_labels = frame.columns if frame.attrs.get("run_axis", 0) == 0 else frame.index
    if frame.attrs.get("layout") == "table2":
        parts.append(
            "AVG = mean of the benchmark columns; Δ = WebInstruct-CFT − the best of the three SFT rows, per column"
        )
    elif AVG in axis_labels:
        parts.append("AVG = mean of the benchmark " + ("columns" if frame.attrs.get("run_axis", 0) == 0 else "rows"))
    parts += list(frame.attrs.get("legend", []))
    if frame.attrs.get("quoted"):
        parts.append(
            f"x{QUOTED_MARK} = quoted: a number the paper copied from another report, not measured by any run here "
            f"(never in a measured AVG)"
        )
    if paper is not None:
        later = " (v1 and v3/v4 where they differ)" if paper.attrs.get("later") is not None else ""
        parts.append(f"(paper x) = the paper's number ({paper.attrs.get('version', 'paper')}){later}")
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


def _later(frame: pd.DataFrame, paper: pd.DataFrame | None) -> pd.DataFrame | None:
    """The later version's numbers (``paper.attrs["later"]``) on ``frame``'s labels, if the paper frame has them."""
    later = None if paper is None else paper.attrs.get("later")
    return None if later is None else align_paper(frame, later)


def _grid(frame: pd.DataFrame, paper: pd.DataFrame | None, style: str) -> _Grid:
    aligned = align_paper(frame, paper) if paper is not None else None
    later = _later(frame, paper)
    ci, runs_are_rows = frame.attrs.get("ci", {}), frame.attrs.get("run_axis", 0) == 0
    sds = frame.attrs.get("sd", {})
    markers, footnotes = _footnotes(frame)
    names = [str(n).capitalize() if n else "Row" for n in frame.index.names]
    header = names + [str(c) + ("" if runs_are_rows else markers.get(c, "")) for c in frame.columns]
    labels, breaks = _row_labels(frame)
    rows = []
    for row, row_labels in zip(frame.index, labels):
        if runs_are_rows:
            row_labels[-1] += markers.get(row, "")
        signed = isinstance(row, tuple) and row[-1] == DELTA_LABEL
        extra = frame.attrs.get("extra_columns", {})
        quoted = frame.attrs.get("quoted", {})
        cells = [
            _fmt_extra(
                frame.at[row, col],
                extra[col],
                quoted.get((row, col)),
                np.nan if aligned is None or col not in aligned.columns else aligned.at[row, col],
            )
            if col in extra
            else _fmt_cell(
                frame.at[row, col],
                ci.get((row, col)),
                np.nan if aligned is None else aligned.at[row, col],
                signed,
                style,
                np.nan if later is None else later.at[row, col],
                sd=sds.get((row, col)),
                quoted=quoted.get((row, col)),
            )
            for col in frame.columns
        ]
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


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_TEX_UNICODE = {"±": r"$\pm$", "—": "---", "Δ": r"$\Delta$", "−": "$-$", "≈": r"$\approx$", "‡": r"\ddag{}"}


def _tex_escape(text: str) -> str:
    text = "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)
    text = re.sub(r"†(\d+)", r"\\textsuperscript{\\dag\1}", text)
    for uni, tex in _TEX_UNICODE.items():
        text = text.replace(uni, tex)
    return text


def _render_tex(grid: _Grid, title: str) -> str:
    ncols = len(grid.header)
    spec = "l" * grid.n_label_cols + "r" * (ncols - grid.n_label_cols)
    out = [
        f"% {_one_line(title)}",
        f"% {grid.legend}",
        "% requires \\usepackage{booktabs}",
        f"\\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_tex_escape(h) for h in grid.header) + r" \\",
        r"\midrule",
    ]
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
    later = _later(frame, paper)
    axis, attrs = frame.attrs.get("run_axis", 0), frame.attrs
    run_labels, benches = (frame.index, frame.columns) if axis == 0 else (frame.columns, frame.index)
    records = []
    extra = attrs.get("extra_columns", {})
    for run in run_labels:
        meta = attrs.get("runs", {}).get(run) or _paper_meta(frame, run)
        for bench in benches:
            pos = (run, bench) if axis == 0 else (bench, run)
            value = frame.at[pos]
            lo, hi = attrs.get("ci", {}).get(pos, (np.nan, np.nan))
            q = attrs.get("quoted", {}).get(pos)
            if bench in extra:
                records.append(
                    {
                        **{k: meta.get(k) for k in ("model", "method", "teacher", "status", "key")},
                        **({"status": "quoted"} if q is not None and pd.isna(value) else {}),
                        "metric": bench,
                        "value": value,
                        "quoted": np.nan if q is None else q["value"],
                        "quoted_from": None if q is None else q["source"],
                        "paper": np.nan if aligned is None or bench not in aligned.columns else aligned.at[pos],
                    }
                )
                continue
            records.append(
                {
                    **{k: meta.get(k) for k in ("model", "method", "teacher", "status", "key")},
                    **({"status": "quoted"} if q is not None and pd.isna(value) else {}),
                    "quoted": np.nan if q is None else q["value"],
                    "quoted_from": None if q is None else q["source"],
                    "benchmark": bench,
                    "metric": "accuracy",
                    "value": value,
                    "accuracy": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": attrs.get("n", {}).get(pos, np.nan),
                    "note": attrs.get("notes", {}).get(run) if pd.isna(value) else None,
                    "paper": np.nan if aligned is None else aligned.at[pos],
                    "paper_v3_v4": np.nan if later is None else later.at[pos],
                    "sd": attrs.get("sd", {}).get(pos, np.nan),
                    "seeds": attrs.get("seeds", {}).get(run, 1 if meta.get("status") == "ok" else np.nan),
                }
            )
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
    if frame.attrs.get("run_axis", 0) == 1:  # runs are columns (Tables 5, 6, 7)
        return [(str(frame.attrs.get("model", "")), *(f.loc[benches].T for f in (frame, low, high, ref)))]
    panels = []
    for model in _unique(list(frame.index.get_level_values(0))):
        rows = [r for r in frame.loc[model].index if r != DELTA_LABEL]
        panels.append((str(model), *(f.loc[model].loc[rows, benches] for f in (frame, low, high, ref))))
    return panels


def _bar_panel(
    ax: Any, title: str, values: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame, ref: pd.DataFrame
) -> None:
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
            ax.errorbar(
                pos[known],
                h[known],
                yerr=np.vstack([h - lo, hi - h])[:, known],
                fmt="none",
                ecolor="black",
                elinewidth=0.8,
                capsize=2,
            )
        for p in pos[np.isnan(h)]:
            ax.text(p, 1, "×", ha="center", va="bottom", fontsize=8, color="red")
        ref_h = ref.loc[series].to_numpy(dtype=float)
        if not np.isnan(ref_h).all():
            ax.scatter(pos, ref_h, marker="_", s=120, color="black", zorder=3, label="paper" if i == 0 else None)
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


def write_table(
    frame: pd.DataFrame,
    out_dir: Path,
    stem: str,
    title: str,
    paper: pd.DataFrame | None = None,
    *,
    ci_style: str = "auto",
) -> dict[str, Path]:
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
