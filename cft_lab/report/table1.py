"""Table 1 (the paper's dataset comparison) beside the sizes of the datasets our runs built.

Two parts, one file set ``<out_dir>/<table>.{md,csv,tex}``:

* **The paper's Table 1** from ``assets/paper_tables.json`` (``table1``): dataset, group (SFT or CFT), size, source
  or seed, discipline, and the versions a row is in (v1 and v3 list CFT-tiny, v4 drops it; the entry's notes
  become a footnote).
* **Ours**: one row per data option of the table's sweep (``experiments/table/table1*.yaml``: every data option a
  table sweeps, crossed with the arms whose data the tables build, SFT and CFT), read from the data artefacts in the
  store (``store/data/<key>/card.json``, the dataset card of ``cft_lab.data.card``; the key is the cell's
  ``plan_cell(cfg).key_of("data")``, so it is the artefact the tables' cells use): records, critiques (and the share
  the teacher judged right), each arm's usable pairs (the card's ``arms``; after the cutoff where truncation dropped
  some), the teacher and its cost, and the paper's row it stands for with that row's size. An artefact the store
  lacks reads "not built" (named, with its key, in the footnotes); rendering builds nothing and calls no teacher.

``render(table, configs, out_dir, quiet)`` is called by ``cft_lab.report.tables.render`` for ``run.table=table1``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cft_lab.config import Config
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store
from cft_lab.report.frames import METHOD_LABELS, PAPER_TABLES, _unique, approx_target
from cft_lab.report.render import _Grid, _render_md, _render_tex
from cft_lab.train.objectives import spec, teacher_work

log = logging.getLogger(__name__)

NOT_BUILT = "not built"
#: Our data labels whose paper row has another name (the released critique sets are the paper's "CFT" rows).
PAPER_ROW_OF = {"WebInstruct": "CFT", "WebInstruct-CFT-4K": "CFT-tiny"}
ARM_NAMES = {"sft": "SFT", "cft": "CFT"}
CSV_COLUMNS = [
    "section",
    "dataset",
    "group",
    "size",
    "source_or_seed",
    "discipline",
    "versions",
    "option",
    "arm",
    "records",
    "critiques",
    "right_ratio",
    "pairs",
    "pairs_after_cutoff",
    "teacher",
    "cost_usd",
    "status",
    "key",
    "paper_row",
    "paper_size",
]


def paper_table1(path: Path = PAPER_TABLES) -> dict[str, Any]:
    """The paper's Table 1 entry, every row with ``versions`` (those it is printed in)."""
    entry = json.loads(Path(path).read_text(encoding="utf-8"))["table1"]
    every = [v for v, n in entry["paper_table_number"].items() if n is not None]
    rows = [{**r, "versions": list(r.get("present_in", every))} for r in entry["rows"]]
    return {**entry, "rows": rows, "versions": every}


def arm_name(cfg: Config) -> str:
    return ARM_NAMES.get(cfg.objective.name, METHOD_LABELS.get(cfg.objective.name, cfg.objective.name))


def read_artefact(cfg: Config) -> dict[str, Any]:
    """One (data option, arm) artefact: its key and, where the store holds it finished, the card's counts."""
    out: dict[str, Any] = {"option": cfg.data.name, "dataset": cfg.data.label, "arm": arm_name(cfg)}
    out["teacher"] = (cfg.teacher.label or cfg.teacher.name) if teacher_work(cfg.objective) else None
    if not spec(cfg.objective).trains:
        return {**out, "status": "no data", "note": f"objective={cfg.objective.name} trains on no data"}
    plan = plan_cell(cfg)
    if plan.part_keys():
        note = "a mixture of data artefacts: sweep its parts' data options instead"
        return {**out, "status": "no data", "note": note}
    key = out["key"] = plan.key_of("data")
    store = Store(cfg.paths.outputs)
    card_path = store.path("data", key) / "card.json"
    if not store.done("data", key) or not card_path.is_file():
        unfinished = store.path("data", key).is_dir()
        return {**out, "status": "unfinished" if unfinished else NOT_BUILT}
    card = json.loads(card_path.read_text(encoding="utf-8"))
    arm = card.get("arms", {}).get(cfg.objective.name, {})
    verdicts = card.get("verdicts", {})
    return {
        **out,
        "status": "built",
        "records": card.get("records"),
        "critiques": verdicts.get("critiques"),
        "right_ratio": verdicts.get("right_ratio"),
        "pairs": arm.get("usable"),
        "pairs_after_cutoff": (arm.get("cutoff") or {}).get("examples"),
        "cost_usd": (card.get("teacher") or {}).get("cost_usd"),
    }


def _paper_match(label: str, paper: dict[str, Any]) -> dict[str, Any] | None:
    target = approx_target(label) or label
    name = PAPER_ROW_OF.get(target, target)
    return next((r for r in paper["rows"] if r["dataset"] == name), None)


def _count(value: Any) -> str:
    return "—" if value is None else f"{int(value):,}"


def _pairs(a: dict[str, Any]) -> str:
    if a["status"] != "built":
        return a["status"]
    text = _count(a["pairs"])
    cut = a.get("pairs_after_cutoff")
    if cut is not None and a["pairs"] is not None and cut != a["pairs"]:
        text += f" ({_count(cut)} after the cutoff)"
    return text


