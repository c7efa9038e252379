"""Render a paper table from the run store: ``python -m cft_lab.report.tables table2_tiny [overrides ...] [--plan]``.

The table is a view of the store, never a separate record: the table's sweep (``experiments/table/<name>.yaml``)
is expanded exactly as Hydra's basic sweeper does, every cell's config is composed and keyed
(``cft_lab.pipeline.plan``), and its ``store/cells/<key>/result.json`` is read. A cell that failed shows its error, one
that never ran shows "not run". Output: ``<outputs>/tables/<name>.{md,csv,tex,png}``; the Markdown is also printed.
At paper scale (every model from the hub) the paper's own numbers (``assets/paper_tables.json``) appear beside ours.

``--plan`` prints the planned cells, their keys and recipes instead (what ``dry_run=true`` shows for a sweep).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import logging
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from cft_lab import report
from cft_lab.config import Config, register, to_config
from cft_lab.eval import benchmarks
from cft_lab.paths import CONF_DIR
from cft_lab.pipeline.plan import format_plan, plan_cell
from cft_lab.pipeline.store import Store
from cft_lab.report import ablations, comparisons, efficiency, table8
from cft_lab.report.ledger import cell_ledger
from cft_lab.train.objectives import teacher_work

log = logging.getLogger(__name__)


def sweep_overrides(params: dict, cli: list[str]) -> list[list[str]]:
    """One list of override strings per cell: the table's sweep params crossed with the CLI's (CLI wins per key)."""
    parser = OverridesParser.create()
    cli_parsed = parser.parse_overrides(list(cli))
    cli_keys = {o.get_key_element() for o in cli_parsed}
    from_table = [f"{k}={v}" for k, v in params.items() if k not in cli_keys]
    axes = []
    for o in cli_parsed + parser.parse_overrides(from_table):
        if o.is_sweep_override():
            axes.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(combo) for combo in itertools.product(*axes)]


def expand(table: str, overrides: list[str] = ()) -> list[Config]:
    """Typed configs of every cell of ``table`` (an ``experiments/table`` option), in sweep order."""
    register()
    GlobalHydra.instance().clear()
    base = [f"table={table}", *[o for o in overrides if not o.startswith("table=")]]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        plain = [o.input_line for o in OverridesParser.create().parse_overrides(base) if not o.is_sweep_override()]
        primary = compose("config", overrides=plain, return_hydra_config=True)
        params = dict(primary.hydra.sweeper.params or {})
        return [to_config(compose("config", overrides=cell)) for cell in sweep_overrides(params, base)]


def _row_result(cfg: Config) -> tuple[dict, list[dict], list[Path]]:
    """One row's result (its seeds pooled, ``cft_lab.report.seeded``), every seed's result and graded folder."""
    from cft_lab.pipeline.seeds import seed_configs
    from cft_lab.report.seeded import pooled_scores

    cells = seed_configs(cfg)
    found = []
    for c in cells:
        key = plan_cell(c).key
        res = Store(c.paths.outputs).cell_result(key) or {"status": "missing", "error": "not run", "scores": {}}
        found.append((c, key, res))
    results = [res for _, _, res in found]
    dirs = [Store(c.paths.outputs).path("grade", key) for c, key, res in found if res["status"] == "ok"]
    if len(cells) == 1:
        return results[0], results, dirs
    bad = [(c.train.seed, res) for c, _, res in found if res["status"] != "ok"]
    if bad:
        seed, res = next(((s, r) for s, r in bad if r["status"] == "failed"), bad[0])
        status = "failed" if res["status"] == "failed" else "missing"
        return {**res, "status": status, "error": f"seed {seed}: {res.get('error')}"}, results, dirs
    return {**results[0], "pooled": pooled_scores(results, dirs, n_boot=cfg.eval.n_boot)}, results, dirs


def collect(configs: list[Config]):
    from cft_lab.report import BenchScore, CellResult

    cells = []
    for cfg in configs:
        plan = plan_cell(cfg)
        res, results, dirs = _row_result(cfg)
        if "pooled" in res:
            scores = res["pooled"]
        else:
            scores = {
                s.get("label", benchmarks.label(name)): BenchScore(
                    s["correct"], s["n"], s["ci_low"], s["ci_high"], value=s.get("value")
                )
                for name, s in res.get("scores", {}).items()
            }
        teacher = (cfg.teacher.label or cfg.teacher.name) if teacher_work(cfg.objective) else None
        inf = cfg.inference
        decoding = {
            "variant": cfg.run.variant,
            "mode": str(inf.mode),
            "temperature": inf.temperature,
            "n": inf.n,
            "candidates": inf.self_critique.candidates,
            "benchmarks": {benchmarks.label(b): b for b in cfg.eval.benchmarks},
        }
        store = Store(cfg.paths.outputs)
        cells.append(
            CellResult(
                model=cfg.model.label,
                method=cfg.objective.name,
                teacher=teacher,
                status=res["status"],
                error=res.get("error"),
                scores=scores,
                key=plan.key,
                response_source=cfg.response_source.kind,
                decoding=decoding,
                grade_dir=store.path("grade", plan.key) if res["status"] == "ok" else None,
                raw_scores={s.get("label", benchmarks.label(n)): s for n, s in res.get("scores", {}).items()},
                data=cfg.data.label,
                label=cfg.run.label,
                train_examples=res.get("train_examples") or {},
                steps=(res.get("selection") or {}).get("last", {}).get("step"),
                results=[r for r in results if r["status"] == "ok"],
                grade_dirs=dirs if res["status"] == "ok" else [],
                data_size=cfg.data.testbed.n_train if cfg.data.testbed is not None else None,
                group=cfg.run.group,
                model_source=str(cfg.model.source),
                ledger=cell_ledger(cfg) if res["status"] == "ok" else {},
            )
        )
    return cells


#: Layouts of the tables this module renders (run.table -> frame builder); ablations.LAYOUTS adds the training
#: ablations' (Tables 4, 5, v4 9, v4 10).
LAYOUTS = {
    "table2": report.table2_frame,
    "table6": report.table6_frame,
    "table7": report.table7_frame,
    "table8": table8.table8_frame,
    "data_efficiency": efficiency.efficiency_frame,
}

#: Layouts that are not a frame of cell scores, each rendered by a module of its own (``render(table, configs, out_dir,
#: quiet)``, returning what :func:`render` returns): Figure 2 (training curves) and Table 1 (dataset sizes).
RENDERERS = {"figure2": "cft_lab.report.figure2", "table1": "cft_lab.report.table1"}


def paper_frames(layout: str):
    """The paper's numbers for a layout: the v1 frame, with the v3/v4 one in ``attrs["later"]`` where it exists."""
    if layout in ablations.LAYOUTS:
        v1, later = ablations.paper_frame(layout, "v1"), ablations.paper_frame(layout, "v3_v4")
    elif layout in comparisons.LAYOUTS:
        v1, later = comparisons.paper_frame(layout, "v1"), comparisons.paper_frame(layout, "v3_v4")
    elif layout == "table8":
        v1, later = table8.paper_frame("v1"), table8.paper_frame("v3_v4")
    else:
        v1, later = report.paper_frame(layout, "v1"), report.paper_frame(layout, "v3_v4")
    if not v1.equals(later):
        v1.attrs["later"] = later
    return v1


