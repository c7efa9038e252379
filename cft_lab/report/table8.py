"""Table 8 (inference methods x temperature; docs/protocol.md §4.7, §10) as a frame, and its accuracy-vs-compute plot.

Rows, per model, in the paper's order: direct inference at T = 0, 0.1, 0.3, 0.6; single-pass and two-stage
self-critique at T = 0.1, 0.3, 0.6; then, beyond the paper, at each T > 0: self-verified best-of-k (``self_verify``
cells), and two rows derived from the direct cell's k samples at the compute of the two-stage row: **maj@k** (the
majority of the first k samples' answers) and **oracle pass@k** (any of the first k right: an upper bound no
verifier reaches), with k = the two-stage row's generated tokens per item / the direct row's, rounded, in [1, n].
The direct row itself is the first sample of its cell.

Columns: the benchmarks (accuracy with its 95% CI), then ``Tokens/item`` (generated tokens per item and sample:
every solve and critique call of a chain), ``Rounds`` (solve calls per chain), ``Δ vs direct`` (points) and
``p (McNemar)``: the exact paired test of the row against direct inference at the same temperature, over the items
of every benchmark column pooled (matched by item id).

``write_tokens_plot(frame, path)`` draws accuracy against tokens per item: one point per row, a panel per model and
benchmark, 95% CI whiskers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cft_lab.eval import metrics
from cft_lab.report.frames import METHOD_LABELS, PAPER_TABLES, PAPER_VERSIONS, CellResult, _measure, _Run, _unique

log = logging.getLogger(__name__)

MODE_LABELS = {
    "direct": "Direct inference",
    "single_pass": "Single-pass self-critique",
    "two_stage": "Two-stage self-critique",
    "self_verify": "Self-verified best-of-{k}",
}
PAPER_TEMPERATURES = {"direct": (0.0, 0.1, 0.3, 0.6), "single_pass": (0.1, 0.3, 0.6), "two_stage": (0.1, 0.3, 0.6)}
TOKENS, ROUNDS, DELTA, P_VALUE = "Tokens/item", "Rounds", "Δ vs direct", "p (McNemar)"
EXTRA_COLUMNS = {TOKENS: "{:.0f}", ROUNDS: "{:.2f}", DELTA: "{:+.1f}", P_VALUE: "{:.3f}"}


def row_label(mode: str, temperature: float, k: int | None = None) -> str:
    """``"Two-stage self-critique, T=0.1"``: the paper's method name and temperature (Table 8's row key)."""
    return f"{MODE_LABELS[mode].format(k=k)}, T={temperature:.1f}"


def _outcomes(cell: CellResult, columns: Sequence[str]) -> dict[str, tuple[list[bool], list[str]]]:
    """Per graded item id (prefixed by its column): every sample's correctness in the table's grading mode, and its
    extracted answer (what maj@k votes over)."""
    out: dict[str, tuple[list[bool], list[str]]] = {}
    if cell.grade_dir is None:
        return out
    for label in columns:
        name = cell.decoding.get("benchmarks", {}).get(label)
        path = Path(cell.grade_dir) / f"{name}.jsonl"
        if not name or not path.is_file():
            continue
        mode = cell.raw_scores.get(label, {}).get("mode", "paper")
        for line in path.read_text(encoding="utf-8").splitlines():
            g = json.loads(line)
            out[f"{label}/{g['id']}"] = (
                [bool(s["correct"][mode]) for s in g["samples"]],
                [str(s.get("pred", {}).get(mode, "")) for s in g["samples"]],
            )
    return out


def _stats(cell: CellResult, label: str) -> dict:
    """The mode statistics of one column: from scores.json, or recomputed from the graded rows (cells graded before
    those statistics were recorded)."""
    raw = cell.raw_scores.get(label, {})
    if "inference" in raw:
        return raw["inference"]
    from cft_lab.eval.engine import mode_stats

    name = cell.decoding.get("benchmarks", {}).get(label)
    path = Path(cell.grade_dir or ".") / f"{name}.jsonl"
    if not name or not path.is_file():
        return {}
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    return mode_stats(rows, raw.get("mode", "paper"))


def _pooled(cell: CellResult, columns: Sequence[str], key: str) -> float:
    """A per-sample statistic pooled over the columns, weighted by each column's items."""
    num = den = 0.0
    for label in columns:
        s, score = _stats(cell, label), cell.scores.get(label)
        if key in s and score is not None:
            num += s[key] * score.n
            den += score.n
    return num / den if den else np.nan


