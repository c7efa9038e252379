"""``python -m cft_lab cells``: what a run store holds, so that ``compare`` and ``export`` need no JSON read by hand.

One line per cell (``store/cells/<key>/result.json``): status, key, name, table and method, and its scores (the
table's grading mode, per benchmark) or, for a failed cell, its error; ``--data`` lists the data artefacts
(``store/data/<key>``: records, finished or not, the teacher and its cost), the keys ``export`` takes. ::

    python -m cft_lab cells [--outputs DIR] [--status ok|failed] [--table NAME] [--data] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cft_lab.pipeline.store import DONE, Store


def list_cells(store: Store) -> list[dict]:
    """Every cell result of the store, sorted by table, name and key."""
    out = []
    for path in sorted((store.root / "cells").glob("*/result.json")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            r = {"status": "unreadable", "error": f"{path}: {e}"}
        r.setdefault("key", path.parent.name)
        out.append(r)
    return sorted(out, key=lambda r: (str(r.get("table")), str(r.get("cell")), r["key"]))


def list_data(store: Store) -> list[dict]:
    """Every data artefact: key, finished, records, teacher, cost (from its card)."""
    out = []
    for d in sorted(p for p in (store.root / "data").glob("*") if p.is_dir()):
        card_path = d / "card.json"
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
        teacher = card.get("teacher_run", {}).get("teacher", {})
        out.append(
            {
                "key": d.name,
                "done": (d / DONE).is_file(),
                "records": card.get("records"),
                "teacher": teacher.get("name"),
                "critiques": card.get("verdicts", {}).get("critiques"),
                "cost_usd": card.get("teacher", {}).get("cost_usd"),
            }
        )
    return out


def _scores(r: dict) -> str:
    if r.get("status") != "ok":
        return (r.get("error") or "").splitlines()[0][:100] if r.get("error") else ""
    return ", ".join(f"{s.get('label', b)} {s['accuracy']:.1f}" for b, s in (r.get("scores") or {}).items())


def main(argv: list[str] | None = None) -> int:
    from cft_lab import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m cft_lab cells", description=__doc__.split("\n")[0])
    p.add_argument("--outputs", default=None, help="outputs folder (default $CFT_LAB_OUTPUTS or outputs)")
    p.add_argument("--status", choices=("ok", "failed"), default=None, help="only cells with this status")
    p.add_argument("--table", default=None, help="only cells of this table (run.table)")
    p.add_argument("--data", action="store_true", help="list the data artefacts instead (keys for export)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--debug", action="store_true", help="keep tracebacks")
    a = p.parse_args(argv)
    outputs = Path(a.outputs or os.environ.get("CFT_LAB_OUTPUTS", "outputs"))
    store = Store(outputs)
    if not store.root.is_dir():
        raise FileNotFoundError(
            f"no run store at {store.root} (--outputs or $CFT_LAB_OUTPUTS names the outputs folder)"
        )
    if a.data:
        rows = list_data(store)
        if a.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'key':<18}{'done':<6}{'records':>8}{'critiques':>10}  {'teacher':<20}cost USD")
        for d in rows:
            print(
                f"{d['key']:<18}{'yes' if d['done'] else 'no':<6}{d['records'] or '-':>8}"
                f"{d['critiques'] if d['critiques'] is not None else '-':>10}  {d['teacher'] or '-':<20}"
                f"{d['cost_usd'] if d['cost_usd'] is not None else '-'}"
            )
        return 0
    cells = [
        r
        for r in list_cells(store)
        if (a.status is None or r.get("status") == a.status) and (a.table is None or r.get("table") == a.table)
    ]
    if a.json:
        print(json.dumps([{k: r.get(k) for k in ("status", "key", "cell", "table", "method", "scores",
                                                "error", "stages")} for r in cells], indent=2))  # fmt: skip
        return 0
    print(f"{'status':<8}{'key':<18}{'cell':<28}{'table':<14}scores (or error)")
    for r in cells:
        name, table = str(r.get("cell")), str(r.get("table") or "-")
        print(f"{r.get('status', '?'):<8}{r['key']:<18}{name:<28}{table:<14}{_scores(r)}")
    n_ok = sum(r.get("status") == "ok" for r in cells)
    print(f"{len(cells)} cells ({n_ok} ok); compare two with: python -m cft_lab compare KEY_A KEY_B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