def render(table: str, overrides: list[str] = (), out_dir: Path | None = None, quiet: bool = False) -> dict:
    """Render ``table`` from the store; returns ``{"frame", "paths", "cells"}``."""
    configs = expand(table, overrides)
    if not configs:
        raise ValueError(f"table={table} expands to no cell")
    if configs[0].run.tune:  # a tuning sweep: its trials (validation scores) and the chosen values
        from cft_lab.report import tuning

        return tuning.render(table, configs, out_dir, quiet)
    layout = configs[0].run.table or table
    if layout in RENDERERS:
        return importlib.import_module(RENDERERS[layout]).render(table, configs, out_dir, quiet)
    columns = [benchmarks.label(b) for b in configs[0].eval.benchmarks]
    cells = collect(configs)
    frames = {**LAYOUTS, **ablations.LAYOUTS, **comparisons.LAYOUTS}
    if layout not in frames:
        raise ValueError(f"table={table}: no layout for run.table={layout} (known: {', '.join(frames)})")
    frame = frames[layout](cells, columns)
    frame.attrs.setdefault("footnotes", []).extend(verified_footnotes(configs, cells))
    if layout == "table2":  # CFT against the best SFT row, over items x seeds; optionally what each arm cost
        from cft_lab.report import seeded

        frame.attrs["footnotes"] = [*frame.attrs.get("footnotes", []), *seeded.paired_footnotes(frame, cells, columns)]
        if configs[0].run.show_compute:
            frame = seeded.add_compute_columns(frame, cells)
    paper = paper_frames(layout) if all(c.model.source != "testbed" for c in configs) else None
    out_dir = out_dir or Path(configs[0].paths.outputs) / "tables"
    title = f"{layout} ({table}): {len([c for c in cells if c.status == 'ok'])}/{len(cells)} cells done"
    paths = report.write_table(frame, out_dir, table, title, paper=paper)
    if layout == "table8":
        paths["tokens_png"] = table8.write_tokens_plot(frame, out_dir / f"{table}_tokens.png", title)
    if layout == "data_efficiency":
        paths["curve_png"] = efficiency.write_curve(frame, out_dir / f"{table}_curve.png", title)
    if not quiet:
        print(paths["md"].read_text(encoding="utf-8"), flush=True)
    return {"frame": frame, "paths": paths, "cells": cells, "configs": configs}


