"""The saved view of one table: a declarative specification, and the W&B report it becomes.

:func:`view_spec` describes what the view shows, in terms of the runs it reads and the keys those runs log; it is
what ``python -m cft_lab dashboard`` writes to ``<outputs>/dashboards/<table>.json`` offline. Its ``panels`` are a
list of::

    {"section", "kind", "title", "runset": "cells" | "table", "runs": [run ids], "keys": [logged keys], ...}

``kind`` is ``bar`` (``metrics``: one test accuracy per benchmark, a bar per run), ``line`` (``x``, ``y``: the
selection curves of every trained arm on one axis, the selected checkpoint as a series of one point per run),
``runs_table`` (``columns``: W&B runs-table columns, the paper table's columns: model, method, teacher, one accuracy
per benchmark, AVG; ``config_keys``), ``table`` (``table_key``: a W&B Table logged by the runs) or ``image``
(``media_keys``). ``keys`` lists every history/summary/table/media key the panel reads from each of its ``runs``,
so a test can check them against the run files. ``runsets`` give each runset's W&B filter and its runs.

:func:`build_report` turns a specification into a ``wandb_workspaces.reports.v2.Report`` (W&B's own report API,
the ``dashboard`` extra); building it needs no server, saving it does. :func:`wire_form` is the request body W&B
would receive for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cft_lab.report import tracking

SECTIONS = ("Test accuracy", "Checkpoint selection", "Runs", "Rendered table", "Per-item comparison")
#: W&B Tables and images the table run logs (cft_lab.report.dashboard.log_table_run); the rendered table is logged
#: under the table's own name (and ``<table>_plot``), as the sweep's callback always did.
ACCURACY_TABLE, PAIRED_COUNTS, PAIRED_ITEMS, PICTURE = "accuracy_ci", "paired_counts", "paired_items", "dashboard"


@dataclass
class RunRef:
    """One W&B run the view reads: a cell's run (``cell_key`` set) or the table's run."""

    run_id: str
    name: str
    label: str  # the table's run label, e.g. "tiny-math (≈Qwen2.5-Math-7B) · WebInstruct-CFT"
    cell_key: str | None = None
    trained: bool = False  # has a selection curve
    benchmarks: tuple[str, ...] = ()
    select_benchmark: str | None = None


def _filter_in(key: str, values: list[str]) -> str:
    """A W&B runset filter in the report API's expression syntax."""
    quoted = ", ".join(repr(v) for v in values)
    return f"Config('{key}') in [{quoted}]"


def view_spec(
    *, table: str, layout: str, title: str, cells: list[RunRef], table_run: RunRef | None, table_key: str, markdown: str
) -> dict:
    """The view of ``table`` (module docstring): ``cells`` are the finished cells' runs in table order,
    ``table_run`` the run that holds the table-level W&B Tables (None when nothing was logged to W&B),
    ``markdown`` the rendered table."""
    benchmarks = list(dict.fromkeys(b for c in cells for b in c.benchmarks))
    cell_ids = [c.run_id for c in cells]
    trained = [c for c in cells if c.trained and c.select_benchmark]
    panels: list[dict[str, Any]] = []

    def panel(section: str, kind: str, title: str, runset: str, runs: list[str], keys: list[str], **extra) -> None:
        panels.append(
            {"section": section, "kind": kind, "title": title, "runset": runset, "runs": runs, "keys": keys, **extra}
        )

    for bench in benchmarks:
        runs = [c.run_id for c in cells if bench in c.benchmarks]
        key = tracking.score_key(bench)
        panel("Test accuracy", "bar", f"{bench}: test accuracy (%)", "cells", runs, [key], metrics=[key])
    panel(
        "Test accuracy",
        "bar",
        "AVG: test accuracy (%)",
        "cells",
        cell_ids,
        [tracking.TEST_AVG],
        metrics=[tracking.TEST_AVG],
    )
    for val in dict.fromkeys(c.select_benchmark for c in trained):
        runs = [c.run_id for c in trained if c.select_benchmark == val]
        y = [tracking.select_key(str(val)), tracking.SELECTED]
        panel(
            "Checkpoint selection",
            "line",
            f"validation accuracy on {val} per checkpoint; {tracking.SELECTED} marks the selected one",
            "cells",
            runs,
            [tracking.SELECT_STEP, *y],
            x=tracking.SELECT_STEP,
            y=y,
        )
    summary_keys = [tracking.score_key(b) for b in benchmarks] + [tracking.TEST_AVG]
    config_keys = ["model_label", "method_label", "teacher_label", "decoding", "cell_key"]
    panel(
        "Runs",
        "runs_table",
        "the paper table's columns, one row per cell",
        "cells",
        cell_ids,
        summary_keys,
        config_keys=config_keys,
        columns=[
            "run:displayName",
            *[f"config:{k}.value" for k in config_keys],
            *[f"summary:{k}" for k in summary_keys],
        ],
    )
    panel(
        "Per-item comparison",
        "table",
        "graded items of every cell",
        "cells",
        cell_ids,
        [tracking.ITEMS_TABLE],
        table_key=tracking.ITEMS_TABLE,
    )
    if table_run is not None:
        tid = [table_run.run_id]
        panel(
            "Test accuracy",
            "image",
            "accuracy by method per benchmark, 95% CI whiskers",
            "table",
            tid,
            [PICTURE],
            media_keys=[PICTURE],
        )
        panel(
            "Test accuracy",
            "table",
            "accuracy and 95% CI per run and benchmark",
            "table",
            tid,
            [ACCURACY_TABLE],
            table_key=ACCURACY_TABLE,
        )
        panel("Rendered table", "table", title, "table", tid, [table], table_key=table)
        panel(
            "Rendered table", "image", f"{table} (plot)", "table", tid, [f"{table}_plot"], media_keys=[f"{table}_plot"]
        )
        for key, what in (
            (PAIRED_COUNTS, "outcome counts per pair and benchmark, McNemar p"),
            (PAIRED_ITEMS, "two arms aligned by item id"),
        ):
            panel("Per-item comparison", "table", what, "table", tid, [key], table_key=key)
    return {
        "version": 1,
        "table": table,
        "layout": layout,
        "title": title,
        "markdown": markdown,
        "runsets": {
            "cells": {
                "filter": _filter_in("cell_key", [str(c.cell_key) for c in cells]),
                "runs": {c.run_id: asdict(c) for c in cells},
            },
            "table": {
                "filter": f"Config('table_key') = {table_key!r}",
                "runs": {table_run.run_id: asdict(table_run)} if table_run else {},
            },
        },
        "panels": sorted(panels, key=lambda p: SECTIONS.index(p["section"])),
    }


