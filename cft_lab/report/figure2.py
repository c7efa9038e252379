"""Figure 2 (training dynamics; v1/v3 Fig. 2): validation accuracy against training step for each trained arm.

The curves are the checkpoint-selection scores the select stage already stored (``store/select/<key>/selection.json``:
every checkpoint's step and validation accuracy, the selected one and the last; ``cft_lab.pipeline.store``), read for
every cell of the figure's sweep (``experiments/table/figure2*.yaml``: Table 2's trained cells, shared through the
cache). Nothing is re-scored. An arm whose selection is not in the store is a hole named in the footnotes ("not run",
"failed: ...", "selection unfinished"), never an error; a store where nothing ran still gets its files.

``render(table, configs, out_dir, quiet)`` writes ``<out_dir>/<table>.{png,csv,md,tex}``:

* png: one panel per base model, one line per arm, the selected checkpoint a star; on a panel of the paper's model
  (Qwen2.5-Math-7B itself, not a stand-in) the paper's approximate MATH plateaus as dashed lines labelled
  "paper (approx., MATH)" and its "CFT converges around step 30" as a dotted line: the paper did not publish its
  curves, only these values in its text (``assets/paper_tables.json``, ``figure2_training_dynamics``);
* csv: one row per stored checkpoint (model, arm, step, accuracy, selected/last flags, validation benchmark, cell
  and select keys) and one row per missing arm (status and note, no step);
* md/tex: per arm the number of checkpoints and the first, best, selected and last accuracy with their steps, then
  the paper's approximate plateaus (MATH and Minerva-Math test accuracy, not our validation set: a reference).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cft_lab.config import Config
from cft_lab.options import ModelSource
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store
from cft_lab.report.frames import _HOLE, METHOD_LABELS, PAPER_TABLES, _unique
from cft_lab.report.render import _Grid, _render_md, _render_tex
from cft_lab.train.objectives import spec

log = logging.getLogger(__name__)

#: The paper's names of Figure 2's arms (its legend): objective -> "CFT", "SFT-G", "SFT-V".
PAPER_ARMS = {"cft": "CFT", "sft_teacher": "SFT-G", "sft_verified": "SFT-V"}
#: The paper's model of Figure 2: its reference lines are drawn on this model's panel only.
PAPER_MODEL = "Qwen2.5-Math-7B"
CSV_COLUMNS = [
    "model",
    "arm",
    "method",
    "step",
    "accuracy",
    "selected",
    "last",
    "benchmark",
    "status",
    "note",
    "key",
    "select_key",
]


@dataclass
class Curve:
    """One arm of one model: its stored selection, or why there is none."""

    model: str
    arm: str
    method: str
    key: str
    select_key: str | None
    paper_model: bool
    status: str = "missing"  # "ok" | "missing" | "failed" | "untrained"
    note: str | None = None
    benchmark: str | None = None
    strategy: str | None = None
    points: list[dict[str, Any]] = field(default_factory=list)  # [{"step", "accuracy"}] in step order
    selected: int | None = None
    last: int | None = None


def paper_plateaus(path: Path = PAPER_TABLES) -> dict[str, Any]:
    """The paper's approximate plateaus by objective (``{"cft": {"MATH": 80, "Minerva-Math": 40}, ...}``), the
    entry's title and notes."""
    spec_ = json.loads(Path(path).read_text(encoding="utf-8"))["figure2_training_dynamics"]
    by_name = {v: k for k, v in PAPER_ARMS.items()}
    rows = {}
    for r in spec_["rows"]:
        name = str(r["method"]).split(" ")[0]  # "SFT-G (WebInstruct-GPT4o)" -> "SFT-G"
        rows[by_name[name]] = {"label": r["method"], "MATH": r["MATH_approx"], "Minerva-Math": r["Minerva-Math_approx"]}
    return {"rows": rows, "title": spec_.get("title", ""), "notes": spec_.get("notes", "")}


def arm_label(cfg: Config) -> str:
    """The arm's row label with the paper's Figure 2 name: ``"WebInstruct-GPT4o-SFT (SFT-G)"``."""
    label = cfg.run.label or METHOD_LABELS.get(cfg.objective.name, cfg.objective.name)
    alias = PAPER_ARMS.get(cfg.objective.name)
    return f"{label} ({alias})" if alias else label


