"""One saved W&B view per table, and the W&B-free comparison files behind it:
``python -m cft_lab dashboard TABLE [overrides ...] [--publish]`` (``make dashboard TABLE=table2_tiny``).

The table is read from the run store exactly as ``python -m cft_lab tables`` reads it (same sweep expansion, same
overrides, so the same cell keys). Written under ``<outputs>/dashboards/`` (``--out`` to change it):

    <table>/items/<cell key>.parquet   one row per graded item of each finished cell (cft_lab.report.items: prompt,
                                       output, extracted answer and verdict per grading mode)
    <table>/paired.parquet             every pair of arms the layout compares (items.PAIR_RULES), aligned by item id:
                                       pair, a, b, a_key, b_key, benchmark, label, id, correct_a, answer_a,
                                       correct_b, answer_b, outcome (both right / only A / only B / both wrong)
    <table>/paired_counts.parquet      per pair and benchmark: n, the four outcome counts, accuracies, B − A and the
                                       exact McNemar p (the counts ``python -m cft_lab compare A_KEY B_KEY`` tests)
    <table>.png                        a picture of what the view shows (cft_lab.report.picture), drawn locally
    <table>.json                       the view's specification (cft_lab.report.view), the pairs' counts, the runs
                                       to sync and the exact ``wandb sync`` command, and the report as W&B's API
                                       would receive it (``wandb_report``, built by wandb-workspaces)

With the W&B logger (the default, offline), the table's own run (``tracking.table_run_id``: job type ``table``,
resumed on every call) logs the rendered table, the accuracy table, both paired tables and the picture; each cell's
run already holds its curves, metrics and its ``items`` table. Offline (the default) nothing leaves the machine: the
command prints what the view would contain and how to publish it. ``--publish`` syncs the table's offline runs (the
latest offline folder of each run id) with ``wandb sync`` and creates the report through W&B's report API, or
updates the one it created before (its URL is kept in ``<table>.published.json``). It needs a W&B key
(``WANDB_API_KEY`` or ``wandb login``) and a reachable server, and says so in one line when either is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cft_lab.report import items as per_item
from cft_lab.report import tracking, view

log = logging.getLogger(__name__)
#: the columns of paired_counts.parquet after the pair's (cft_lab.report.items.paired_counts)
COUNT_COLUMNS = (
    *("benchmark", "label", "n", "both_right", "only_a", "only_b", "both_wrong"),
    *("accuracy_a", "accuracy_b", "diff", "p_value"),
)


def _runs_of(cfg) -> Path:
    return tracking.wandb_dir(cfg.logger, Path(cfg.paths.outputs).resolve()) / "wandb"


def latest_offline_run(wandb_runs: Path, run_id: str) -> Path | None:
    """The newest ``offline-run-<YYYYmmdd_HHMMSS>-<run id>`` folder of exactly this id (names sort by time), or None.

    >>> import tempfile
    >>> runs = Path(tempfile.mkdtemp())
    >>> for name in ("20260101_000000-t-a", "20260102_000000-t-a", "20260103_000000-x-t-a"):
    ...     (runs / f"offline-run-{name}").mkdir()
    >>> latest_offline_run(runs, "t-a").name
    'offline-run-20260102_000000-t-a'
    """
    exact = re.compile(rf"offline-run-\d{{8}}_\d{{6}}-{re.escape(run_id)}")
    found = sorted(p for p in wandb_runs.glob(f"offline-run-*-{run_id}") if exact.fullmatch(p.name))
    return found[-1] if found else None


def _selection_curve(store, cell_key: str) -> dict | None:
    result = store.cell_result(cell_key) or {}
    select = result.get("stages", {}).get("select")
    path = store.path("select", select) / "selection.json" if select else None
    if path is None or not path.is_file():
        return None
    sel = json.loads(path.read_text(encoding="utf-8"))
    points = [(c["step"], c["accuracy"]) for c in sel["checkpoints"] if c["accuracy"] is not None]
    if not points or sel["selected"]["accuracy"] is None:
        return None
    return {
        "steps": [p[0] for p in points],
        "accuracy": [p[1] for p in points],
        "selected": (sel["selected"]["step"], sel["selected"]["accuracy"]),
    }


def _accuracy_frame(frame: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """Accuracy and CI per (cell, benchmark), from the table frame (what the rendered table prints)."""
    from cft_lab.report.render import _long_table

    tidy = _long_table(frame, None)
    tidy = tidy[(tidy["metric"] == "accuracy") & (tidy["status"] == "ok") & tidy["key"].notna()]
    tidy = tidy.assign(
        run=[labels.get(k, "") for k in tidy["key"]], run_id=[tracking.cell_run_id(k) for k in tidy["key"]]
    )
    return tidy[
        ["run", "model", "method", "teacher", "benchmark", "accuracy", "ci_low", "ci_high", "n", "key", "run_id"]
    ]


def _pairs(
    layout: str, frame: pd.DataFrame, item_frames: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Every pair the layout compares: aligned items, counts per benchmark, and the spec's summary of them."""
    runs = frame.attrs.get("runs", {})
    aligned, counts, summary = [], [], []
    pairs = per_item.arm_pairs(layout, runs) if layout in per_item.PAIR_RULES else []
    if layout not in per_item.PAIR_RULES:  # a new layout without a rule: the view goes on without a paired section
        log.warning("layout %s has no pair rule in cft_lab.report.items.PAIR_RULES: no paired view", layout)
    for a, b in pairs:
        ka, kb = runs[a]["key"], runs[b]["key"]
        name = per_item.pair_name(a, b)
        ids = {"pair": name, "a": per_item.run_label(a), "b": per_item.run_label(b), "a_key": ka, "b_key": kb}
        try:
            paired = per_item.paired_frame(item_frames[ka], item_frames[kb])
        except ValueError as e:  # different grading modes: not comparable, said in the spec
            summary.append({**ids, "error": str(e), "counts": []})
            continue
        rows = per_item.paired_counts(paired)
        aligned.append(paired.assign(**ids))
        counts += [{**ids, **r} for r in rows]
        summary.append({**ids, "counts": rows})
    pair_cols = ["pair", "a", "b", "a_key", "b_key"]
    aligned_frame = (
        pd.concat(aligned, ignore_index=True) if aligned else per_item.paired_frame(pd.DataFrame(), pd.DataFrame())
    )
    aligned_frame = aligned_frame.reindex(
        columns=[*pair_cols, *[c for c in aligned_frame.columns if c not in pair_cols]]
    )
    return aligned_frame, pd.DataFrame.from_records(counts, columns=[*pair_cols, *COUNT_COLUMNS]), summary


