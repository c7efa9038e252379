"""Training seeds: ``run.seeds=N`` trains every row of a table N times, as N cells.

Seed i of a row is the row's config with ``train.seed + i`` (the trainer's seed: data order and any dropout; the
testbed's questions, noisy responses and the teacher's critiques stay fixed, so the seeds measure how much retraining
alone moves a score). Each seed is an ordinary cell with its own keys, so seed 0 is the row's one-seed cell, a second
run with more seeds trains only the new ones, and a seed that two tables share is trained once. A row that trains
nothing (the base model, evaluated greedily) is one cell whatever N is.

>>> from cft_lab.config import Config                                     # doctest: +SKIP
>>> [c.train.seed for c in seed_configs(cfg)]   # cfg.run.seeds == 3       # doctest: +SKIP
[42, 43, 44]
"""

from __future__ import annotations

import dataclasses

from cft_lab.config import Config
from cft_lab.train.objectives import spec


def seed_configs(cfg: Config) -> list[Config]:
    """The cells of one row: one per training seed (one for a row that trains nothing)."""
    if cfg.run.seeds <= 1 or not spec(cfg.objective).trains:
        return [cfg]
    return [
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=cfg.train.seed + i))
        for i in range(cfg.run.seeds)
    ]
