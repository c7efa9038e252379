"""SFT-verified as the paper built it (issue 13, item 7): the rows of a larger critiqued pool judged right, sampled to
the size of the CFT set (WebInstruct-CFT-600K -> 50K), with the same-50K variant kept as ``method=sft_verified_same50k``
and the table's footnote saying which construction each cell used."""

from __future__ import annotations

import json

import pytest

from cft_lab.config import own_data_config, uses_pool
from cft_lab.pipeline.estimate import estimate_cell
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store, read_jsonl
from cft_lab.report.tables import expand
from conftest import SMOKE, run_cli

PAPER = ["model.allow_unpinned=true", "model=qwen2_5_math_7b"]


def _cell(table: str, method: str, extra: list[str] = ()):
    (cfg,) = [c for c in expand(table, [*PAPER, f"method={method}", *extra])]
    return cfg


def test_table2_sft_verified_samples_50k_from_the_600k_pool_and_same50k_keeps_the_cft_records():
    paper = _cell("table2", "sft_verified")
    same = _cell("table2", "sft_verified_same50k")
    cft = _cell("table2", "cft")
    assert uses_pool(paper) and not uses_pool(same) and not uses_pool(cft)
    assert own_data_config(paper).data.source.config_name == "WebInstruct-CFT-600K"
    # one hub repository, one pin: the 50K's data.source.revision pins the 600K pool too
    pinned = own_data_config(_cell("table2", "sft_verified", ["data.source.revision=" + "a" * 40]))
    assert pinned.data.source.revision == "a" * 40 and not pinned.data.source.allow_unpinned
    plans = {name: plan_cell(c) for name, c in (("paper", paper), ("same", same), ("cft", cft))}
    data = {name: p.key_of("data") for name, p in plans.items()}
    assert data["same"] == data["cft"] != data["paper"]  # same-50K: the CFT arm's very records
    assert len({p.key_of("train") for p in plans.values()}) == 3
    assert "webinstruct_cft_600k" in next(s.summary for s in plans["paper"].stages if s.stage == "data")
    # the estimate trains 50K sampled pairs (98 steps at batch 512), not the 600K pool's rows
    said = " | ".join(estimate_cell(paper, plans["paper"]).assumptions)
    assert "50000 examples" in said and "(data.pool_sample)" in said and "98 steps" in said, said
    said = " | ".join(estimate_cell(same, plans["same"]).assumptions)
    assert "50000 examples x 1200 tokens (data.rows)" in said, said  # before the data is built: the 50K's rows
    # a different sample size is a different train artefact over the same pool artefact
    other = plan_cell(_cell("table2", "sft_verified", ["data.pool_sample=40000"]))
    assert other.key_of("data") == data["paper"] and other.key_of("train") != plans["paper"].key_of("train")


def test_objective_pool_without_a_pool_in_the_data_is_refused_naming_the_fields():
    cfg = expand("demo", ["method=sft_verified", "objective.pool=true"])[0]
    with pytest.raises(ValueError, match=r"data=testbed sets no data.pool .* and data.pool_sample"):
        plan_cell(cfg)
    # the shipped testbed names no pool: its SFT-verified arm keeps the same-records construction
    assert not uses_pool(expand("demo", ["method=sft_verified"])[0])


def test_a_pool_cell_trains_on_the_sampled_judged_right_rows_of_the_pool_and_the_table_says_so(outputs):
    args = ["cft_lab", "table=demo", "method=sft_verified", *SMOKE, "data.pool=testbed_pool", "data.pool_sample=40"]
    proc = run_cli(args, outputs, timeout=900)
    cfgs = expand("demo", ["method=sft_verified", *SMOKE[1:], "data.pool=testbed_pool", "data.pool_sample=40"])
    (pooled,) = cfgs
    plan = plan_cell(pooled)
    store = Store(str(outputs))
    pool_records = {r["id"]: r for r in read_jsonl(store.path("data", plan.key_of("data")) / "records.jsonl")}
    assert len(pool_records) == 8000  # conf/data/testbed_pool.yaml, not the cell's 48 records
    pairs = json.loads((store.path("train", plan.key_of("train")) / "pairs.json").read_text())
    assert pairs["sampled"] == 40 and pairs["examples"] == 40
    # the judged-right rows of the pool, before the sample
    assert pairs["records"] == 8000 and pairs["pairs"] > 1000 and pairs["skipped"]["judged wrong"] > 1000
    assert pairs["pairs"] == sum(r["verdict"] == "right" for r in pool_records.values())
    md = (outputs / "tables" / "demo.md").read_text()
    assert "SFT-verified as the paper built it: rows of testbed_pool (data.pool) judged right, 40 sampled" in md
    assert "1/1 cells done" in md, proc.stdout[-2000:]
    # the same-records variant of the same cell: the cell's 48 records, all those judged right, and the table says so
    run_cli([*args[:2], "method=sft_verified_same50k", *args[3:]], outputs, timeout=900)
    md = (outputs / "tables" / "demo.md").read_text()
    assert (
        "SFT-verified from the same records (testbed) judged right, not the paper's sample of 40 from testbed_pool"
        in md
    )
    assert "1/1 cells done" in md
