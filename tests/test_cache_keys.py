"""Cache keys are a contract with every existing run store: a refactor that changes one silently recomputes (and, at
paper scale, re-buys) every artefact behind it. ``fixtures/cache_keys.json`` holds the keys of every stage of every
cell of every shipped table sweep (tiny and paper scale) and of single cells with variations, as computed before the
package was reorganised into data-order folders. A key may change only with a deliberate bump of its stage version
(``cft_lab.pipeline.plan.STAGE_VERSIONS``) or of what a key is made of (a testbed base's recipe, a tuned value): then
regenerate the fixture with ``python tests/test_cache_keys.py --write [NAME ...]`` (the same computation as the tests
below; NAMEs = tables or cells to rewrite, default all) and say why in the commit."""

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

FIXTURE_PATH = Path(__file__).parent / "fixtures" / "cache_keys.json"
FIXTURE = json.loads(FIXTURE_PATH.read_text())
TABLES = sorted(t for t in FIXTURE if t != "cells")


def test_the_fixture_covers_every_table_and_variation():
    assert TABLES == ["demo", "table2", "table2_tiny", "table6", "table6_tiny", "table7", "table7_tiny"]
    assert sum(len(FIXTURE[t]) for t in TABLES) == 47  # 5 + 15 + 15 + 3 + 3 + 3 + 3
    assert len(FIXTURE["cells"]) == 9


def table_keys(table: str) -> dict:
    """Every stage key of every cell of a table sweep, by cell name."""
    got = {}
    for cfg in expand(table, []):
        plan = plan_cell(cfg)
        got[plan.name] = {stage_label(s): s.key for s in plan.stages}
    return got


def cell_keys(overrides: list[str]) -> dict:
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_config(compose("config", overrides=overrides))
    return {stage_label(s): s.key for s in plan_cell(cfg).stages}


@pytest.mark.parametrize("table", TABLES)
def test_table_keys_are_unchanged(table):
    assert table_keys(table) == FIXTURE[table]


@pytest.mark.parametrize("name", sorted(FIXTURE["cells"]))
def test_cell_keys_are_unchanged(name):
    entry = FIXTURE["cells"][name]
    assert cell_keys(entry["overrides"]) == entry["stages"]


def main(argv: list[str] | None = None) -> None:
    """Rewrite the fixture's entries (tables and cells by name; all by default) from the current code and configs."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="write the fixture (default: print what would change)")
    parser.add_argument("names", nargs="*", help=f"tables ({', '.join(TABLES)}) or cells; default: all")
    args = parser.parse_args(argv)
    names = args.names or [*TABLES, *sorted(FIXTURE["cells"])]
    fixture = json.loads(FIXTURE_PATH.read_text())
    for name in names:
        if name in TABLES:
            new, old = table_keys(name), fixture[name]
            fixture[name] = new
        elif name in fixture["cells"]:
            entry = fixture["cells"][name]
            new, old = cell_keys(entry["overrides"]), entry["stages"]
            entry["stages"] = new
        else:
            parser.error(f"unknown table or cell {name!r}")
        print(f"{name}: {'unchanged' if new == old else 'CHANGED'}")
    if args.write:
        FIXTURE_PATH.write_text(json.dumps(fixture, indent=1, sort_keys=True))  # the layout it was pinned in
        print(f"wrote {FIXTURE_PATH}")


if __name__ == "__main__":
    main()