def _derived_run(meta: dict, columns: Sequence[str], flags: dict[str, bool], n_boot: int) -> _Run:
    """A row computed from per-item outcomes (maj@k, pass@k): accuracy and bootstrap CI per column."""
    run = _Run(meta=meta)
    for label in columns:
        items = [v for k, v in flags.items() if k.startswith(f"{label}/")]
        if not items:
            continue
        s = metrics.score_items(items, n_boot=n_boot)
        run.values[label], run.ci[label], run.n[label] = s["accuracy"], (s["boot_low"], s["boot_high"]), s["n"]
    if len(run.values) < len(columns):
        run.note = "needs the direct cell's graded samples"
    return run


def _paired(base: dict[str, bool], other: dict[str, bool]) -> tuple[float, float]:
    """(accuracy difference in points, exact McNemar p) of ``other`` against ``base`` on their common items."""
    common = sorted(set(base) & set(other))
    if not common:
        return np.nan, np.nan
    a, b = [base[k] for k in common], [other[k] for k in common]
    b01 = sum((not x) and y for x, y in zip(a, b))
    b10 = sum(x and (not y) for x, y in zip(a, b))
    return 100.0 * (sum(b) - sum(a)) / len(common), metrics.mcnemar_exact_p(b01, b10)


def table8_frame(cells: Sequence[CellResult], columns: Sequence[str], *, n_boot: int = 2000) -> pd.DataFrame:
    """Table 8 from its sweep's cells (see the module doc); layout "table8", runs are rows, index (model, method)."""
    runs: dict[Hashable, _Run] = {}
    extras: dict[Hashable, dict[str, float]] = {}
    for model in _unique([c.model for c in cells]):
        mine = [c for c in cells if c.model == model]
        methods = _unique([c.method for c in mine])
        for method in methods:  # a model evaluated as several arms (its base and its CFT cell): a block each
            label = model if len(methods) == 1 else f"{model} · {METHOD_LABELS.get(method, method)}"
            _model_rows(model, [c for c in mine if c.method == method], columns, runs, extras, n_boot, label)
    index = pd.MultiIndex.from_tuples(list(runs), names=["model", "method"])
    frame = pd.DataFrame(
        [
            [runs[r].values.get(c, np.nan) for c in columns] + [extras[r].get(x, np.nan) for x in EXTRA_COLUMNS]
            for r in runs
        ],
        index=index,
        columns=[*columns, *EXTRA_COLUMNS],
        dtype=float,
    )
    from cft_lab.prompts.self_critique import NOTES

    frame.attrs = {
        "layout": "table8",
        "run_axis": 0,
        "notes": {r: run.note for r, run in runs.items() if run.note},
        "runs": {r: run.meta for r, run in runs.items()},
        "ci": {(r, b): ci for r, run in runs.items() for b, ci in run.ci.items()},
        "n": {(r, b): n for r, run in runs.items() for b, n in run.n.items()},
        "extra_columns": dict(EXTRA_COLUMNS),
        "legend": [
            f"{TOKENS} = generated tokens per item and sample (every call of a chain); {ROUNDS} = solve calls "
            f"per chain; {DELTA} and {P_VALUE} = the row against direct inference at the same temperature, "
            "items of every column pooled (exact McNemar test)",
            "maj@k and oracle pass@k use the direct row's first k samples, k matched to the two-stage row's "
            "tokens per item (at most the direct cell's samples: compare the Tokens/item column)",
        ],
        "footnotes": [NOTES],
    }
    return frame