def log_table_run(cfg, table: str, run: view.RunRef, config: dict, rendered: dict, frames: dict, picture: Path):
    """Log (or resume) the table's own W&B run: the rendered table and its plot, the accuracy table, both paired
    tables and the picture. A no-op with ``logger=none``."""
    logger = tracking.make_logger(
        cfg.logger,
        name=table,
        group=cfg.run.table,
        config=config,
        outputs=Path(cfg.paths.outputs).resolve(),
        job_type="table",
        run_id=run.run_id,
    )
    try:
        logger.log_table(table, rendered["frame"], image=rendered["paths"].get("png"))
        for key, frame in frames.items():
            logger.log_table(key, frame)
        logger.log_image(view.PICTURE, picture)
    finally:
        logger.finish()


def build(table: str, overrides: Sequence[str] = (), out: Path | None = None, rendered: dict | None = None) -> dict:
    """Render ``table`` from the store, write the comparison files, the picture and the view's specification, and
    log the table's run; returns the specification (also written to ``<out>/<table>.json``)."""
    from cft_lab.options import SelectStrategy
    from cft_lab.pipeline.plan import plan_cell
    from cft_lab.pipeline.store import Store, write_json
    from cft_lab.report import picture, tables
    from cft_lab.train.objectives import spec as objective_spec

    rendered = rendered or tables.render(table, list(overrides), quiet=True)
    frame, cells, configs = rendered["frame"], rendered["cells"], rendered["configs"]
    cfg0 = configs[0]
    layout = cfg0.run.table or table
    store = Store(cfg0.paths.outputs)
    out = Path(out) if out else Path(cfg0.paths.outputs) / "dashboards"
    folder = out / table
    (folder / "items").mkdir(parents=True, exist_ok=True)
    labels = {m["key"]: per_item.run_label(r) for r, m in frame.attrs.get("runs", {}).items() if m.get("key")}

    done = [(cfg, cell) for cfg, cell in zip(configs, cells) if cell.status == "ok"]
    item_frames, item_files, refs = {}, {}, []
    for i, (cfg, cell) in enumerate(done, 1):
        log.info("[%d/%d] per-item table of %s (%s)", i, len(done), labels.get(cell.key, cell.key), cell.key)
        item_frames[cell.key] = per_item.items_frame(Path(cell.grade_dir), list(cfg.eval.benchmarks))
        item_files[cell.key] = folder / "items" / f"{cell.key}.parquet"
        item_frames[cell.key].to_parquet(item_files[cell.key], index=False)
        trained = objective_spec(cfg.objective).trains and cfg.eval.select.strategy != SelectStrategy.last
        refs.append(
            view.RunRef(
                run_id=tracking.cell_run_id(cell.key),
                name=plan_cell(cfg).name,
                label=labels.get(cell.key, plan_cell(cfg).name),
                cell_key=cell.key,
                trained=trained,
                benchmarks=tuple(cfg.eval.benchmarks),
                select_benchmark=cfg.eval.select.benchmark if trained else None,
            )
        )
    log.info("pairing arms by item id (layout %s)", layout)
    aligned, counts, pair_summary = _pairs(layout, frame, item_frames)
    aligned.to_parquet(folder / "paired.parquet", index=False)
    counts.to_parquet(folder / "paired_counts.parquet", index=False)
    accuracy = _accuracy_frame(frame, labels)
    curves = {r.label: c for r in refs if r.trained and (c := _selection_curve(store, str(r.cell_key)))}
    title = f"cft-lab {table}: {layout}, {len(done)}/{len(cells)} cells done"
    png = picture.write_picture(out / f"{table}.png", title, frame, curves, counts)

    keys = [plan_cell(c).key for c in configs]
    table_key = tracking.table_key(keys)
    uses_wandb = cfg0.logger.name == "wandb" and str(cfg0.logger.mode) != "disabled"
    table_run = view.RunRef(run_id=tracking.table_run_id(table, keys), name=table, label=table) if uses_wandb else None
    if table_run is not None:
        log.info("logging the table run %s (%s)", table_run.run_id, cfg0.logger.mode)
        config = {"table": table, "layout": layout, "table_key": table_key, "cell_keys": keys}
        frames = {view.ACCURACY_TABLE: accuracy, view.PAIRED_COUNTS: counts, view.PAIRED_ITEMS: aligned}
        log_table_run(cfg0, table, table_run, config, rendered, frames, png)
    markdown = rendered["paths"]["md"].read_text(encoding="utf-8")
    spec = view.view_spec(
        table=table, layout=layout, title=title, cells=refs, table_run=table_run, table_key=table_key, markdown=markdown
    )
    spec["wandb"] = {
        "project": cfg0.logger.project,
        "entity": cfg0.logger.entity,
        "mode": str(cfg0.logger.mode),
        "logger": cfg0.logger.name,
    }
    spec["pairs"] = pair_summary
    spec["files"] = {
        "items": {k: str(p) for k, p in item_files.items()},
        "paired": str(folder / "paired.parquet"),
        "paired_counts": str(folder / "paired_counts.parquet"),
        "picture": str(png),
        "table": {k: str(p) for k, p in rendered["paths"].items()},
    }
    spec["sync"] = _sync_plan(spec, cfg0) if uses_wandb else {"runs": {}, "missing": [], "command": None}
    spec["wandb_report"] = _wire(spec)
    write_json(out / f"{table}.json", spec)
    return spec


