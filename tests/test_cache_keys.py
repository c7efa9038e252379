"""Cache keys are a contract with every existing run store: a refactor that changes one silently recomputes (and, at
paper scale, re-buys) every artefact behind it. ``fixtures/cache_keys.json`` holds the keys of every stage of every
cell of every shipped table sweep (tiny and paper scale) and of single cells with variations, as computed before the
package was reorganised into data-order folders. A key may change only with a deliberate bump of its stage version
(``cft_lab.pipeline.plan.STAGE_VERSIONS``): then regenerate the fixture and say why in the commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from cft_lab.config import register, to_config
from cft_lab.paths import CONF_DIR
from cft_lab.pipeline.plan import plan_cell, stage_label
from cft_lab.report.tables import expand

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "cache_keys.json").read_text())
TABLES = sorted(t for t in FIXTURE if t != "cells")


def test_the_fixture_covers_every_table_and_variation():
    assert TABLES == ["demo", "table2", "table2_tiny", "table6", "table6_tiny", "table7", "table7_tiny"]
    assert sum(len(FIXTURE[t]) for t in TABLES) == 47  # 5 + 15 + 15 + 3 + 3 + 3 + 3
    assert len(FIXTURE["cells"]) == 9


@pytest.mark.parametrize("table", TABLES)
def test_table_keys_are_unchanged(table):
    got = {}
    for cfg in expand(table, []):
        plan = plan_cell(cfg)
        got[plan.name] = {stage_label(s): s.key for s in plan.stages}
    assert got == FIXTURE[table]


@pytest.mark.parametrize("name", sorted(FIXTURE["cells"]))
def test_cell_keys_are_unchanged(name):
    entry = FIXTURE["cells"][name]
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_config(compose("config", overrides=entry["overrides"]))
    assert {stage_label(s): s.key for s in plan_cell(cfg).stages} == entry["stages"]
