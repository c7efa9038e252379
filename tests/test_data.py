"""The data stage: testbed records for every arm, the released WebInstruct-CFT schema from a local file with its
critiques replayed, teachers behind one interface, self-generated responses, and the teacher's failures refusing
to finish a dataset."""

from __future__ import annotations

import json

import pytest

from cft_lab.data.stage import TeacherStageError, build_records, check_teacher, data_card
from cft_lab.pipeline.store import read_jsonl
from conftest import PAPER_WORLD_TINY, compose

INSTRUCTION = "Please critique whether the following solution to the question is correct."
# a local directory stands in for the 7B hub model's tokenizer (the card counts tokens with it); nothing is trained
TINY_MATH_DIR = __import__("cft_lab.paths", fromlist=["x"]).ASSETS_DIR / "testbed" / "models" / "tiny_math"


def test_testbed_records_match_across_arms_and_card_counts(tmp_path):
    cft, info = build_records(compose(["objective=cft", "data.testbed.n_train=300"]), tmp_path)
    sft, _ = build_records(compose(["objective=sft", "data.testbed.n_train=300"]), tmp_path)
    assert [r.id for r in cft] == [r.id for r in sft]  # matched question ids
    assert [r.response for r in cft] == [r.response for r in sft]
    assert all(r.critique is None and r.status == "no_teacher" for r in sft)
    assert all(r.critique and r.status == "ok" for r in cft)
    assert info["teacher"]["ok"] == 300 and info["teacher"]["failed"] == 0
    card = data_card(cft, info)
    assert card["records"] == 300
    assert card["agreement"]["rate"] == 1.0  # the strong rule teacher never errs
    weak, winfo = build_records(
        compose(["objective=cft", "teacher=testbed_weak", "data.testbed.n_train=300"]), tmp_path
    )
    assert 0.7 < data_card(weak, winfo)["agreement"]["rate"] < 0.95
    # sft_teacher asks for the teacher's own answers, not critiques
    st, sinfo = build_records(compose(["objective=sft_teacher", "data.testbed.n_train=50"]), tmp_path)
    assert all(r.teacher_solution and r.critique is None for r in st)


def _released(tmp_path, rows):
    path = tmp_path / "webinstruct_cft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


RELEASED = [
    {
        "instruction": INSTRUCTION,
        "input": "Question:\nWhat is 2+2?\n\nSolution:\n2+2=5",
        "output": "The sum is 4.\n\nConclusion: wrong [END]",
    },
    {
        "instruction": INSTRUCTION,
        "input": "Question:\nIs 7 prime?\n\nSolution:\nYes.",
        "output": "Correct.\n\n**Conclusion: right [END]**",
    },
]


def test_released_schema_from_a_local_file_replays_the_released_critiques(tmp_path):
    path = _released(tmp_path, RELEASED)
    local = ["data.source.kind=webinstruct_cft", f"data.source.path={path}"]
    records, info = build_records(compose(PAPER_WORLD_TINY + local + ["objective=cft"]), tmp_path)
    assert [(r.question, r.response, r.verdict, r.status) for r in records] == [
        ("What is 2+2?", "2+2=5", "wrong", "ok"),
        ("Is 7 prime?", "Yes.", "right", "ok"),
    ]
    assert info["teacher"]["teacher"]["kind"] == "replay"  # gpt4o_1120 + prompt v1 = who wrote the released data
    assert records[0].teacher["model"] == "gpt-4o-2024-11-20"


def test_a_paper_world_teacher_without_its_key_fails_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = _released(tmp_path, RELEASED)
    local = ["data.source.kind=webinstruct_cft", f"data.source.path={path}"]
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        build_records(compose(PAPER_WORLD_TINY + local + ["objective=cft", "teacher=gpt4o_mini"]), tmp_path)


def test_hub_source_must_be_pinned():
    with pytest.raises(ValueError, match="revision"):
        build_records(compose(PAPER_WORLD_TINY + ["objective=sft"]))


def test_check_teacher_refuses_failures_and_budget_cuts():
    cfg = compose(["objective=cft"])
    check_teacher(cfg, {"ok": 10, "failed": 0, "budget_exhausted": 0})
    with pytest.raises(TeacherStageError, match="retry_failed=true"):
        check_teacher(cfg, {"ok": 9, "failed": 1, "budget_exhausted": 0})
    check_teacher(compose(["objective=cft", "teacher.max_failed=1"]), {"ok": 9, "failed": 1, "budget_exhausted": 0})
    with pytest.raises(TeacherStageError, match="budget"):
        check_teacher(cfg, {"ok": 5, "failed": 0, "budget_exhausted": 5, "cost_usd": 1.0})


def test_self_generated_responses_come_from_the_base_model(tmp_path):
    over = [
        "objective=cft",
        "data.testbed.n_train=24",
        "response_source=self_generated",
        "inference.max_new_tokens=48",
        "run.num_threads=1",
    ]
    records, info = build_records(compose(over), tmp_path)
    ref, _ = build_records(compose(["objective=cft", "data.testbed.n_train=24"]), tmp_path)
    assert [r.id for r in records] == [r.id for r in ref]
    assert all(r.response_source == "self_generated:tiny_math" for r in records)
    assert sum(r.response != q.response for r, q in zip(records, ref)) > 12  # the model's own text
    assert all(r.response_correct is not None and r.critique for r in records)
    # the strong rule teacher judges the model's responses against the truth, step by step: a right answer reached
    # through a wrong step (13 * 2 * 3 for 13 * 3 * 2) is judged wrong, and the critique says the answer is a fluke
    for r in records:
        if r.response_correct and r.verdict != "right":
            assert "happens to be right" in r.critique, r.critique
        else:
            assert (r.verdict == "right") == r.response_correct, (r.response, r.critique)
    assert sum(r.verdict == "right" for r in records) >= 1 and sum(r.verdict == "wrong" for r in records) >= 1
    again, _ = build_records(compose(over), tmp_path)
    assert [r.response for r in again] == [r.response for r in records]  # per-question seeds: reproducible


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"records.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