def verified_footnotes(configs: list[Config], cells) -> list[str]:
    """How each SFT-verified cell's pairs were built (issue 13, item 7): sampled from the data's larger critiqued pool
    as the paper did, or the records of the cell's own set judged right. One line per distinct construction."""
    from cft_lab.config import uses_pool

    lines: dict[str, list[str]] = {}
    for cfg, cell in zip(configs, cells):
        if cfg.objective.name != "sft_verified" or cfg.objective.parts:
            continue
        pairs = (cell.train_examples or {}).get("examples")
        if uses_pool(cfg):
            text = (
                f"SFT-verified as the paper built it: rows of {cfg.data.pool} (data.pool) judged right, "
                f"{cfg.data.pool_sample} sampled"
            )
        else:
            text = f"SFT-verified from the same records ({cfg.data.name}) judged right" + (
                f", not the paper's sample of {cfg.data.pool_sample} from {cfg.data.pool}" if cfg.data.pool else ""
            )
        lines.setdefault(text, []).append(f"{cell.model}: {pairs} pairs" if pairs else cell.model)
    return [f"{text} [{'; '.join(models)}]" for text, models in lines.items()]


def plan_text(table: str, overrides: list[str] = (), show_config: bool = False) -> str:
    """The planned cells of a table with their keys; ``show_config`` prepends the first cell's resolved config."""
    from omegaconf import OmegaConf

    from cft_lab.config import as_dict
    from cft_lab.report.tracking import sanitize

    configs = expand(table, overrides)
    lines = []
    if show_config:
        lines += [
            f"# resolved config of the first cell ({plan_cell(configs[0]).name}); the others differ only in "
            "the swept choices",
            OmegaConf.to_yaml(OmegaConf.create(sanitize(as_dict(configs[0])))),
        ]
    from cft_lab.pipeline.estimate import estimate_cell

    lines.append(f"{table}: {len(configs)} cells")
    ests = []
    for c in configs:
        plan = plan_cell(c)
        est = estimate_cell(c, plan, Store(c.paths.outputs))
        ests.append(est)
        lines += [format_plan(plan), f"  needs  {est.line()}"]
    lines.append(estimate_totals(table, configs[0].cluster.name, ests))
    return "\n".join(lines)


def estimate_totals(table: str, cluster: str, ests) -> str:
    """One line: the table's GPU-hours, its largest job, and its disk (peak if every cell trained at once)."""

    from cft_lab.pipeline.estimate import size_text

    def total(attr: str) -> str:
        values = [getattr(e, attr) for e in ests]
        return "?" if any(v is None for v in values) else size_text(sum(values))

    hours = sum(e.total_gpu_hours for e in ests)
    return (
        f"{table} on cluster={cluster}: ~{hours:.0f} GPU-h in all (estimates: see each cell's `needs`), jobs of "
        f"{max(e.gpus for e in ests)} GPUs at most, disk ~{total('disk_peak_gb')} if every cell trained at once, "
        f"~{total('disk_kept_gb')} kept after selection"
    )


def main(argv: list[str] | None = None) -> int:
    """The CLI: one-line errors (an unknown table, a bad override, an unwritable folder), ``--debug`` for tracebacks."""
    from cft_lab import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cft_lab tables", description="Render a paper table from the cft-lab run store."
    )
    parser.add_argument("table", help="an experiments/table option, e.g. table2_tiny, table7, demo")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every cell (as on the sweep)")
    parser.add_argument("--plan", action="store_true", help="print the planned cells and keys instead")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <outputs>/tables)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.plan:
        print(plan_text(args.table, args.overrides))
    else:
        render(args.table, args.overrides, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