def spec_references(spec: dict) -> dict[str, set[str]]:
    """{run id: every key the specification's panels read from it} (runs-table config keys as ``config:<key>``)."""
    refs: dict[str, set[str]] = {}
    for p in spec["panels"]:
        for run in p["runs"]:
            refs.setdefault(run, set()).update(p["keys"])
            refs[run].update(f"config:{k}" for k in p.get("config_keys", ()))
    return refs


# ----------------------------------------------------------------------------------------- W&B report API


def build_report(spec: dict, *, entity: str, project: str, pairs_text: str = ""):
    """The ``wandb_workspaces`` Report of a specification: per section a heading and one panel grid per runset
    (a grid's panels share its runs), the cells' runset pinned to the paper table's columns, the rendered table as
    Markdown. Needs the ``dashboard`` extra (``pip install wandb-workspaces``); needs no W&B server until saved."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as e:
        raise ImportError("the W&B report API is missing: pip install 'cft-lab[dashboard]' (wandb-workspaces)") from e

    columns: list[str] = next((p["columns"] for p in spec["panels"] if p["kind"] == "runs_table"), [])

    def runset(name: str):
        pinned = columns if name == "cells" else []  # the runs table of the cells: the paper table's columns
        return wr.Runset(
            name=f"{spec['table']}: {name}", filters=spec["runsets"][name]["filter"], pinned_columns=pinned
        )

    def make(p: dict):
        if p["kind"] == "bar":
            return wr.BarPlot(title=p["title"], metrics=p["metrics"], orientation="v")
        if p["kind"] == "line":
            return wr.LinePlot(title=p["title"], x=p["x"], y=p["y"], layout=wr.Layout(w=16, h=8))
        if p["kind"] == "table":
            return wr.WeavePanelSummaryTable(table_name=p["table_key"], layout=wr.Layout(w=24, h=10))
        if p["kind"] == "image":
            return wr.MediaBrowser(title=p["title"], media_keys=p["media_keys"], layout=wr.Layout(w=24, h=12))
        raise ValueError(f"panel kind {p['kind']!r} has no W&B panel")

    blocks: list[Any] = [wr.P(f"cft-lab view of {spec['table']} (layout {spec['layout']}).")]
    for section in SECTIONS:
        mine = [p for p in spec["panels"] if p["section"] == section]
        if not mine:
            continue
        blocks.append(wr.H2(section))
        if section == "Rendered table":
            blocks.append(wr.MarkdownBlock(text=spec["markdown"]))
        if section == "Per-item comparison" and pairs_text:
            blocks.append(wr.MarkdownBlock(text=pairs_text))
        for name in ("cells", "table"):
            drawn = [make(p) for p in mine if p["runset"] == name and p["kind"] != "runs_table"]
            if drawn or any(p["kind"] == "runs_table" and p["runset"] == name for p in mine):
                blocks.append(wr.PanelGrid(runsets=[runset(name)], panels=drawn))
    return wr.Report(
        entity=entity, project=project, title=spec["title"][:128], description=spec["title"], blocks=blocks
    )


def wire_form(report) -> dict:
    """The report as W&B's API would receive it (``ReportViewspec``, JSON-ready), built by wandb_workspaces."""
    return report._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")
