"""The data stage: testbed records for every arm, the released WebInstruct-CFT schema loaded through the real
``datasets`` code from a local file, and bad rows failing with their place and field."""

from __future__ import annotations

import json

import pytest

from cft_lab.data import build_records, data_card, parse_released_row
from cft_lab.store import read_jsonl
from conftest import PAPER_WORLD_TINY, compose

INSTRUCTION = "Please critique whether the following solution to the question is correct."


def test_testbed_records_match_across_arms_and_card_counts():
    cft = build_records(compose(["objective=cft", "data.testbed.n_train=300"]))
    sft = build_records(compose(["objective=sft", "data.testbed.n_train=300"]))
    assert [r["id"] for r in cft] == [r["id"] for r in sft]  # matched question ids
    assert [r["response"] for r in cft] == [r["response"] for r in sft]
    assert all(r["critique"] is None for r in sft) and all(r["critique"] for r in cft)
    card = data_card(cft)
    assert card["records"] == 300 and card["verdict_unparsed"] == 0
    assert card["teacher_agreement_with_truth"] == 1.0  # the strong rule teacher never errs
    assert 0.4 < card["responses_wrong"] / 300 < 0.6  # about half wrong, as the paper's data
    weak = data_card(build_records(compose(["objective=cft", "teacher=testbed_weak", "data.testbed.n_train=300"])))
    assert 0.7 < weak["teacher_agreement_with_truth"] < 0.95


def _released(tmp_path, rows):
    path = tmp_path / "webinstruct_cft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_released_schema_loads_from_a_local_file_and_reuses_critiques(tmp_path):
    rows = [{"instruction": INSTRUCTION, "input": "Question:\nWhat is 2+2?\n\nSolution:\n2+2=5",
             "output": "The sum is 4.\n\nConclusion: wrong [END]"},
            {"instruction": INSTRUCTION, "input": "Question:\nIs 7 prime?\n\nSolution:\nYes.",
             "output": "Correct.\n\n**Conclusion: right [END]**"}]
    path = _released(tmp_path, rows)
    records = build_records(compose(PAPER_WORLD_TINY + [f"data.hub.path={path}", "objective=cft"]))
    assert [(r["question"], r["response"], r["verdict"]) for r in records] == [
        ("What is 2+2?", "2+2=5", "wrong"), ("Is 7 prime?", "Yes.", "right")]
    with pytest.raises(NotImplementedError, match="sft_teacher needs teacher=gpt4o_1120's own answers"):
        build_records(compose(PAPER_WORLD_TINY + [f"data.hub.path={path}", "objective=sft_teacher"]))
    with pytest.raises(NotImplementedError, match="teacher=gpt4o_mini must be called"):
        build_records(compose(PAPER_WORLD_TINY + [f"data.hub.path={path}", "objective=cft", "teacher=gpt4o_mini"]))


@pytest.mark.parametrize("row, field", [
    ({"instruction": INSTRUCTION, "input": "no question here", "output": "x"}, "'input'"),
    ({"instruction": INSTRUCTION, "input": "Question:\nq\n\nSolution:\ny"}, "'output'"),
])
def test_bad_released_rows_name_their_place_and_field(row, field):
    with pytest.raises(ValueError) as err:
        parse_released_row(row, "data.jsonl row 7")
    assert "data.jsonl row 7" in str(err.value) and field in str(err.value)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"records.jsonl:2: not valid JSON"):
        list(read_jsonl(path))
