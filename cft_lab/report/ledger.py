"""The compute ledger: what each cell cost in device time, read from the store (every artefact's ``DONE.json`` holds
its build record, ``cft_lab.pipeline.store.build_record``: wall seconds, devices, device type, host).

A cell's ledger sums its stages (a chain's parent and a mixture's parts included): device-hours = wall hours x
devices, per device type, for training alone and for every stage (data, train, select, infer, grade). It counts what
building the artefacts took when they were built, whichever run built them: a cell found in the cache costs what it
cost then. An artefact built before the ledger existed has no record: it is named in ``unrecorded``, never guessed.
An API model's generations run on someone else's devices (type ``api``, 0 devices): they cost money (the request
cost in ``generator.json``), not device-hours here.

>>> hours({"wall_s": 1800, "devices": 8, "device_type": "NVIDIA H100 80GB HBM3"})
4.0
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

from cft_lab.pipeline.store import DONE, Store

if TYPE_CHECKING:
    from cft_lab.config import Config


def hours(build: dict) -> float:
    """Device-hours of one build record."""
    return float(build["wall_s"]) * int(build["devices"]) / 3600.0


def cell_ledger(cfg: Config) -> dict:
    """``{"stages": [...], "device_hours": {type: h}, "train_device_hours": {type: h}, "unrecorded": [...]}``."""
    from cft_lab.pipeline.plan import plan_cell, stage_label

    store = Store(cfg.paths.outputs)
    stages, total, train, unrecorded = [], defaultdict(float), defaultdict(float), []
    for s in plan_cell(cfg).stages:
        name = stage_label(s)  # role:stage, and infer/<benchmark>: one infer artefact per benchmark
        done = store.path(s.stage, s.key) / DONE
        if not done.is_file():
            unrecorded.append(f"{name} (not built)")
            continue
        build = json.loads(done.read_text(encoding="utf-8")).get("build")
        if build is None:
            unrecorded.append(f"{name} (built before the ledger)")
            continue
        h = hours(build)
        stages.append({"stage": name, "key": s.key, **build, "device_hours": round(h, 6)})
        total[build["device_type"]] += h
        if s.stage == "train":
            train[build["device_type"]] += h
    return {
        "stages": stages,
        "device_hours": {k: round(v, 6) for k, v in total.items()},
        "train_device_hours": {k: round(v, 6) for k, v in train.items()},
        "unrecorded": unrecorded,
    }


def summed(by_type: dict[str, float]) -> float:
    """All device-hours of a ledger entry whatever the device (API rows contribute 0 devices)."""
    return float(sum(v for k, v in by_type.items() if k != "api"))
