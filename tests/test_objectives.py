"""Objectives: the exact rendered strings and the exact loss mask of SFT and CFT examples, through TRL's own
dataset preparation and collator, plus truncation/drop accounting and the fully-masked-example guard."""

from __future__ import annotations

import pytest

from cft_lab.config import ObjectiveConfig
from cft_lab.testbed.bases import MODELS_DIR
from cft_lab.train.objectives import Pair, build_pairs
from cft_lab.train.tokenize import MaskError, check_masks, tokenize_pairs

Q = "Mia has 5 apples. Then Mia buys 3 more apples. How many apples does Mia have now?"
Y = "Step 1: 5 + 3 = 9.\nThe answer is \\boxed{9}."
C = "Step 1 is wrong: 5 + 3 = 8, not 9.\nThe final answer should be 8, not 9.\nConclusion: wrong [END]"
RECORD = {"id": "r1", "question": Q, "response": Y, "critique": C, "verdict": "wrong", "teacher_solution": None}
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
INSTRUCTION = "Please critique whether the following solution to the question is correct."

EXPECTED = {
    "sft": (SYSTEM + "<|im_start|>user\n" + Q + "<|im_end|>\n<|im_start|>assistant\n", Y + "<|im_end|>\n"),
    "cft": (
        SYSTEM
        + "<|im_start|>user\n"
        + INSTRUCTION
        + "\nQuestion:\n"
        + Q
        + "\n\nSolution:\n"
        + Y
        + "<|im_end|>\n<|im_start|>assistant\n",
        C + "<|im_end|>\n",
    ),
}


def objective(name: str) -> ObjectiveConfig:
    return ObjectiveConfig(name=name, label=name, instruction=INSTRUCTION if name == "cft" else None)


@pytest.fixture(scope="module")
def tokenizer():
    from cft_lab.train.modeling import load_tokenizer

    return load_tokenizer(str(MODELS_DIR / "tiny_small"))


@pytest.mark.parametrize("name", ["sft", "cft"])
def test_rendered_pair_is_exactly_the_paper_layout(name):
    pairs, counts = build_pairs(objective(name), [RECORD])
    assert (pairs[0].prompt, pairs[0].completion) == EXPECTED[name]
    assert counts["pairs"] == 1


@pytest.mark.parametrize("name", ["sft", "cft"])
def test_exact_loss_mask_through_trl(name, tokenizer, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from cft_lab.config import ModelConfig
    from cft_lab.train.modeling import load_model

    pairs, _ = build_pairs(objective(name), [RECORD])
    short = Pair("r2", pairs[0].prompt[:60], "ok<|im_end|>\n")  # a shorter example, to see padding in the batch
    rows, counts = tokenize_pairs(pairs + [short], tokenizer, cutoff_len=512)
    model = load_model(str(MODELS_DIR / "tiny_small"), ModelConfig(name="t", label="t", path="tiny_small"))
    args = SFTConfig(
        output_dir=str(tmp_path),
        max_length=512,
        completion_only_loss=True,
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=2,
    )
    ds = Dataset.from_list([{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]} for r in rows])
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)

    prompt, completion = EXPECTED[name]
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    labels = trainer.train_dataset[0]["labels"]
    assert trainer.train_dataset[0]["input_ids"] == p_ids + c_ids
    assert labels == [-100] * len(p_ids) + c_ids
    assert tokenizer.decode([t for t in labels if t != -100]) == completion  # loss on c (and <|im_end|>) only
    assert counts["loss_tokens"] == len(c_ids) + len(tokenizer("ok<|im_end|>\n", add_special_tokens=False)["input_ids"])

    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    n1 = len(trainer.train_dataset[1]["input_ids"])
    assert batch["labels"].shape[1] == len(p_ids) + len(c_ids)
    assert (batch["labels"][1, n1:] == -100).all() and (batch["attention_mask"][1, n1:] == 0).all()
    assert batch["labels"][0].tolist() == labels


def test_truncation_follows_the_paper_and_is_counted(tokenizer):
    pairs, _ = build_pairs(objective("cft"), [RECORD])
    full = len(tokenizer(pairs[0].prompt + pairs[0].completion, add_special_tokens=False)["input_ids"])
    c_len = len(tokenizer(pairs[0].completion, add_special_tokens=False)["input_ids"])
    rows, counts = tokenize_pairs(pairs, tokenizer, cutoff_len=full - 5, truncation="paper")
    assert counts["truncated"] == 1 and counts["dropped"] == 0
    # the completion is shorter than half the cutoff, so only the prompt is cut (LLaMA-Factory infer_seqlen)
    assert sum(rows[0]["completion_mask"]) == c_len and len(rows[0]["input_ids"]) == full - 5
    with pytest.raises(MaskError, match="all 1 pairs were dropped"):
        tokenize_pairs(pairs, tokenizer, cutoff_len=full - 5, truncation="drop")
    rows, counts = tokenize_pairs(pairs * 2, tokenizer, cutoff_len=full, truncation="drop")
    assert counts == {**counts, "examples": 2, "truncated": 0, "dropped": 0}


def test_fully_masked_examples_are_errors(tokenizer):
    with pytest.raises(MaskError, match="fully masked"):
        tokenize_pairs([Pair("empty", "<|im_start|>user\nq<|im_end|>\n", "")], tokenizer, cutoff_len=64)
    with pytest.raises(MaskError, match="1 training examples are fully masked"):
        check_masks({"labels": [[-100, 5], [-100, -100]]})
    check_masks({"labels": [[-100, 5]]})  # one loss token is enough


def test_verified_and_teacher_arms_select_and_count():
    recs = [
        dict(RECORD, id="a", verdict="right", teacher_solution="T"),
        dict(RECORD, id="b", verdict="wrong"),
        dict(RECORD, id="c", verdict=None),
    ]
    pairs, counts = build_pairs(objective("sft_verified"), recs)
    assert [p.id for p in pairs] == ["a"]
    assert counts["skipped"] == {"judged wrong": 1, "verdict unparsed": 1}
    pairs, counts = build_pairs(objective("sft_teacher"), recs)
    assert [p.completion for p in pairs] == ["T<|im_end|>\n"] and counts["skipped"] == {"no teacher solution": 2}
    with pytest.raises(ValueError, match="no training pair"):
        build_pairs(objective("sft_verified"), recs[1:])