def read_curve(cfg: Config) -> Curve:
    """The stored selection of one cell (or the reason it has none)."""
    plan = plan_cell(cfg)
    store = Store(cfg.paths.outputs)
    trains = spec(cfg.objective).trains
    curve = Curve(
        model=cfg.model.label,
        arm=arm_label(cfg),
        method=cfg.run.method or cfg.objective.name,
        key=plan.key,
        select_key=plan.key_of("select") if trains else None,
        paper_model=cfg.model.label == PAPER_MODEL and cfg.model.source == ModelSource.hub,
    )
    if curve.select_key is None:
        curve.status, curve.note = "untrained", f"objective={cfg.objective.name} trains nothing: no training curve"
        return curve
    folder = store.path("select", curve.select_key)
    if not store.done("select", curve.select_key):
        result = store.cell_result(plan.key) or {}
        if result.get("status") == "failed":
            first = str(result.get("error") or "no reason recorded").strip().splitlines() or [""]
            curve.status, curve.note = "failed", f"failed: {first[0][:200]}"
        elif folder.is_dir():
            curve.note = f"selection unfinished (select/{curve.select_key} has no DONE.json)"
        else:
            curve.note = "not run"
        return curve
    sel = json.loads((folder / "selection.json").read_text(encoding="utf-8"))
    curve.status, curve.benchmark, curve.strategy = "ok", sel.get("benchmark"), sel.get("strategy")
    curve.points = sorted(
        ({"step": int(c["step"]), "accuracy": c.get("accuracy")} for c in sel.get("checkpoints", [])),
        key=lambda p: p["step"],
    )
    curve.selected, curve.last = int(sel["selected"]["step"]), int(sel["last"]["step"])
    if all(p["accuracy"] is None for p in curve.points):
        curve.note = f"strategy {curve.strategy}: the checkpoints were not scored (no curve)"
    return curve


def curves_frame(curves: Sequence[Curve]) -> pd.DataFrame:
    """The tidy CSV rows: one per stored checkpoint, one per arm without a stored selection."""
    rows: list[dict[str, Any]] = []
    for c in curves:
        base = {"model": c.model, "arm": c.arm, "method": c.method, "key": c.key, "select_key": c.select_key}
        if not c.points:
            rows.append({**base, "status": c.status, "note": c.note, "benchmark": c.benchmark})
        for p in c.points:
            rows.append(
                {
                    **base,
                    "step": p["step"],
                    "accuracy": np.nan if p["accuracy"] is None else float(p["accuracy"]),
                    "selected": p["step"] == c.selected,
                    "last": p["step"] == c.last,
                    "benchmark": c.benchmark,
                    "status": c.status,
                    "note": c.note,
                }
            )
    frame = pd.DataFrame.from_records(rows, columns=CSV_COLUMNS)
    return frame.astype({"step": "Int64", "selected": "boolean", "last": "boolean"})


def _at(c: Curve, step: int | None) -> str:
    acc = next((p["accuracy"] for p in c.points if p["step"] == step), None)
    return _HOLE if acc is None else f"{acc:.1f} @ {step}"


def _summary_grid(curves: Sequence[Curve], footnotes: list[str], legend: str) -> _Grid:
    header = ["Model", "Arm", "Checkpoints", "First", "Best", "Selected", "Last", "Validation set"]
    rows, breaks, previous, marks = [], set(), None, 0
    for i, c in enumerate(curves):
        arm = c.arm
        if c.status != "ok" or c.note:
            marks += 1
            arm += f"†{marks}"
        scored = [p for p in c.points if p["accuracy"] is not None]
        best = max(scored, key=lambda p: (p["accuracy"], -p["step"]))["step"] if scored else None
        cells = [str(len(c.points)) if c.points else _HOLE]
        cells += [_at(c, c.points[0]["step"] if c.points else None), _at(c, best), _at(c, c.selected)]
        cells += [_at(c, c.last), c.benchmark or _HOLE]
        if i and c.model != previous:
            breaks.add(i)
        rows.append([c.model if c.model != previous else "", arm, *cells])
        previous = c.model
    return _Grid(header, rows, 2, breaks, footnotes, legend)


def _paper_grid(paper: dict[str, Any], curves: Sequence[Curve]) -> _Grid:
    ours = {c.method: c.arm for c in curves}
    rows = [
        [ours.get(m, METHOD_LABELS.get(m, m)), r["label"], f"≈{r['MATH']:g}", f"≈{r['Minerva-Math']:g}"]
        for m, r in paper["rows"].items()
    ]
    notes = [f"{paper['title']}. {paper['notes']}"]
    legend = (
        "Approximate plateaus of the paper's test accuracy on MATH and Minerva-Math (%), as quoted in its text: the "
        "curves were not published. A reference, not a measurement; our curves above are validation accuracy on the "
        "selection set, another quantity (and at tiny scale another model)"
    )
    return _Grid(["Arm (ours)", "Paper's Figure 2 arm", "MATH ≈", "Minerva-Math ≈"], rows, 2, set(), notes, legend)


