"""Sources and records: every source kind on fixture files (JSONL, JSON, Parquet), the ``datasets`` code path,
field mapping, errors that name file/line/field, skip counts, duplicate ids, seeded sampling, and the Record
round trip that ``build_pairs`` reads."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from cft_lab.data.records import Record, RecordError, read_records, write_records
from cft_lab.data.sources import SourceError, SourceSpec, check_pinned, load_source
from cft_lab.prompts import CFT_INSTRUCTION, cft_user_turn
from cft_lab.train.objectives import arm_usage

FIX = Path(__file__).parent / "fixtures" / "sources"


def jsonl(path: Path, lines: list) -> Path:
    """Write raw lines (dicts are JSON-encoded, strings written as they are)."""
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def wi_row(q="What is 2 + 2?", y="2 + 2 = 4.", c="Fine.\nConclusion: right [END]"):
    return {"instruction": CFT_INSTRUCTION, "input": f"Question:\n{q}\n\nSolution:\n{y}", "output": c}


# ---------------------------------------------------------------------- kinds
def test_webinstruct_cft_splits_input_and_keeps_released_critique():
    path = FIX / "webinstruct_cft.jsonl"
    res = load_source(SourceSpec(kind="webinstruct_cft", path=str(path)))
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r.id for r in res.records] == ["webinstruct_cft-0", "webinstruct_cft-1", "webinstruct_cft-2"]
    r0, r1, r2 = res.records
    assert r0.question == "A crate holds 4 rows of 6 jars. How many jars are in 3 crates?"
    assert r0.response == "One crate holds 4 * 6 = 24 jars.\nThree crates hold 3 * 24 = 72 jars."
    assert r1.question == "Simplify (x^2 - 9)/(x - 3).\n\nFor which x is it defined?"  # blank lines stay in q
    # the response keeps everything after the first separator, and the repeat is counted
    assert r2.response == "First attempt: 10.\n\nSolution:\n0.15 * 80 = 12."
    assert r2.meta["solution_mark_repeated"] is True and res.provenance["solution_mark_repeated"] == 1
    for rec, row in zip(res.records, rows):
        assert rec.meta["released_critique"] == row["output"]
        assert rec.critique is None and rec.verdict is None and rec.status == "no_teacher"
        # the CFT user turn rebuilds the released instruction + input exactly (docs/protocol.md §1.2, §3.2)
        assert cft_user_turn(rec.question, rec.response) == row["instruction"] + "\n" + row["input"]
        assert rec.source["row"] == res.records.index(rec) and rec.source["name"] == "webinstruct_cft"
    assert res.skipped == {}
    assert res.provenance["sha256"] == {str(path): hashlib.sha256(path.read_bytes()).hexdigest()}
    assert res.provenance["rows_read"] == 3 and res.provenance["records"] == 3


def test_webinstruct_raw_uses_item_index_as_id():
    res = load_source(SourceSpec(kind="webinstruct_raw", path=str(FIX / "webinstruct_raw.jsonl"), name="wi"))
    assert [r.id for r in res.records] == ["wi-501", "wi-77"]
    r = res.records[1]
    assert r.question == "Find the derivative of sin(2x)." and r.response == "cos(2x)"
    assert r.meta == {
        "released_critique": "The chain rule gives 2cos(2x).\n\nConclusion: wrong [END]",
        "origin": "study_forum",
        "released_cost_usd": 0.0008,
    }
    assert r.source["row_id"] == 77 and r.source["row"] == 1
    assert r.cost_usd is None  # the authors' cost is theirs, not a call this run made


def test_metamathqa_json_array_gold_from_answer_line():
    res = load_source(SourceSpec(kind="metamathqa", path=str(FIX / "metamathqa.json")))
    assert [r.gold for r in res.records] == ["12", "\\frac{3}{4}", None]
    assert res.provenance["gold_missing"] == 1
    r = res.records[0]
    assert r.question.startswith("Tom has 3 boxes") and r.response.endswith("The answer is: 12")
    assert r.meta == {"type": "GSM_Rephrased", "original_question": "Tom has 3 boxes of 4 pens. How many pens?"}
    assert r.response_correct is None and r.response_source == "reference"


def test_numinamath_gold_is_last_boxed():
    res = load_source(SourceSpec(kind="numinamath_cot", path=str(FIX / "numinamath_cot.jsonl")))
    assert [r.gold for r in res.records] == ["6", "\\frac{3}{4}", None]
    assert [r.meta["origin"] for r in res.records] == ["synthetic_math", "olympiads", "cn_k12"]
    assert res.records[0].question == "Compute $3/4$ of 8." and "\\boxed{6}" in res.records[0].response
    assert res.provenance["gold_missing"] == 1


FIELD_MAP = {
    "id": "uid",
    "question": "prompt",
    "response": "completion",
    "gold": "answer",
    "response_correct": "is_correct",
}


def test_local_field_map_jsonl_and_parquet_agree(tmp_path):
    res = load_source(SourceSpec(kind="local", path=str(FIX / "local.jsonl"), field_map=FIELD_MAP))
    assert [(r.id, r.question, r.response, r.gold, r.response_correct) for r in res.records] == [
        ("p-1", "What is 7 * 8?", "7 * 8 = 54.", "56", False),
        ("p-2", "What is 9 + 6?", "9 + 6 = 15.", "15", True),
        ("p-3", "What is 2^5?", "2^5 = 32.", None, None),
    ]
    assert res.records[0].source["row_id"] == "p-1"
    rows = [json.loads(x) for x in (FIX / "local.jsonl").read_text().splitlines()]
    pq_path = tmp_path / "local.parquet"
    pd.DataFrame([{**r, "answer": None if r["answer"] is None else str(r["answer"])} for r in rows]).to_parquet(pq_path)
    res_pq = load_source(SourceSpec(kind="local", path=str(pq_path), field_map=FIELD_MAP))
    strip = lambda rs: [{k: v for k, v in r.to_dict().items() if k != "source"} for r in rs]  # noqa: E731
    assert strip(res_pq.records) == strip(res.records)


def test_local_ids_generated_from_name_and_row_when_not_mapped(tmp_path):
    path = jsonl(tmp_path / "mine.jsonl", [{"question": "q0", "response": "y0"}, {"question": "q1", "response": "y1"}])
    res = load_source(SourceSpec(kind="local", path=str(path)))  # default map: question, response
    assert [r.id for r in res.records] == ["mine-0", "mine-1"]
    assert [r.gold for r in res.records] == [None, None]


def test_parquet_webinstruct_rows_name_row_index(tmp_path):
    rows = [wi_row(), wi_row(q="Why?"), {**wi_row(), "input": "no layout here"}]
    pq_path = tmp_path / "wi.parquet"
    pd.DataFrame(rows).to_parquet(pq_path)
    with pytest.raises(SourceError) as e:
        load_source(SourceSpec(kind="webinstruct_cft", path=str(pq_path)))
    assert str(e.value).startswith(f"{pq_path} row 2: field 'input': not in the Question/Solution layout")
    res = load_source(SourceSpec(kind="webinstruct_cft", path=str(pq_path), on_error="skip"))
    assert [r.question for r in res.records] == ["What is 2 + 2?", "Why?"]
    assert res.skipped == {"input: not in the Question/Solution layout": 1}


# ---------------------------------------------------------------------- the datasets code path
def test_hub_kind_loads_through_datasets_json_builder(tmp_path):
    direct = load_source(SourceSpec(kind="metamathqa", path=str(FIX / "metamathqa.json")))
    via = load_source(
        SourceSpec(
            kind="hub",
            schema="metamathqa",
            path="json",
            name="metamathqa",
            data_files=str(FIX / "metamathqa.json"),
            cache_dir=str(tmp_path / "cache"),
        )
    )
    assert [(r.id, r.question, r.response, r.gold, r.meta) for r in via.records] == [
        (r.id, r.question, r.response, r.gold, r.meta) for r in direct.records
    ]
    p = via.provenance
    assert p["kind"] == "hub" and p["schema"] == "metamathqa" and p["rows_in_split"] == 3
    mm = FIX / "metamathqa.json"
    assert p["sha256"] == {str(mm): hashlib.sha256(mm.read_bytes()).hexdigest()}
    assert via.records[0].source["split"] == "train"


def test_hub_kind_loads_a_parquet_folder_and_names_rows(tmp_path):
    folder = tmp_path / "wi_hub"
    folder.mkdir()
    pd.DataFrame([wi_row(), {**wi_row(), "output": ""}, wi_row(q="Last?")]).to_parquet(folder / "train.parquet")
    spec = dict(kind="hub", schema="webinstruct_cft", path=str(folder), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(SourceError, match=r"wi_hub@None/train row 1: field 'output': empty"):
        load_source(SourceSpec(**spec))
    res = load_source(SourceSpec(**spec, on_error="skip", limit=2))
    assert [r.question for r in res.records] == ["What is 2 + 2?"]
    assert res.skipped == {"output: empty": 1} and res.provenance["rows_read"] == 2


def test_unpinned_hub_source_is_refused_and_branches_warn(caplog):
    spec = SourceSpec(
        kind="hub", schema="webinstruct_cft", path="TIGER-Lab/WebInstruct-CFT", config_name="WebInstruct-CFT-50K"
    )
    with pytest.raises(ValueError, match="pinned revision"):
        load_source(spec)
    with caplog.at_level(logging.WARNING, logger="cft_lab.data.sources"):
        msg = check_pinned(
            SourceSpec(kind="hub", schema="webinstruct_cft", path="TIGER-Lab/WebInstruct-CFT", revision="main")
        )
    assert "not a commit sha" in msg and msg in caplog.text
    assert "UNPINNED" in check_pinned(
        SourceSpec(kind="hub", schema="metamathqa", path="meta-math/MetaMathQA", allow_unpinned=True)
    )
    assert (
        check_pinned(SourceSpec(kind="hub", schema="metamathqa", path="meta-math/MetaMathQA", revision="a" * 40))
        is None
    )


# ---------------------------------------------------------------------- bad rows
def bad_wi_file(tmp_path) -> Path:
    return jsonl(
        tmp_path / "bad.jsonl",
        [
            wi_row(),  # line 1: good
            "",  # line 2: blank, not a row
            {k: v for k, v in wi_row().items() if k != "output"},  # line 3: output missing
            {**wi_row(), "input": 42},  # line 4: input wrong type
            wi_row(q="   "),  # line 5: empty question
            {**wi_row(), "input": "Q: x\nA: y"},  # line 6: layout
            "{not json",  # line 7: invalid JSON
            ["a", "list"],  # line 8: not an object
            {k: v for k, v in wi_row().items() if k != "output"},  # line 9: output missing again
            wi_row(q="Last one?"),  # line 10: good
        ],
    )


@pytest.mark.parametrize(
    "line,message",
    [
        (3, "field 'output': missing"),
        (4, "field 'input': wrong type (expected a string, got int)"),
        (5, "field 'input': empty question"),
        (6, "field 'input': not in the Question/Solution layout"),
        (7, "field '<row>': invalid JSON"),
        (8, "field '<row>': not an object (got list)"),
    ],
)
def test_bad_rows_fail_naming_file_line_and_field(tmp_path, line, message):
    path = bad_wi_file(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    # keep the first good line and the bad line at its own line number (blank lines keep the numbering)
    path.write_text("".join(x if i in (0, line - 1) else "\n" for i, x in enumerate(lines)))
    with pytest.raises(SourceError) as e:
        load_source(SourceSpec(kind="webinstruct_cft", path=str(path)))
    assert str(e.value).startswith(f"{path}:{line}: {message}")


def test_skip_counts_bad_rows_by_reason_and_logs(tmp_path, caplog):
    path = bad_wi_file(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cft_lab.data.sources"):
        res = load_source(SourceSpec(kind="webinstruct_cft", path=str(path), on_error="skip"))
    assert [r.question for r in res.records] == ["What is 2 + 2?", "Last one?"]
    assert [r.source["row"] for r in res.records] == [0, 8]  # rows are counted without the blank line
    assert res.skipped == {
        "output: missing": 2,
        "input: wrong type": 1,
        "input: empty question": 1,
        "input: not in the Question/Solution layout": 1,
        "<row>: invalid JSON": 1,
        "<row>: not an object": 1,
    }
    assert res.provenance["skipped"] == res.skipped and res.provenance["rows_read"] == 9
    assert res.provenance["skip_examples"]["output: missing"] == [
        f"{path}:3: field 'output': missing (the row has: input, instruction)",
        f"{path}:9: field 'output': missing (the row has: input, instruction)",
    ]
    assert "skipped 7 of 9 rows" in caplog.text


def test_json_array_errors_name_the_row_index(tmp_path):
    rows = json.loads((FIX / "metamathqa.json").read_text())
    rows[1]["response"] = 7
    path = tmp_path / "mm.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(SourceError, match=r"mm\.json row 1: field 'response': wrong type \(expected a string, got int"):
        load_source(SourceSpec(kind="metamathqa", path=str(path)))


def test_local_mapped_column_missing_and_wrong_types(tmp_path):
    path = jsonl(
        tmp_path / "l.jsonl",
        [
            {"prompt": "q", "completion": "y", "answer": "1", "uid": "a"},
            {"prompt": "q", "answer": "1", "uid": "b"},
            {"prompt": "q", "completion": "y", "answer": [1], "uid": "c"},
            {"prompt": "q", "completion": "y", "answer": "1", "uid": True},
        ],
    )
    fm = {"id": "uid", "question": "prompt", "response": "completion", "gold": "answer"}
    with pytest.raises(SourceError, match=r"l\.jsonl:2: field 'completion': missing"):
        load_source(SourceSpec(kind="local", path=str(path), field_map=fm))
    res = load_source(SourceSpec(kind="local", path=str(path), field_map=fm, on_error="skip"))
    assert [r.id for r in res.records] == ["a"]
    assert res.skipped == {"completion: missing": 1, "answer: wrong type": 1, "uid: wrong type": 1}


def test_duplicate_ids_are_errors(tmp_path):
    path = jsonl(
        tmp_path / "dup.jsonl",
        [
            {"uid": "u1", "prompt": "a", "completion": "b"},
            {"uid": "u2", "prompt": "c", "completion": "d"},
            {"uid": "u1", "prompt": "e", "completion": "f"},
        ],
    )
    fm = {"id": "uid", "question": "prompt", "response": "completion"}
    with pytest.raises(SourceError) as e:
        load_source(SourceSpec(kind="local", path=str(path), field_map=fm))
    assert str(e.value) == f"{path}:3: field 'id': duplicate ('u1' first seen at {path}:1)"
    res = load_source(SourceSpec(kind="local", path=str(path), field_map=fm, on_error="skip"))
    assert [r.question for r in res.records] == ["a", "c"] and res.skipped == {"id: duplicate": 1}


def test_spec_validation_names_the_problem():
    with pytest.raises(ValueError, match="kind 'nope' is unknown"):
        SourceSpec(kind="nope", path="x")
    with pytest.raises(ValueError, match="'field_map' applies to kind 'local'"):
        SourceSpec(kind="metamathqa", path="x.json", field_map={"question": "q"})
    with pytest.raises(ValueError, match="kind 'hub' needs 'schema'"):
        SourceSpec(kind="hub", path="a/b")
    with pytest.raises(ValueError, match="not record fields"):
        SourceSpec(kind="local", path="x.jsonl", field_map={"question": "q", "answer": "a"})
    with pytest.raises(ValueError, match="'sample' must be a positive integer"):
        SourceSpec(kind="local", path="x.jsonl", sample=0)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_source(SourceSpec(kind="local", path="/nonexistent/x.jsonl"))


# ---------------------------------------------------------------------- limit and sample
def many(tmp_path, n=40) -> Path:
    return jsonl(tmp_path / "many.jsonl", [{"question": f"q{i}", "response": f"y{i}"} for i in range(n)])


def test_limit_reads_only_the_first_rows(tmp_path):
    path = jsonl(
        tmp_path / "lim.jsonl",
        [
            {"question": "a", "response": "1"},
            {"question": "b", "response": "2"},
            {"response": "bad row after the limit"},
        ],
    )
    res = load_source(SourceSpec(kind="local", path=str(path), limit=2))
    assert [r.id for r in res.records] == ["lim-0", "lim-1"] and res.provenance["rows_read"] == 2


def test_seeded_sample_is_stable_nested_and_recorded(tmp_path):
    path = many(tmp_path)
    ids = [f"many-{i}" for i in range(40)]
    expected = (
        lambda n, seed: sorted(  # noqa: E731  (computed here, independently of the module)
            sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())[:n], key=ids.index
        )
    )
    a = load_source(SourceSpec(kind="local", path=str(path), sample=10, seed=3))
    b = load_source(SourceSpec(kind="local", path=str(path), sample=10, seed=3))
    small = load_source(SourceSpec(kind="local", path=str(path), sample=4, seed=3))
    other = load_source(SourceSpec(kind="local", path=str(path), sample=10, seed=4))
    got = [r.id for r in a.records]
    assert got == expected(10, 3) == [r.id for r in b.records]
    assert set(r.id for r in small.records) <= set(got)  # the small subset is inside the large one
    assert [r.id for r in other.records] == expected(10, 4) != got
    assert a.provenance["sample"]["seed"] == 3 and a.provenance["valid"] == 40 and a.provenance["records"] == 10
    with pytest.raises(ValueError, match="sample=41 asks for more records than the source has \\(40 valid\\)"):
        load_source(SourceSpec(kind="local", path=str(path), sample=41))


# ---------------------------------------------------------------------- records
def test_record_round_trip_and_build_pairs_keys(tmp_path):
    from cft_lab.train.objectives import build_pairs, default_configs

    res = load_source(SourceSpec(kind="webinstruct_raw", path=str(FIX / "webinstruct_raw.jsonl")))
    teacher = {
        "name": "gpt4o_1120",
        "model": "gpt-4o-2024-11-20",
        "snapshot": None,
        "prompt_version": "v1",
        "sampling": {"temperature": 0.3, "top_p": 0.95, "max_tokens": 3200},
    }
    recs = [
        r.with_critique(
            r.meta["released_critique"], teacher=teacher, tokens={"prompt": 10, "completion": 5}, cost_usd=0.01
        )
        for r in res.records
    ]
    assert [(r.verdict, r.verdict_parse, r.status) for r in recs] == [("right", "bold", "ok"), ("wrong", "tag", "ok")]
    path = tmp_path / "records.jsonl"
    assert write_records(path, recs) == 2
    back = read_records(path)
    assert back == recs
    d = back[0].to_dict()
    assert {
        "id",
        "question",
        "gold",
        "response",
        "response_source",
        "response_correct",
        "critique",
        "verdict",
        "teacher_solution",
        "teacher",
    } <= set(d)
    pairs, counts = build_pairs(default_configs()["sft_verified"], [r.to_dict() for r in back])
    assert [p.id for p in pairs] == ["webinstruct_raw-501"] and counts["skipped"] == {"judged wrong": 1}
    twice = recs[0].with_solution("Answer: yes", teacher=teacher, tokens={"prompt": 3, "completion": 4}, cost_usd=0.5)
    assert twice.tokens == {"prompt": 13, "completion": 9} and twice.cost_usd == pytest.approx(0.51)


def test_record_errors_name_place_and_field(tmp_path):
    good = Record(id="a", question="q", response="y").to_dict()
    with pytest.raises(RecordError, match=r"^f\.jsonl:4: field 'verdict': expected 'right', 'wrong' or null, got 'ye"):
        Record.from_dict({**good, "critique": "c", "verdict": "yes"}, "f.jsonl:4")
    with pytest.raises(RecordError, match=r"^here: field 'colour': unknown field"):
        Record.from_dict({**good, "colour": "red"}, "here")
    with pytest.raises(RecordError, match=r"^here: field 'question': missing"):
        Record.from_dict({"id": "a"}, "here")
    with pytest.raises(RecordError, match=r"^here: field 'response_correct': expected true, false or null, got int"):
        Record.from_dict({**good, "response_correct": 1}, "here")
    with pytest.raises(RecordError, match=r"^here: field 'teacher': needs a non-empty 'name'"):
        Record.from_dict({**good, "teacher": {"model": "m"}}, "here")
    with pytest.raises(RecordError, match=r"^here: field 'error': status 'failed' needs an error message"):
        Record.from_dict({**good, "status": "failed"}, "here")
    with pytest.raises(RecordError, match=r"^here: field 'meta': not JSON-safe \(meta\.x: set is not JSON\)"):
        Record.from_dict({**good, "meta": {"x": {1}}}, "here")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(RecordError, match=r"r\.jsonl:2: field 'id': duplicate id 'a' \(first at line 1\)"):
        read_records(path)


def test_arm_usage_counts_reasons_and_statuses():
    t = {"name": "t"}
    base = [Record(id=f"r{i}", question=f"q{i}", response=f"y{i}") for i in range(6)]
    recs = [
        base[0].with_critique("ok\nConclusion: right [END]", teacher=t).with_solution("s", teacher=t),
        base[1].with_critique("bad\nConclusion: wrong [END]", teacher=t).with_solution("s", teacher=t),
        base[2].with_critique("hmm, no verdict", teacher=t),
        base[3].with_failure("failed", "HTTP 500", teacher=t),
        base[4].with_failure("budget_exhausted", "budget of $1 spent"),
        Record(id="r5", question="q5"),  # no response yet (e.g. waiting for self-generation)
    ]
    u = arm_usage(recs)
    a = u["arms"]
    assert a["sft"] == {"usable": 5, "skipped": {"no response": 1}, "unusable_by_status": {"no_teacher": 1}}
    assert a["sft_verified"]["usable"] == 1
    assert a["sft_verified"]["skipped"] == {"judged wrong": 1, "verdict unparsed": 3, "no response": 1}
    assert a["sft_verified"]["unusable_by_status"] == {"budget_exhausted": 1, "failed": 1, "no_teacher": 1, "ok": 2}
    assert a["sft_teacher"]["usable"] == 2 and a["cft"]["usable"] == 3
    assert a["cft"]["unusable_by_status"] == {"budget_exhausted": 1, "failed": 1, "no_teacher": 1}
    assert u["usable_by_all_arms"] == 1  # only r0 is in every arm
