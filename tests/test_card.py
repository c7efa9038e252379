"""The dataset card on a small record set whose every number is known: counts by source and status, verdicts
and their forms, agreement with the truth, cost, lengths, and how many examples each arm truncates or drops at a
cutoff chosen so that exactly two CFT examples exceed it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cft_lab.config import ObjectiveConfig
from cft_lab.data.card import build_card, write_card
from cft_lab.data.records import Record
from cft_lab.paths import TESTBED_ASSETS
from cft_lab.train.modeling import load_tokenizer

INSTR = "Please critique whether the following solution to the question is correct."
T = {"name": "gpt4o_1120", "model": "gpt-4o-2024-11-20"}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(str(TESTBED_ASSETS / "models" / "tiny_math"))


def make_records() -> list[Record]:
    q = "Mia has 12 apples and buys 7 more. How many apples does she have?"

    def rec(i, digits, correct, name="src_a"):
        return Record(
            id=f"r{i}",
            question=q,
            response="Answer: " + "7" * digits,
            response_correct=correct,
            source={"name": name, "row": i},
        )

    return [
        rec(0, 3, True)
        .with_critique(
            "Fine.\nConclusion: right [END]", teacher=T, tokens={"prompt": 100, "completion": 20}, cost_usd=0.01
        )
        .with_solution("12 + 7 = 19.", teacher=T),
        rec(1, 6, False)
        .with_critique(
            "The sum is 19.\n\n**Conclusion: wrong [END]**",
            teacher=T,
            tokens={"prompt": 110, "completion": 30},
            cost_usd=0.02,
        )
        .with_solution("12 + 7 = 19. The answer is 19.", teacher=T),
        rec(2, 12, False).with_critique(
            "Looks fine to me.\nConclusion: right [END]",
            teacher=T,
            tokens={"prompt": 120, "completion": 25},
            cost_usd=0.03,
        ),
        rec(3, 24, True).with_critique("Hmm.", teacher=T, tokens={"prompt": 90, "completion": 2}, cost_usd=0.04),
        rec(4, 48, True, "src_b").with_failure(
            "failed",
            "HTTP 500: server error\ntraceback...",
            teacher=T,
            tokens={"prompt": 50, "completion": 0},
            cost_usd=0.002,
        ),
        rec(5, 96, False, "src_b").with_failure("budget_exhausted", "budget of $0.10 spent"),
        Record(id="r6", question=q, response="Answer: 19", source={"name": "src_b", "row": 6}),
    ]


def chatml(user: str, system: str = "You are a helpful assistant.") -> str:
    # written out here, independently of cft_lab.prompts
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def n_tokens(tok, prompt: str, target: str) -> int:
    enc = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    return enc(prompt) + enc(target + "<|im_end|>\n")


def test_card_counts_verdicts_agreement_and_cost():
    card = build_card(make_records())
    assert card["records"] == 7
    assert card["by_source"] == {"src_a": 4, "src_b": 3}
    assert card["by_status"] == {"ok": 4, "failed": 1, "budget_exhausted": 1, "no_teacher": 1}
    assert card["by_teacher"] == {"gpt4o_1120": 5}
    assert card["verdicts"] == {"critiques": 4, "right": 2, "wrong": 1, "unparsed": 1, "right_ratio": 0.6667}
    assert card["verdict_forms"] == {"tag": 2, "bold": 1, "missing": 1}
    assert card["unparsed_by_form"] == {"missing": 1}
    assert card["responses"] == {"with_response": 7, "known_truth": 6, "wrong": 3, "error_ratio": 0.5}
    # judged and known: r0 (right, true), r1 (wrong, false), r2 (right, false: a missed error)
    assert card["agreement"] == {"n": 3, "agree": 2, "rate": 0.6667, "missed_errors": 1, "false_alarms": 0}
    t = card["teacher"]
    assert t["cost_usd"] == pytest.approx(0.102) and t["records_with_cost"] == 5 and t["records_with_tokens"] == 5
    assert t["tokens"] == {"prompt": 470, "completion": 77}
    assert (t["failed"], t["budget_exhausted"]) == (1, 1)
    assert t["top_errors"] == {"HTTP 500: server error": 1, "budget of $0.10 spent": 1}
    arms = card["arms"]
    assert {a: d["usable"] for a, d in arms.items()} == {"sft": 7, "sft_verified": 2, "sft_teacher": 2, "cft": 4}
    assert arms["cft"]["skipped"] == {"no critique": 3}
    assert arms["cft"]["unusable_by_status"] == {"budget_exhausted": 1, "failed": 1, "no_teacher": 1}
    assert card["usable_by_all_arms"] == 1
    assert "cutoff" not in arms["cft"]


def test_lengths_in_characters_without_tokenizer():
    recs = make_records()
    card = build_card(recs)
    lens = card["lengths"]
    assert lens["unit"] == "characters" and "tokenizer" not in lens
    resp = [len(r.response) for r in recs]
    assert lens["response"] == {
        "n": 7,
        "mean": round(float(np.mean(resp)), 2),
        "p50": round(float(np.percentile(resp, 50)), 2),
        "p95": round(float(np.percentile(resp, 95)), 2),
        "max": max(resp),
    }
    assert lens["critique"]["n"] == 4 and lens["teacher_solution"]["n"] == 2
    with pytest.raises(ValueError, match="cutoff_len needs a tokenizer"):
        build_card(recs, cutoff_len=100)


def test_truncation_per_arm_at_a_cutoff_where_exactly_two_cft_examples_exceed(tok):
    recs = make_records()
    cft = {
        r.id: n_tokens(tok, chatml(f"{INSTR}\nQuestion:\n{r.question}\n\nSolution:\n{r.response}"), r.critique)
        for r in recs
        if r.critique
    }
    sft = {r.id: n_tokens(tok, chatml(r.question), r.response) for r in recs}
    lengths = sorted(cft.values())
    assert len(set(lengths)) == 4
    cutoff = lengths[-3]  # the third longest fits, the two longest exceed
    expected_sft = sum(n > cutoff for n in sft.values())

    card = build_card(recs, tokenizer=tok, cutoff_len=cutoff)
    c = card["arms"]["cft"]["cutoff"]
    assert (c["pairs"], c["truncated"], c["dropped"], c["examples"]) == (4, 2, 0, 4)
    assert c["max_length"] == cutoff and c["cutoff_len"] == cutoff and c["truncation"] == "paper"
    s = card["arms"]["sft"]["cutoff"]
    assert (s["pairs"], s["truncated"]) == (7, expected_sft)
    assert s["max_length"] == min(max(sft.values()), cutoff)
    assert card["lengths"]["unit"] == "tokens" and card["lengths"]["tokenizer"].endswith("tiny_math")
    q_tokens = len(tok(recs[0].question, add_special_tokens=False)["input_ids"])
    assert card["lengths"]["question"]["max"] == q_tokens

    dropped = build_card(recs, tokenizer=tok, cutoff_len=cutoff, truncation="drop")["arms"]["cft"]["cutoff"]
    assert (dropped["truncated"], dropped["dropped"], dropped["examples"]) == (0, 2, 2)
    # a one-token cutoff leaves no completion token in any pair: all dropped, counted, not raised
    tiny = build_card(recs, tokenizer=tok, cutoff_len=1)["arms"]["cft"]["cutoff"]
    assert (tiny["examples"], tiny["dropped"], tiny["truncated"]) == (0, 4, 4)


def test_objective_configs_choose_arms_and_prompt(tok):
    recs = make_records()
    obj = ObjectiveConfig(name="cft", label="CFT", instruction=INSTR, system_prompt="S")
    cft = sorted(
        n_tokens(tok, chatml(f"{INSTR}\nQuestion:\n{r.question}\n\nSolution:\n{r.response}", "S"), r.critique)
        for r in recs
        if r.critique
    )
    card = build_card(recs, tokenizer=tok, cutoff_len=cft[0], objective_configs=[obj])
    assert list(card["arms"]) == ["cft"]
    assert card["arms"]["cft"]["cutoff"]["truncated"] == 3  # all but the shortest exceed its own length


def test_write_card_writes_json_and_markdown(tmp_path, tok):
    card = build_card(make_records(), tokenizer=tok, cutoff_len=64, provenance={"kind": "local", "path": "x.jsonl"})
    j, m = write_card(card, tmp_path / "data")
    assert json.loads(j.read_text()) == card
    md = m.read_text()
    assert "4 critiques: 2 right, 1 wrong, 1 unparsed (right ratio 0.6667)." in md
    assert "| missing | 1 | no |" in md
    assert "## Lengths in tokens (" in md and "truncated (cutoff 64, paper)" in md
    assert "| cft | 4 | no critique: 3 |" in md
    assert '"path": "x.jsonl"' in md


def test_chunked_cutoff_counts_equal_one_tokenize_pairs_call(tok, monkeypatch):
    import cft_lab.data.card as card_mod
    from cft_lab.train.objectives import build_pairs, default_configs
    from cft_lab.train.tokenize import tokenize_pairs

    recs = make_records()
    pairs, _ = build_pairs(default_configs()["sft"], [r.to_dict() for r in recs])
    _, whole = tokenize_pairs(pairs, tok, 60)
    monkeypatch.setattr(card_mod, "CHUNK", 2)
    chunked = card_mod.cutoff_counts(pairs, tok, 60)
    assert whole["truncated"] > 0
    for k in ("examples", "truncated", "dropped", "loss_tokens", "max_length"):
        assert chunked[k] == whole[k], k
    assert chunked["mean_length"] == pytest.approx(whole["mean_length"], abs=0.1)
