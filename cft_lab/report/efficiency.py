"""Data efficiency: each arm's test score against the number of training records (``make data_efficiency``).

The sweep (``experiments/table/data_efficiency_tiny.yaml``) trains every arm of one base on the first N records of the
testbed's train split (``data.testbed.n_train``; the splits are prefix-stable, so the 250 records are inside the 500,
and so on), each arm at its tuned hyper-parameters. :func:`efficiency_frame` lays the cells out as rows (arm, N) with
the benchmark columns, AVG and the examples the arm actually trained on (verified-SFT keeps only the records judged
right); the Base row is the untrained model. :func:`write_curve` draws AVG against N per arm (log scale; whiskers =
sd across seeds where there are several), Base as a dashed line.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cft_lab.report.ablations import EXAMPLES, _rows
from cft_lab.report.frames import AVG, METHOD_LABELS, METHOD_ORDER, CellResult, _cell_meta, _measure, _Run

BASE_N = "—"


def efficiency_frame(cells: Sequence[CellResult], benchmarks: Sequence[str]) -> pd.DataFrame:
    """Rows (arm label, N) in the paper's arm order then by N; columns = benchmarks, AVG, Examples."""
    runs: dict[Hashable, _Run] = {}
    extras: dict[Hashable, dict[str, float]] = {}
    ordered = sorted(cells, key=lambda c: (METHOD_ORDER.index(c.method), c.data_size or 0))
    for cell in ordered:
        label = METHOD_LABELS[cell.method]
        key = (label, BASE_N if cell.method == "base" else str(cell.data_size))
        if key in runs:  # the base row is one cell whatever N is
            continue
        runs[key] = _measure(cell, benchmarks, _cell_meta(cell, label, key[1]))
        extras[key] = {EXAMPLES: (cell.train_examples or {}).get("examples", np.nan)}
    frame = _rows(runs, benchmarks, extras, "data_efficiency")
    frame.index = frame.index.set_names(["arm", "records"])
    frame.attrs["model"] = cells[0].model if cells else ""
    frame.attrs["legend"] = [
        "records = training questions (the first N of the train split); Examples = pairs the arm trained on"
    ]
    return frame


def write_curve(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """AVG against the number of records, one line per arm (see the module doc)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    sds = frame.attrs.get("sd", {})
    for arm in dict.fromkeys(frame.index.get_level_values(0)):
        rows = [r for r in frame.index if r[0] == arm]
        if rows and rows[0][1] == BASE_N:
            value = frame.at[rows[0], AVG]
            if not np.isnan(value):
                ax.axhline(value, color="gray", linestyle="--", label=f"{arm} ({value:.1f})")
            continue
        xs = [int(r[1]) for r in rows]
        ys = [frame.at[r, AVG] for r in rows]
        err = [sds.get((r, AVG), np.nan) for r in rows]
        ax.errorbar(xs, ys, yerr=None if np.isnan(err).all() else err, marker="o", capsize=3, label=arm)
    ax.set_xscale("log", base=2)
    ticks = sorted({int(r[1]) for r in frame.index if r[1] != BASE_N})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("training records (questions)")
    ax.set_ylabel("test AVG accuracy (%)")
    ax.set_title(f"{title}\n{frame.attrs.get('model', '')}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=110)
    return path
