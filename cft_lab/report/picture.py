"""A local picture of what a table's W&B view shows, drawn with matplotlib from the same data (no W&B needed).

``write_picture(path, title, frame, curves, counts)`` writes one PNG, top to bottom:

1. grouped bars of test accuracy by method per benchmark, 95% CI whiskers (a panel per model, as the rendered
   table's plot: ``cft_lab.report.render``);
2. the selection curves of every trained arm on one axis, the selected checkpoint marked with a star;
3. per pair of arms, the paired outcomes pooled over the benchmarks (both right / only A / only B / both wrong, the
   counts of the McNemar test) as one stacked bar;
4. the table itself, as the rendered Markdown shows it (value ± CI half-width).

``curves``: {run label: {"steps": [...], "accuracy": [...], "selected": (step, accuracy)}}; ``counts``: the
``paired_counts`` rows (cft_lab.report.items) with a ``pair`` column.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from cft_lab.report.items import OUTCOMES
from cft_lab.report.render import _bar_panel, _panels

_APPROX = re.compile(r"\s*\(≈[^)]*\)")


def _short(label: object, width: int = 44) -> str:
    """A label without its ``(≈paper label)`` part, wrapped (the picture's axes stay wide)."""
    text = " · ".join(map(str, label)) if isinstance(label, tuple) else str(label)
    return "\n".join(textwrap.wrap(_APPROX.sub("", text), width)) or text


_OUTCOME_COLORS = {"both right": "#4c9f70", "only A": "#e0a030", "only B": "#3a7dc9", "both wrong": "#b8b8b8"}


def _selection(ax, curves: dict[str, dict]) -> None:
    if not curves:
        ax.text(0.5, 0.5, "no trained arm: no selection curve", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    for i, (label, c) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.plot(c["steps"], c["accuracy"], marker="o", ms=3, color=color, label=_short(label))
        step, acc = c["selected"]
        ax.scatter([step], [acc], marker="*", s=140, color=color, edgecolor="black", zorder=3)
    ax.set_xlabel("training step (checkpoint)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("checkpoint selection: every arm on one axis, ★ = selected", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _paired(ax, counts: pd.DataFrame) -> None:
    if counts.empty:
        ax.text(0.5, 0.5, "no pair of finished arms", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    pooled = counts.groupby("pair", sort=False)[["both_right", "only_a", "only_b", "both_wrong"]].sum()
    y = np.arange(len(pooled))
    left = np.zeros(len(pooled))
    for outcome, column in zip(OUTCOMES, pooled.columns):
        width = pooled[column].to_numpy(dtype=float)
        ax.barh(y, width, left=left, color=_OUTCOME_COLORS[outcome], label=outcome)
        for yi, (lo, w) in enumerate(zip(left, width)):
            if w and w >= 0.04 * pooled.iloc[yi].sum():  # a label that fits its segment
                ax.text(lo + w / 2, yi, str(int(w)), ha="center", va="center", fontsize=7)
        left += width
    ax.set_yticks(y, [_short(p, 36) for p in pooled.index], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("items (pooled over benchmarks)")
    ax.set_title("paired outcomes per pair of arms (A vs B), aligned by item id", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _table(ax, frame: pd.DataFrame) -> None:
    """The table's numbers (1 decimal, ± CI half-width where measured), holes as "—"."""
    ci = frame.attrs.get("ci", {})
    text = []
    for row in frame.index:
        cells = []
        for col in frame.columns:
            v = frame.at[row, col]
            lo_hi = ci.get((row, col))
            cells.append("—" if pd.isna(v) else f"{v:.1f}" + (f" ± {(lo_hi[1] - lo_hi[0]) / 2:.1f}" if lo_hi else ""))
        text.append(cells)
    labels = [_short(r, 60) for r in frame.index]
    ax.set_axis_off()
    tab = ax.table(cellText=text, rowLabels=labels, colLabels=[str(c) for c in frame.columns], loc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    tab.scale(1.0, 1.2)
    ax.set_title("the rendered table", fontsize=10)


def write_picture(path: Path, title: str, frame: pd.DataFrame, curves: dict[str, dict], counts: pd.DataFrame) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = _panels(frame, None)
    n_groups = max(p[1].shape[1] for p in bars)
    heights = [3.0] * len(bars) + [3.2, 0.5 + 0.35 * max(1, counts["pair"].nunique() if len(counts) else 1)]
    heights.append(0.6 + 0.22 * len(frame.index))
    fig = Figure(figsize=(max(11.0, 1.3 * n_groups + 7), sum(heights) + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(heights), 1, gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axes, bars):
        _bar_panel(ax, *panel)
    _selection(axes[len(bars)], curves)
    _paired(axes[len(bars) + 1], counts)
    _table(axes[len(bars) + 2], frame)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=100)
    return path