def _sync_plan(spec: dict, cfg) -> dict:
    """The offline folder to sync for each run of the view (the newest one of its id), and the command."""
    if str(cfg.logger.mode) == "online":
        return {"runs": {}, "missing": [], "command": None, "note": "the runs were logged online: nothing to sync"}
    runs_dir = _runs_of(cfg)
    ids = [*spec["runsets"]["cells"]["runs"], *spec["runsets"]["table"]["runs"]]
    found = {i: latest_offline_run(runs_dir, i) for i in ids}
    command = ["wandb", "sync", "--project", cfg.logger.project]
    if cfg.logger.entity:
        command += ["--entity", cfg.logger.entity]
    return {
        "runs": {i: str(p) if p else None for i, p in found.items()},
        "missing": [i for i, p in found.items() if p is None],
        "command": [*command, *[str(p) for p in found.values() if p]],
    }


def _wire(spec: dict) -> dict:
    """The report as W&B's API would receive it; a note instead when the report API is not installed."""
    try:
        report = view.build_report(
            spec,
            entity=spec["wandb"]["entity"] or "<your-entity>",
            project=spec["wandb"]["project"],
            pairs_text=pairs_text(spec),
        )
    except ImportError as e:
        return {"unavailable": str(e)}
    return view.wire_form(report)


def pairs_text(spec: dict) -> str:
    """The pairs' outcome counts as Markdown (a block of the report)."""
    lines = ["Paired outcomes (items aligned by id; only A / only B are the McNemar test's discordant counts):", ""]
    for p in spec["pairs"]:
        if p.get("error"):
            lines.append(f"* **{p['pair']}**: not compared ({p['error']})")
            continue
        for c in p["counts"]:
            lines.append(
                f"* **{p['pair']}**, {c['label']}: n={c['n']}, both right {c['both_right']}, only A {c['only_a']}, "
                f"only B {c['only_b']}, both wrong {c['both_wrong']}; B − A = {c['diff']:+.1f} points, "
                f"McNemar p = {c['p_value']:.3g}"
            )
    return "\n".join(lines) if spec["pairs"] else ""