def test_openai_teacher_through_the_data_stage_against_a_loopback_server(tmp_path, monkeypatch):
    """The data stage with an OpenAI-compatible teacher (the fault-injecting TEST server on loopback): critiques of
    every row, costs on the card, a failure beyond max_failed refusing the artefact, a rerun that re-asks only the
    failed request, and the API key in no file the stage wrote."""
    from cft_lab.data.stage import run_data
    from cft_lab.pipeline.plan import plan_cell
    from cft_lab.pipeline.store import Store
    from cft_lab.testing.chat_server import ChatServer, FaultPlan

    secret = "sk-test-DATA-STAGE-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    rows = [
        {
            "instruction": INSTRUCTION,
            "input": f"Question:\nWhat is {i}+{i}?\n\nSolution:\n{i}+{i}={2 * i + i % 2}",
            "output": "released critique, not used: the teacher is gpt-4o-mini",
        }
        for i in range(12)
    ]
    path = _released(tmp_path, rows)
    outputs = tmp_path / "outputs"
    # the 5th request fails for good (400: not retried), everything else answers after 20 ms
    with ChatServer(latency=0.02, faults=FaultPlan(schedule=["ok"] * 4 + ["400"])) as srv:
        over = PAPER_WORLD_TINY + [
            "data.source.kind=webinstruct_cft",
            f"data.source.path={path}",
            "objective=cft",
            "teacher=gpt4o_mini",
            f"teacher.base_url={srv.url}",
            "teacher.concurrency=1",
            f"paths.outputs={outputs}",
            f"model.path={TINY_MATH_DIR}",
        ]
        cfg = compose(over)
        store = Store(outputs)
        key = plan_cell(cfg).key_of("data")
        with pytest.raises(TeacherStageError, match="1 requests failed"):
            run_data(cfg, store, key)
        assert not store.done("data", key) and sum(srv.requests_by_key.values()) == 12
        # a plain rerun does not re-ask the stored failure; retry_failed re-asks it, and only it
        with pytest.raises(TeacherStageError):
            run_data(cfg, store, key)
        assert sum(srv.requests_by_key.values()) == 12
        run_data(compose(over + ["teacher.retry_failed=true"]), store, key)
        assert sum(srv.requests_by_key.values()) == 13 and store.done("data", key)
    records = [json.loads(x) for x in (store.path("data", key) / "records.jsonl").open()]
    assert len(records) == 12 and all(r["status"] == "ok" and r["verdict"] in ("right", "wrong") for r in records)
    assert all(r["teacher"]["model"] == "gpt-4o-mini" and r["cost_usd"] > 0 for r in records)
    card = json.loads((store.path("data", key) / "card.json").read_text())
    assert card["teacher"]["cost_usd"] > 0 and card["by_status"]["ok"] == 12
    assert card["arms"]["cft"]["usable"] == 12
    run = card["teacher_run"]["run"]  # the last run (the retry): its rate and what the window learned
    assert run["mode"] == "sync" and run["asked"] == 1 and run["achieved_rps"] > 0 and run["throttled_429"] == 0
    assert "## Teacher run" in (store.path("data", key) / "card.md").read_text()
    leaked = [p for p in outputs.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []


def test_several_self_generated_responses_per_question_become_records(tmp_path):
    over = [
        "objective=cft",
        "data.testbed.n_train=12",
        "response_source=self_generated",
        "response_source.n=2",
        "response_source.temperature=1.0",
        "inference.max_new_tokens=40",
        "run.num_threads=1",
    ]
    records, info = build_records(compose(over), tmp_path)
    assert len(records) == 24 and records[0].id.endswith("#0") and records[1].id.endswith("#1")
    assert records[0].meta["question_id"] == records[1].meta["question_id"] == records[0].id[:-2]
    differ = sum(a.response != b.response for a, b in zip(records[::2], records[1::2]))
    assert differ >= 3, differ  # two samples, not one response twice (the tiny model is confident: few differ)
    assert info["teacher"]["ok"] == 24 and all((r.verdict == "right") == r.response_correct for r in records)


def test_a_local_hf_teacher_writes_critiques_with_the_models_chat_template(tmp_path):
    """teacher.kind=hf: the paper's teacher prompt rendered with the model's own chat template and generated with
    the hf backend (a tiny model stands in for a local open-weights teacher: its critiques are not good ones)."""
    over = [
        "objective=cft",
        "data.testbed.n_train=8",
        "teacher.kind=hf",
        f"teacher.model={TINY_MATH_DIR}",
        "teacher.max_tokens=24",
        "teacher.temperature=0.0",
        "run.num_threads=1",
    ]
    records, info = build_records(compose(over), tmp_path)
    assert info["teacher"]["teacher"]["kind"] == "hf" and info["teacher"]["ok"] + info["teacher"]["failed"] == 8
    done = [r for r in records if r.status == "ok"]
    assert done and all(r.critique and r.tokens["completion"] <= 24 and r.cost_usd == 0.0 for r in done)
    assert all(r.teacher["model"] == str(TINY_MATH_DIR) and r.teacher["sampling"]["max_tokens"] == 24 for r in done)
    again, _ = build_records(compose(over), tmp_path)
    assert [r.critique for r in again] == [r.critique for r in records]  # greedy: the same critiques