def _plot(curves: Sequence[Curve], paper: dict[str, Any], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = _unique([c.model for c in curves]) or ["(no cell)"]
    colors = {m: f"C{i % 10}" for i, m in enumerate(_unique([c.method for c in curves]))}
    fig = Figure(figsize=(max(8.0, 4.6 * len(models)), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        mine = [c for c in curves if c.model == model]
        drawn, missing = 0, []
        for c in mine:
            pts = [p for p in c.points if p["accuracy"] is not None]
            if not pts:
                missing.append(f"{c.arm}: {c.note or c.status}")
                continue
            color = colors[c.method]
            ax.plot([p["step"] for p in pts], [p["accuracy"] for p in pts], marker="o", ms=3, color=color, label=c.arm)
            sel = next((p for p in pts if p["step"] == c.selected), None)
            if sel is not None:
                ax.scatter(
                    [sel["step"]], [sel["accuracy"]], marker="*", s=160, color=color, edgecolor="black", zorder=3
                )
            drawn += 1
        if mine and mine[0].paper_model:  # the paper's approximate plateaus: reference lines, never data points
            for c in mine:
                ref = paper["rows"].get(c.method)
                if ref is not None:
                    ax.axhline(ref["MATH"], color=colors[c.method], ls="--", lw=0.9, alpha=0.8,
                               label=f"paper (approx., MATH): {PAPER_ARMS[c.method]} ≈{ref['MATH']:g}")  # fmt: skip
            ax.axvline(30, color="grey", ls=":", lw=0.9, label="paper: CFT converges ≈ step 30")
        if missing:
            ax.text(0.02, 0.02, "missing:\n" + "\n".join(missing), transform=ax.transAxes, fontsize=7, color="red",
                    va="bottom", ha="left", wrap=True)  # fmt: skip
        if not drawn and not missing:
            ax.text(0.5, 0.5, "no cell", ha="center", va="center", transform=ax.transAxes)
        bench = _unique([c.benchmark for c in mine if c.benchmark])
        ax.set_xlabel("training step (checkpoint)")
        ax.set_ylabel(f"validation accuracy (%){' on ' + ', '.join(bench) if bench else ''}")
        ax.set_title(f"{model}  (★ = selected checkpoint)", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0, **({} if drawn else {"right": 60}))
    handles, labels = [], []  # one legend for every panel, below them (the arms are the same in each)
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(
            handles, labels, fontsize=7, loc="outside lower center", ncols=min(3 if len(models) > 1 else 2, len(labels))
        )
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)


def render(table: str, configs: Sequence[Config], out_dir: Path | None = None, quiet: bool = False) -> dict:
    """Write the figure and its tables from the store; returns ``{"frame", "paths", "cells", "configs", "view"}``
    (``cells``: the sweep's cell results, whose holes a sweep's end reports as failures; ``view``: False, the
    figure has no W&B table view of its own)."""
    from cft_lab.report.tables import collect

    curves = [read_curve(cfg) for cfg in configs]
    frame = curves_frame(curves)
    paper = paper_plateaus()
    out_dir = Path(out_dir or Path(configs[0].paths.outputs) / "tables")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{table}.{ext}" for ext in ("md", "csv", "tex", "png")}
    trained = [c for c in curves if c.status != "untrained"]
    done = [c for c in trained if c.status == "ok"]
    title = f"figure2 ({table}): validation accuracy vs training step, {len(done)}/{len(trained)} arms stored"
    footnotes: list[str] = []
    for c in [c for c in curves if c.status != "ok" or c.note]:
        footnotes.append(f"†{len(footnotes) + 1} {c.model} / {c.arm} (cell {c.key}): {c.note or c.status}")
    if not done:
        footnotes.append(
            f"The store at {Store(configs[0].paths.outputs).root} holds none of these arms' selections: run the "
            f"sweep (python -m cft_lab table={table}; make figure2) first."
        )
    legend = (
        "Validation accuracy in % at each saved checkpoint (the checkpoint selection's scores, greedy); "
        "First / Best / Selected / Last = accuracy @ step; Best = the highest (first on ties), Selected = the "
        f"checkpoint the cell evaluates; {_HOLE} = no stored selection (see the footnotes)"
    )
    grids = [(_summary_grid(curves, footnotes, legend), title)]
    grids.append((_paper_grid(paper, curves), "The paper's Figure 2 (Qwen2.5-Math-7B): approximate plateaus"))
    paths["md"].write_text("\n".join(_render_md(g, t) for g, t in grids), encoding="utf-8")
    paths["tex"].write_text("\n".join(_render_tex(g, t) for g, t in grids), encoding="utf-8")
    frame.to_csv(paths["csv"], index=False)
    _plot(curves, paper, paths["png"], title)
    log.info("wrote %s.{md,csv,tex,png} to %s (%d/%d arms stored)", table, out_dir, len(done), len(trained))
    if not quiet:
        print(paths["md"].read_text(encoding="utf-8"), flush=True)
    return {"frame": frame, "paths": paths, "cells": collect(list(configs)), "configs": configs, "view": False}
