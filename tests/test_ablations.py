"""The training ablations' capabilities: objective mixtures (pairs and masks per part), training chains (a child trains
from its parent's selected checkpoint, and its keys follow the parent's), length matching (CFT-Short, a distribution
test), the testbed's Table 5 sources, chat-format SFT data, the new tables' layouts, and Table 4's paper-scale plan."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from cft_lab.config import MixturePart, ObjectiveConfig, load_option
from cft_lab.pipeline.plan import plan_cell
from conftest import REPO, SMOKE, compose, run_paper_dry_run

Q = "Mia has 5 apples. Then Mia buys 3 more apples. How many apples does Mia have now?"


@pytest.fixture(scope="module")
def tokenizer():
    from cft_lab.testbed.bases import MODELS_DIR
    from cft_lab.train.modeling import load_tokenizer

    return load_tokenizer(str(MODELS_DIR / "tiny_small"))


def _records(tmp_path, name, n, critique=True):
    """``n`` records; responses and critiques of 1-6 lines, so that their token lengths spread and overlap."""
    from cft_lab.data.records import Record, write_records

    folder = tmp_path / name
    folder.mkdir()
    recs = []
    for i in range(n):
        steps = 1 + (i * 7) % 6
        response = "\n".join(f"Step {k}: 5 + {k} = {5 + k}." for k in range(1, steps + 1))
        r = Record(id=f"{name}-{i}", question=f"{Q} ({i})", response=response)
        if critique:
            lines = [f"Step {k} is right." for k in range(1, 1 + (i * 5) % 6)]
            verdict = "right" if i % 2 == 0 else "wrong"
            r = r.with_critique("\n".join([*lines, f"Conclusion: {verdict} [END]"]), teacher={"name": "t"})
        recs.append(r)
    write_records(folder / "records.jsonl", recs)
    return folder


# ---- mixtures -----------------------------------------------------------------------------------------------------


def test_a_mixtures_pairs_are_built_and_masked_by_each_parts_objective(tmp_path, tokenizer):
    from cft_lab.train.objectives import build_pairs
    from cft_lab.train.stage import TrainPart, _part_rows
    from cft_lab.train.tokenize import tokenize_pairs

    cfg = compose(SMOKE)
    cft, sft = load_option("objective", "cft", ObjectiveConfig), load_option("objective", "sft", ObjectiveConfig)
    a, b = _records(tmp_path, "crit", 10), _records(tmp_path, "solv", 6, critique=False)
    rows_a, counts_a = _part_rows(cfg, TrainPart(cft, a, name="part 0 (cft)"), tokenizer)
    rows_b, counts_b = _part_rows(cfg, TrainPart(sft, b, count=4, name="part 1 (sft)"), tokenizer)
    # each part's rows are exactly its own objective's pairs, tokenized and masked as that objective's
    for obj, folder, rows in ((cft, a, rows_a), (sft, b, rows_b)):
        records = [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines()]
        expected, _ = tokenize_pairs(build_pairs(obj, records)[0], tokenizer, cfg.train.cutoff_len)
        by_id = {r["id"]: r for r in expected}
        assert all(r == by_id[r["id"]] for r in rows)
    assert len(rows_a) == 10 and counts_a["pairs"] == 10 and counts_a["objective"] == "cft"
    assert len(rows_b) == 4 and counts_b["sampled"] == 4 and counts_b["examples"] == 4
    assert counts_b["loss_tokens"] == sum(sum(r["completion_mask"]) for r in rows_b)
    # a CFT row's loss is on the critique only, an SFT row's on the response only
    cft_row = rows_a[0]
    target = tokenizer.decode([t for t, m in zip(cft_row["input_ids"], cft_row["completion_mask"]) if m])
    assert target.startswith("Conclusion: right [END]")  # record 0: no critique lines, a right verdict
    sft_row = rows_b[0]
    assert tokenizer.decode([t for t, m in zip(sft_row["input_ids"], sft_row["completion_mask"]) if m]).startswith(
        "Step 1: 5 + 1 = 6."
    )


def test_a_mixture_cell_plans_one_data_artefact_per_part_and_refuses_a_bad_part():
    from cft_lab.config import ConfigError

    cfg = compose(SMOKE + ["objective=mix_cft_acemath_tiny"])
    plan, cft = plan_cell(cfg), plan_cell(compose(SMOKE + ["objective=cft"]))
    assert plan.part_keys() == [
        cft.key_of("data"),
        # a part loads its options as their YAML writes them: the cell's data.testbed.n_train=48 does not apply
        plan_cell(compose(["data=testbed_acemath", "objective=sft"])).key_of("data"),
    ]
    assert cfg.objective.parts == [MixturePart(objective="cft"), MixturePart(objective="sft", data="testbed_acemath")]
    with pytest.raises(ConfigError, match=r"part 0 \(cft\): objective=cft needs the teacher's critiques"):
        compose(SMOKE + ["objective=mix_cft_acemath_tiny", "teacher=none"])


def test_a_mixture_trains_through_the_pipeline_with_counts_per_part(outputs):
    from cft_lab.pipeline.cell import run_cell

    cfg = compose(
        SMOKE
        + [
            f"paths.outputs={outputs}",
            "objective=mix_cft_acemath_tiny",
            "data.testbed.n_train=24",
            "eval.benchmarks=[testbed_2step]",
        ]
    )
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("traceback")
    t = result["train_examples"]
    assert [p["objective"] for p in t["parts"]] == ["cft", "sft"]
    # the CFT part is the cell's data (n_train=24); testbed_acemath is loaded as its YAML writes it (2000)
    assert t["parts"][0]["records"] == 24 and t["parts"][1]["records"] == 2000
    assert t["examples"] == sum(p["examples"] for p in t["parts"]) == 24 + 2000
    assert set(result["data_card"]) == {"part 0", "part 1"}


# ---- chains -------------------------------------------------------------------------------------------------------


def test_a_chain_childs_keys_include_the_parents():
    child = plan_cell(compose(SMOKE + ["method=cft_then_acemath_tiny"]))
    # the parent: this cell's recipe with the chain's options, its data loaded as conf/data/testbed.yaml writes it
    parent = plan_cell(compose([o for o in SMOKE if not o.startswith("data.")] + ["objective=cft"]))
    for stage in ("data", "train", "select"):
        assert child.key_of(stage, "parent") == parent.key_of(stage)
    other = plan_cell(compose(SMOKE + ["method=cft_then_acemath_tiny", "chain.data=testbed_numina"]))
    assert other.key_of("data") == child.key_of("data")  # the child's own data is the same
    for stage in ("train", "select", "grade"):  # every key after it changes with the parent
        assert other.key_of(stage) != child.key_of(stage)
    assert set(other.infer_keys().values()).isdisjoint(child.infer_keys().values())
    assert other.key_of("data", "parent") != child.key_of("data", "parent")


def test_a_chain_child_trains_from_the_parents_selected_checkpoint(outputs):
    from cft_lab.pipeline.cell import run_cell
    from cft_lab.pipeline.store import DONE, Store

    over = SMOKE + [f"paths.outputs={outputs}", "eval.benchmarks=[testbed_2step]", "data.testbed.n_train=24"]
    cfg = compose(over + ["method=cft_then_acemath_tiny"])
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("traceback")
    store, plan = Store(outputs), plan_cell(cfg)
    parent = json.loads((store.path("select", plan.key_of("select", "parent")) / "selection.json").read_text())
    done = json.loads((store.path("train", plan.key_of("train")) / DONE).read_text())
    assert done["base"] == parent["selected"]["path"]  # the child started from the parent's selected checkpoint
    assert (store.path("train", plan.key_of("train", "parent")) / DONE).is_file()
    assert not store.cell_result(plan_cell(compose(over + ["objective=cft"])).key)  # only the parent's training ran


# ---- length matching ----------------------------------------------------------------------------------------------


def test_length_matching_follows_the_reference_distribution():
    from cft_lab.train.lengths import ks_statistic, match_lengths

    rng = random.Random(0)
    reference = [max(5, int(rng.gauss(60, 15))) for _ in range(2000)]  # short responses
    candidates = {f"c{i}": max(5, int(rng.gauss(140, 60))) for i in range(3000)}  # longer critiques, wider
    keep, report = match_lengths(candidates, reference, bins=10, seed=0)
    kept = [candidates[k] for k in keep]
    assert report["ks_candidates"] > 0.5 and report["ks_kept"] < 0.1  # far apart before, close after
    assert abs(np.median(kept) - np.median(reference)) < 5 and report["kept"] == len(keep) > 100
    edges = np.quantile(reference, np.arange(1, 10) / 10)
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=10) / len(reference)
    kept_share = np.bincount(np.searchsorted(edges, kept, side="right"), minlength=10) / len(kept)
    assert np.abs(ref_share - kept_share).max() < 0.01  # each bin holds the reference's share
    assert match_lengths(candidates, reference, bins=10, seed=0)[0] == keep  # seeded
    assert match_lengths(candidates, reference, bins=10, seed=1)[0] != keep
    assert ks_statistic(kept, reference) == pytest.approx(report["ks_kept"], abs=1e-4)


def test_cft_short_keeps_the_length_matched_critiques(tmp_path, tokenizer):
    from cft_lab.train.stage import TrainPart, _part_rows

    cfg = compose(SMOKE)
    short = load_option("objective", "cft_short", ObjectiveConfig)
    rows, counts = _part_rows(cfg, TrainPart(short, _records(tmp_path, "crit", 40)), tokenizer)
    lm = counts["length_match"]
    assert lm["reference_objective"] == "sft" and lm["candidates_total"] == 40 and lm["kept"] == len(rows)
    assert counts["examples"] == len(rows) <= 40 and counts["pairs"] == 40


# ---- testbed sources, chat data ----------------------------------------------------------------------------------


def test_the_table5_testbed_sources_differ_as_designed():
    from cft_lab.data.stage import build_records

    meta = build_records(compose(SMOKE + ["data=testbed_metamath", "data.testbed.n_train=200"]))[0]
    assert len(meta) == 200 and len({r.id for r in meta}) == 200
    chains = {(r.gold, r.response.split("\n")[0]) for r in meta if r.response_correct}
    assert len(chains) <= 50 + 5  # 4 phrasings of 50 problems: the right answers repeat
    assert 0.03 <= sum(not r.response_correct for r in meta) / 200 <= 0.2  # ~10% wrong
    numina, _ = build_records(compose(SMOKE + ["data=testbed_numina", "data.testbed.n_train=200"]))
    assert {r.response.count("Step ") for r in numina if r.response_correct} <= {3, 4, 5}
    web, _ = build_records(compose(SMOKE + ["data.testbed.n_train=200"]))
    assert 0.35 <= sum(not r.response_correct for r in web) / 200 <= 0.65


def test_chat_format_sft_rows_are_read_and_bad_ones_named(tmp_path):
    from cft_lab.data.sources import SourceError, SourceSpec, load_source

    path = str(REPO / "tests/fixtures/sources/chat_messages.jsonl")
    spec = SourceSpec(kind="hub", schema="chat_messages", path="json", data_files=path, on_error="skip")
    res = load_source(spec)
    assert [(r.question, r.gold) for r in res.records] == [("What is 2+3?", "5"), ("What is 7*6?", None)]
    assert res.skipped == {"messages: no assistant turn with text": 1}
    with pytest.raises(SourceError, match="row 2: field 'messages': no assistant turn"):
        load_source(SourceSpec(kind="hub", schema="chat_messages", path="json", data_files=path))


# ---- layouts and Table 4 ------------------------------------------------------------------------------------------


def test_table5_columns_keep_the_stand_in_alias_and_align_with_the_paper():
    from cft_lab.report import BenchScore, CellResult, align_paper
    from cft_lab.report.ablations import paper_frame, table5_frame

    cells = [
        CellResult("tiny", m, None, "ok", None, {"MATH": BenchScore(30 + i, 100, 25.0, 40.0)}, f"k{i}", data=d)
        for i, (d, m) in enumerate(
            [("Testbed-rephrased (≈MetaMathQA)", "sft"), ("Testbed-rephrased (≈MetaMathQA)", "cft")]
        )
    ]
    frame = table5_frame(cells, ["MATH"])
    assert list(frame.columns) == ["Testbed-rephrased-SFT (≈MetaMathQA-SFT)", "Testbed-rephrased-CFT (≈MetaMathQA-CFT)"]
    paper = paper_frame("table5")
    assert list(align_paper(frame, paper).loc["MATH"]) == [57.5, 74.4]
    assert paper_frame("table5", "v3_v4").loc["AVG", "WebInstruct-CFT"] == 57.1


def test_table4_composes_and_dry_runs_its_paper_plan(tmp_path):
    pinned = "data.source.revision=" + "0" * 40  # unpinned, the trained cell is refused (tests/test_bad_input.py)
    proc = run_paper_dry_run(["cft_lab", "table=table4", "dry_run=true", pinned, "model.allow_unpinned=true"], tmp_path,
                             timeout=300)  # fmt: skip
    out = proc.stdout
    assert "table4: 3 cells" in out
    assert "cell qwen2_5_32b_instruct/base" in out and "cell sky_t1_32b_preview/sky_t1_base" in out
    assert "batch 8x8x8=512" in out and "torchrun+conf/deepspeed/zero3.json" in out
    assert "webinstruct_cft_4k x reference responses" in out and "replays the released critiques" in out
    assert "gpqa 198, theoremqa 800, amc23 40" in out
    assert not (tmp_path / "store").exists()  # a dry run builds nothing


def test_the_dry_run_checks_every_data_stage_of_a_mixture_and_a_chain(outputs, monkeypatch, capsys):
    """A mixture's part or a chain's parent that buys from a paid teacher is checked (key, budget) like the cell's
    own data stage: a missing key is refused before anything runs, naming the stage's role."""
    import dataclasses

    from cft_lab.pipeline.cell import run_cell

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    over = SMOKE + [f"paths.outputs={outputs}", "dry_run=true"]
    mix = compose(over + ["objective=mix_cft_acemath_tiny"])
    assert run_cell(mix)["status"] == "planned"  # the rule teacher: nothing to buy, nothing to refuse
    parts = list(mix.objective.parts or [])
    mix.objective = dataclasses.replace(mix.objective, parts=[dataclasses.replace(parts[0], teacher="gpt4o_mini")])
    mix.objective.parts += parts[1:]
    result = run_cell(mix)
    assert result["status"] == "failed"
    assert "part 0: teacher=gpt4o_mini: environment variable OPENAI_API_KEY" in result["error"]

    chain = compose(over + ["method=cft_then_acemath_tiny", "chain.teacher=gpt4o_mini"])
    result = run_cell(chain)
    assert result["status"] == "failed" and "parent: teacher=gpt4o_mini: environment variable" in result["error"]
    assert "refused: parent: teacher=gpt4o_mini" in capsys.readouterr().out
    assert not (outputs / "store").exists()  # a dry run builds nothing
