"""``python -m cft_lab``: the one train-eval entrypoint (Hydra). One job = one cell; a table is a multirun sweep.

    python -m cft_lab                                # the embedded default: tiny_math, CFT, testbed
    python -m cft_lab method=sft model=tiny_small    # another cell
    python -m cft_lab table=table2_tiny              # a whole table (multirun), rendered when the sweep ends
    python -m cft_lab table=table2 dry_run=true      # the paper-scale plan: cells, keys, hyper-parameters
    python -m cft_lab tables table2_tiny             # re-render a table from the store (cft_lab.report.tables)
    python -m cft_lab compare KEY_A KEY_B            # paired test of two cells (cft_lab.eval.compare)
    python -m cft_lab dashboard table2_tiny          # a table's W&B view and comparison files (report.dashboard)
    python -m cft_lab --help                         # what it does, the groups and their options

A first argument that is a bare word (no ``=``, not a flag) names a subcommand; Hydra overrides always contain ``=``
or start with ``+``/``~``/``-``, so the two never collide.
"""

from __future__ import annotations

import json
import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

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

    try:
        cfg = to_config(dcfg)
    except ConfigError as e:  # an impossible combination: one line that names the choices, no traceback
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    if cfg.dry_run and not _in_multirun():  # a sweep prints one resolved config and the plan when it ends
        print(OmegaConf.to_yaml(OmegaConf.create(sanitize(OmegaConf.to_container(dcfg, resolve=True)))), flush=True)
    for cell_cfg in seed_configs(cfg):  # run.seeds=N: one cell per training seed
        if cfg.run.tune:  # a tuning trial: train and select, scored on validation only
            run_trial(cell_cfg)
            continue
        result = run_cell(cell_cfg)
        if result["status"] == "ok" and not cfg.dry_run:
            summary = {
                s["label"]: f"{s['accuracy']:.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}]"
                for s in result["scores"].values()
            }
            log.info("[%s seed %d] %s", result["cell"], cell_cfg.train.seed, json.dumps(summary, ensure_ascii=False))


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


#: Subcommands: name -> module whose ``main(argv)`` takes the remaining arguments.
SUBCOMMANDS = {
    "tables": "cft_lab.report.tables",
    "compare": "cft_lab.eval.compare",
    "dashboard": "cft_lab.report.dashboard",
}


def main() -> None:

    check_checkout()
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        import importlib

        sys.exit(importlib.import_module(SUBCOMMANDS[sys.argv[1]]).main(sys.argv[2:]))
    _main()
