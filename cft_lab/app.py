"""``python -m cft_lab``: the one train-eval entrypoint (Hydra). One job = one cell; a table is a multirun sweep.

    python -m cft_lab                                # the embedded default: tiny_math, CFT, testbed
    python -m cft_lab method=sft model=tiny_small    # another cell
    python -m cft_lab table=table2_tiny              # a whole table (multirun), rendered when the sweep ends
    python -m cft_lab table=table2 dry_run=true      # the paper-scale plan: cells, keys, hyper-parameters
    python -m cft_lab run.stop_after=data            # build (buy) the cell's dataset and stop (make data)
    python -m cft_lab tables table2_tiny             # re-render a table from the store (cft_lab.report.tables)
    python -m cft_lab compare KEY_A KEY_B            # paired test of two cells (cft_lab.eval.compare)
    python -m cft_lab dashboard table2_tiny          # a table's W&B view and comparison files (report.dashboard)
    python -m cft_lab cells                          # the cells of a store: name, status, key, scores
    python -m cft_lab export KEY --out DIR           # a built dataset as a Hugging Face dataset (cft_lab.data.export)
    python -m cft_lab prepare table2                 # a table's data (teacher calls) and models, on CPU, before GPUs
    python -m cft_lab evaluate MODEL eval=paper_math6  # score a checkpoint, no training (cft_lab.eval.evaluate)
    python -m cft_lab --help                         # what it does, the groups and their options

A first argument that is a bare word (no ``=``, not a flag) names a subcommand; Hydra overrides always contain ``=``
or start with ``+``/``~``/``-``, so the two never collide.

Exit status: 0 when every cell finished (or, in a dry run, would run); 1 when any cell failed or a dry run refused
one (a sweep still renders its table first: the status reflects the holes); 2 for a config that cannot be composed
or combined, or an unusable ``paths.outputs``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cft_lab.config import ConfigError, register, to_config
from cft_lab.paths import CONF_DIR, check_checkout

log = logging.getLogger(__name__)
register()


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _main(dcfg: DictConfig) -> None:
    from cft_lab.pipeline.cell import run_cell
    from cft_lab.pipeline.seeds import seed_configs
    from cft_lab.pipeline.tune import run_trial
    from cft_lab.report.tracking import sanitize

    for noisy in ("httpx", "httpx2", "openai"):  # one INFO line per HTTP request would drown the run's own log
        logging.getLogger(noisy).setLevel(logging.WARNING)

    try:
        cfg = to_config(dcfg)
    except (ConfigError, OmegaConfBaseException) as e:  # one line that names the choices or the key, no traceback
        from cft_lab.cli import one_line

        print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
        sys.exit(2)
    if cfg.dry_run and not _in_multirun():  # a sweep prints one resolved config and the plan when it ends
        print(OmegaConf.to_yaml(OmegaConf.create(sanitize(OmegaConf.to_container(dcfg, resolve=True)))), flush=True)
    outcomes = []
    for cell_cfg in seed_configs(cfg):  # run.seeds=N: one cell per training seed
        if cfg.run.tune:  # a tuning trial: train and select, scored on validation only
            trial = run_trial(cell_cfg)  # a failed trial is an outcome like a failed cell: the sweep exits non-zero
            outcomes.append({"status": trial["status"], "cell": trial["cell"], "key": trial["trial"],
                             "error": trial.get("error")})  # fmt: skip
            continue
        result = run_cell(cell_cfg)
        outcomes.append({k: result.get(k) for k in ("status", "cell", "key", "error")})
        if result["status"] == "ok" and not cfg.dry_run:
            summary = {
                s["label"]: f"{s['accuracy']:.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}]"
                for s in result["scores"].values()
            }
            log.info("[%s seed %d] %s", result["cell"], cell_cfg.train.seed, json.dumps(summary, ensure_ascii=False))
    failed = [o for o in outcomes if o["status"] == "failed"]
    if outcomes and _in_multirun():  # the sweep's end (cft_lab.report.callback) reads every job's outcome
        from hydra.core.hydra_config import HydraConfig

        outcome = failed[0] if failed else outcomes[0]  # a job of several seeds: its first failure, if any
        Path(HydraConfig.get().runtime.output_dir, "cell.json").write_text(json.dumps(outcome), encoding="utf-8")
    elif failed:
        from cft_lab.report.callback import FAILED

        FAILED.extend(failed)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


#: Subcommands: name -> module whose ``main(argv)`` takes the remaining arguments.
SUBCOMMANDS = {
    "tables": "cft_lab.report.tables",
    "compare": "cft_lab.eval.compare",
    "dashboard": "cft_lab.report.dashboard",
    "cells": "cft_lab.report.cells",
    "export": "cft_lab.data.export",
    "prepare": "cft_lab.pipeline.prepare",
    "evaluate": "cft_lab.eval.evaluate",
}


def _check_outputs(argv: list[str]) -> None:
    """``paths.outputs`` must be a writable folder before Hydra creates its log folder there (which would fail with a
    traceback): the last ``paths.outputs=`` override, else ``$CFT_LAB_OUTPUTS``, else ``outputs``."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("paths.outputs=")]
    out = Path(given[-1] if given else os.environ.get("CFT_LAB_OUTPUTS", "outputs"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        print(f"error: paths.outputs={out} is not a writable folder ({e.strerror or e})", file=sys.stderr, flush=True)
        sys.exit(2)


def main() -> None:
    check_checkout()
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        import importlib

        sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))
    run(sys.argv[1:])


def run(args: list[str]) -> None:
    """The Hydra app on ``args`` (overrides and Hydra's flags), with the exit status of the module doc."""
    sys.argv = [sys.argv[0], *args]
    if not any(a in ("--help", "-h", "--hydra-help", "--info") or a.startswith("--cfg") for a in args):
        _check_outputs(args)
    _main()
    from cft_lab.report.callback import FAILED

    if FAILED:  # a failed cell (single run) or any failed cell of a sweep, after its table was rendered
        names = ", ".join(str(f.get("cell")) for f in FAILED[:10]) + (" ..." if len(FAILED) > 10 else "")
        print(f"error: {len(FAILED)} cell(s) failed: {names}", file=sys.stderr, flush=True)
        sys.exit(1)