def _ours_rows(artefacts: list[dict[str, Any]], arms: list[str], paper: dict[str, Any]) -> tuple[list, list, list]:
    """Grid rows (one per data option), footnotes, and the CSV records."""
    rows, footnotes, records = [], [], []
    for option in _unique([a["option"] for a in artefacts]):
        mine = [a for a in artefacts if a["option"] == option]
        built = [a for a in mine if a["status"] == "built"]
        match = _paper_match(mine[0]["dataset"], paper)
        counts = _unique([a["records"] for a in built])
        critiqued = [a for a in built if a.get("critiques")]
        critiques = (
            ", ".join(
                f"{_count(a['critiques'])} ({100 * (a['right_ratio'] or 0):.1f}% judged right)" for a in critiqued
            )
            if critiqued
            else ("0" if built else "—")
        )
        teachers = _unique([a["teacher"] for a in built if a["teacher"]])
        cost = sum(a.get("cost_usd") or 0.0 for a in built)
        by_arm = {a["arm"]: a for a in mine}
        approx = "≈" if approx_target(mine[0]["dataset"]) else ""
        rows.append(
            [
                mine[0]["dataset"],
                option,
                f"{approx}{match['dataset']} ({match['size']})" if match else "—",
                (", ".join(teachers) + (f" (${cost:,.2f})" if cost else "")) if teachers else "—",
                " / ".join(_count(c) for c in counts) if counts else NOT_BUILT,
                critiques,
                *[_pairs(by_arm[arm]) if arm in by_arm else "—" for arm in arms],
            ]
        )
        for a in mine:
            if a["status"] != "built":
                where = f" (data key {a['key']})" if a.get("key") else ""
                footnotes.append(f"{a['dataset']} / {a['arm']}{where}: {a.get('note') or a['status']}")
            records.append(
                {
                    "section": "ours",
                    **{k: a.get(k) for k in CSV_COLUMNS if k in a},
                    "paper_row": match["dataset"] if match else None,
                    "paper_size": match["size"] if match else None,
                }
            )
    return rows, footnotes, records


def render(table: str, configs: Sequence[Config], out_dir: Path | None = None, quiet: bool = False) -> dict:
    """Write ``<table>.{md,csv,tex}``; returns ``{"frame", "paths", "cells", "configs", "view"}`` (``cells`` empty:
    the sweep builds data and stops, it has no cell results; ``view``: False, no W&B view)."""
    paper = paper_table1()
    artefacts = [read_artefact(cfg) for cfg in configs]
    arms = _unique([a["arm"] for a in artefacts if a["status"] != "no data"])
    rows, footnotes, records = _ours_rows(artefacts, arms, paper)
    built = sum(a["status"] == "built" for a in artefacts)
    title = f"table1 ({table}): the paper's datasets, and ours: {built}/{len(artefacts)} data artefacts built"

    paper_rows = [
        [r["dataset"], r["group"], r["size"], r["source_or_seed"], r["discipline"], ", ".join(r["versions"])]
        for r in paper["rows"]
    ]
    groups = [r["group"] for r in paper["rows"]]
    paper_grid = _Grid(
        ["Dataset", "Group", "Size", "Source / seed", "Discipline", "Versions"],
        paper_rows,
        6,
        {i for i in range(1, len(groups)) if groups[i] != groups[i - 1]},
        [f"The paper's notes: {paper['notes']}"],
        f"{paper['title']}; the paper's numbers (assets/paper_tables.json); Versions = the paper versions that print "
        "the row",
    )
    legend = (
        "Our datasets, counted in the store's data artefacts (their dataset cards): Records = questions with a "
        "response; Critiques = records with a teacher critique (share judged right); <arm> pairs = records that arm "
        "can train on (after the cutoff, where truncation dropped some); Paper row = the paper's dataset it is "
        "(≈: stands in for), with the paper's size; Teacher = who wrote the built critiques (total teacher cost); "
        f"{NOT_BUILT} = the store has no such artefact (see the footnotes)"
    )
    ours_grid = _Grid(
        ["Dataset", "Option", "Paper row (size)", "Teacher", "Records", "Critiques", *[f"{a} pairs" for a in arms]],
        rows,
        4,
        set(),
        footnotes,
        legend,
    )
    out_dir = Path(out_dir or Path(configs[0].paths.outputs) / "tables")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{table}.{ext}" for ext in ("md", "csv", "tex")}
    grids = [(paper_grid, "Table 1 (paper): CFT datasets vs existing SFT datasets"), (ours_grid, title)]
    paths["md"].write_text("\n".join(_render_md(g, t) for g, t in grids), encoding="utf-8")
    paths["tex"].write_text("\n".join(_render_tex(g, t) for g, t in grids), encoding="utf-8")
    paper_records = [
        {"section": "paper", **{k: r.get(k) for k in CSV_COLUMNS if k in r}, "versions": " ".join(r["versions"])}
        for r in paper["rows"]
    ]
    frame = pd.DataFrame.from_records(paper_records + records, columns=CSV_COLUMNS)
    frame = frame.astype({k: "Int64" for k in ("records", "critiques", "pairs", "pairs_after_cutoff")})
    frame.to_csv(paths["csv"], index=False)
    log.info("wrote %s.{md,csv,tex} to %s (%d/%d data artefacts built)", table, out_dir, built, len(artefacts))
    if not quiet:
        print(paths["md"].read_text(encoding="utf-8"), flush=True)
    return {"frame": frame, "paths": paths, "cells": [], "configs": configs, "view": False}