def describe(spec: dict, argv: list[str]) -> str:
    """What was written and what the view would create (printed by the command)."""
    w = spec["wandb"]
    where = f"{w['entity'] or '<your default entity>'}/{w['project']}"
    lines = [spec["title"], "wrote:"]
    files = spec["files"]
    lines += [f"  {files['picture']}", f"  {files['paired']}", f"  {files['paired_counts']}"]
    lines += [f"  {p}" for p in files["items"].values()]
    lines += [f'the W&B report "{spec["title"]}" in {where} would hold:']
    for p in spec["panels"]:
        lines.append(
            f"  [{p['section']}] {p['kind']} '{p['title']}' over {len(p['runs'])} run(s): {', '.join(p['keys'])}"
        )
    text = pairs_text(spec)
    if text:
        lines += ["", text, ""]
    sync = spec["sync"]
    if w["logger"] != "wandb":
        lines.append("logger=none: no W&B run to show; the Parquet files and the picture hold the comparison")
    elif sync.get("command"):
        lines.append(f"{sum(1 for d in sync['runs'].values() if d)} offline run(s) to sync:")
        lines.append("  " + " ".join(sync["command"]))
        if sync["missing"]:
            lines.append(f"  no offline run found for: {', '.join(sync['missing'])}")
    lines.append(
        "publish (sync, then create or update the report): WANDB_API_KEY=... python -m cft_lab dashboard "
        + " ".join(argv)
        + " --publish"
    )
    return "\n".join(lines)


class PublishError(RuntimeError):
    """Publishing is impossible here (no key, no server, nothing logged); the message is one line."""


def publish(spec: dict, out: Path) -> str:
    """Sync the table's offline runs, then create or update its report; returns the report's URL."""
    from cft_lab.pipeline.store import write_json

    if spec["wandb"]["logger"] != "wandb":
        raise PublishError("nothing to publish: the table was run with logger=none (rerun its cells with logger=wandb)")
    import wandb

    try:
        api = wandb.Api(timeout=30)
    except Exception as e:  # no key: wandb raises its own UsageError
        raise PublishError(f"--publish needs a W&B API key (WANDB_API_KEY or `wandb login`): {e}") from None
    try:
        entity = str(spec["wandb"]["entity"] or api.default_entity)
    except Exception as e:
        raise PublishError(f"W&B at {api.settings.get('base_url')} is not reachable: {e}") from None
    command, dirs = spec["sync"].get("command"), [d for d in spec["sync"]["runs"].values() if d]
    if command and dirs:
        log.info("syncing %d offline run(s)", len(dirs))
        env = {**os.environ, "WANDB_MODE": "online"}
        done = subprocess.run([sys.executable, "-m", *command], env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise PublishError(f"wandb sync failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    import wandb_workspaces.reports.v2 as wr

    project = spec["wandb"]["project"]
    report = view.build_report(spec, entity=entity, project=project, pairs_text=pairs_text(spec))
    record = out / f"{spec['table']}.published.json"
    if record.is_file():  # update the report created before, in place (same URL)
        before = json.loads(record.read_text(encoding="utf-8"))
        if (before.get("entity"), before.get("project")) == (entity, project):
            existing = wr.Report.from_url(before["url"])
            existing.title, existing.description, existing.blocks = report.title, report.description, report.blocks
            report = existing
    report.save()
    write_json(record, {"table": spec["table"], "entity": entity, "project": project, "url": report.url})
    return report.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cft_lab dashboard",
        description="Write a table's W&B view (specification, Parquet comparison files, picture); --publish syncs "
        "its offline runs and creates or updates the report.",
    )
    parser.add_argument("table", help="an experiments/table option, e.g. table2_tiny, table7_tiny, demo")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every cell (as on the sweep)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <outputs>/dashboards)")
    parser.add_argument("--publish", action="store_true", help="sync the runs and save the report to W&B (online)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from cft_lab.paths import EXPERIMENTS_DIR

    known = sorted(p.stem for p in (EXPERIMENTS_DIR / "table").glob("*.yaml"))
    if args.table not in known:
        print(f"error: unknown table {args.table!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    from hydra.errors import HydraException

    from cft_lab.config import ConfigError

    try:
        spec = build(args.table, args.overrides, args.out)
    except (HydraException, ConfigError) as e:  # a bad override: Hydra's message names it and what is allowed
        print(f"error: {' '.join(str(e).split()).split(' Config search path')[0]}", file=sys.stderr)
        return 2
    print(describe(spec, [args.table, *args.overrides]), flush=True)
    if args.publish:
        out = Path(args.out) if args.out else Path(spec["files"]["picture"]).parent
        try:
            print(f"published: {publish(spec, out)}", flush=True)
        except PublishError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