def _model_rows(
    model: str, cells: list[CellResult], columns: Sequence[str], runs: dict, extras: dict, n_boot: int, label_model: str
) -> None:
    def order(c: CellResult) -> tuple:
        d = c.decoding
        return (list(MODE_LABELS).index(d.get("mode", "direct")), float(d.get("temperature", 0.0)))

    direct: dict[float, dict[str, bool]] = {}
    samples: dict[float, dict[str, tuple[list[bool], list[str]]]] = {}
    tokens: dict[tuple[str, float], float] = {}
    for cell in sorted(cells, key=order):
        d = cell.decoding
        mode, t = d.get("mode", "direct"), float(d.get("temperature", 0.0))
        k = d.get("candidates") if mode == "self_verify" else None
        label = (label_model, row_label(mode, t, k))
        meta = {"model": model, "method": label[1], "teacher": cell.teacher, "status": cell.status, "key": cell.key}
        runs[label] = _measure(cell, columns, meta)
        outcome = _outcomes(cell, columns) if cell.status == "ok" else {}
        first = {item: v[0][0] for item, v in outcome.items() if v[0]}
        tok = _pooled(cell, columns, "tokens_per_sample")
        tokens[(mode, t)] = tok
        extras[label] = {TOKENS: tok, ROUNDS: _pooled(cell, columns, "mean_rounds")}
        if mode == "direct":
            direct[t] = first
            samples[t] = outcome
        elif t in direct:
            extras[label][DELTA], extras[label][P_VALUE] = _paired(direct[t], first)
    for t, outcome in samples.items():
        n = min((len(v[0]) for v in outcome.values()), default=1)
        staged = tokens.get(("two_stage", t))
        if n < 2 or staged is None or np.isnan(staged) or not tokens.get(("direct", t)):
            continue
        k = int(min(n, max(1, round(staged / tokens[("direct", t)]))))
        maj = {key: bool(metrics.maj_at_k([v[1]], [v[0]], k)) for key, v in outcome.items()}
        oracle = {key: any(v[0][:k]) for key, v in outcome.items()}
        for name, flags in ((f"maj@{k} (compute-matched)", maj), (f"oracle pass@{k} (compute-matched)", oracle)):
            label = (label_model, f"{name}, T={t:.1f}")
            runs[label] = _derived_run(
                {"model": model, "method": label[1], "teacher": None, "status": "derived", "key": None},
                columns,
                flags,
                n_boot,
            )
            extras[label] = {TOKENS: k * tokens[("direct", t)], ROUNDS: float(k)}
            extras[label][DELTA], extras[label][P_VALUE] = _paired(direct[t], flags)


def paper_frame(version: str = "v1", path: Path = PAPER_TABLES) -> pd.DataFrame:
    """The paper's Table 8 (``version`` "v1" or "v3_v4") in this layout (model "Qwen2.5-Math-7B")."""
    spec = json.loads(Path(path).read_text(encoding="utf-8"))["table8"]
    modes = {v.format(k=8): k for k, v in MODE_LABELS.items()}
    rows = spec[PAPER_VERSIONS[version]]
    index = pd.MultiIndex.from_tuples(
        [("Qwen2.5-Math-7B", row_label(modes[r["method"]], r["temperature"])) for r in rows], names=["model", "method"]
    )
    frame = pd.DataFrame(
        [[r["MATH"], r["Minerva-Math"]] for r in rows], index=index, columns=["MATH", "Minerva-Math"], dtype=float
    )
    frame.attrs = {
        "layout": "table8",
        "run_axis": 0,
        "version": version,
        "title": spec.get("title", ""),
        "notes": {},
        "runs": {},
        "ci": {},
        "n": {},
    }
    return frame


def write_tokens_plot(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Accuracy against generated tokens per item, one point per row, a panel per (model, benchmark)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cft_lab.report.frames import _benchmark_labels, ci_bounds

    low, high = ci_bounds(frame)
    models = _unique(list(frame.index.get_level_values(0)))
    benches = _benchmark_labels(frame)
    fig = Figure(figsize=(5.0 * len(benches), 3.6 * len(models)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(models), len(benches), squeeze=False)
    colors: dict[str, Any] = {}
    for r, model in enumerate(models):
        block = frame.loc[model]
        for c, bench in enumerate(benches):
            ax = axes[r][c]
            for method in block.index:
                x, y = block.at[method, TOKENS], block.at[method, bench]
                if np.isnan(x) or np.isnan(y):
                    continue
                family = method.split(", T=")[0]
                color = colors.setdefault(family, f"C{len(colors) % 10}")
                lo, hi = low.at[(model, method), bench], high.at[(model, method), bench]
                yerr = None if np.isnan(lo) else [[y - lo], [hi - y]]
                ax.errorbar(
                    [x],
                    [y],
                    yerr=yerr,
                    fmt="o",
                    color=color,
                    capsize=2,
                    ms=4,
                    label=family if family not in [h.get_label() for h in ax.lines] else None,
                )
                ax.annotate(method.split(", T=")[-1], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_xlabel("generated tokens per item (log)")
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{model} · {bench}", fontsize=9)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncols=min(4, len(labels)))
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    return path
