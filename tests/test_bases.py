"""The shipped testbed tokenizer and base models match their recipe, reload exactly, and can be rebuilt; their
pre-training mixture is about pretrain-split questions only and never words a critique as the teacher does."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cft_lab.prompts import CFT_INSTRUCTION
from cft_lab.testbed import corpus, problems
from cft_lab.testbed.bases import MODELS_DIR, RECIPES, build_base, file_hashes, pretrain_texts, recipe_digest
from cft_lab.testbed.noisy import noisy_solve
from cft_lab.testbed.teacher import WEAK, critique


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_base_matches_its_recipe_and_files(name):
    model_dir = MODELS_DIR / name
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["recipe_digest"] == recipe_digest(name), f"{name}: recipe changed; rebuild with `make bases`"
    assert manifest["files"] == file_hashes(model_dir), f"{name}: shipped files differ from the manifest"
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_base_reloads_with_qwen2_tokenizer_ids_and_recipe_shape(name):
    from tokenizers import Tokenizer
    from transformers import AutoConfig

    from cft_lab.train.modeling import load_tokenizer

    model_dir = MODELS_DIR / name
    config = AutoConfig.from_pretrained(model_dir)
    r = RECIPES[name]
    assert config.model_type == "qwen2"
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (
        r.hidden_size,
        r.num_layers,
        r.intermediate_size,
    )
    auto = load_tokenizer(str(model_dir))  # AutoTokenizer: Qwen2Tokenizer for model_type qwen2
    trained = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    texts = pretrain_texts(50, seed=1)
    assert all(auto(t, add_special_tokens=False)["input_ids"] == trained.encode(t).ids for t in texts)
    digits = auto("123", add_special_tokens=False)["input_ids"]
    assert len(digits) == 3  # one token per digit
    assert auto.convert_tokens_to_ids("<|im_end|>") in __import__(
        "cft_lab.train.modeling", fromlist=["x"]
    ).stop_token_ids(auto)


@pytest.mark.slow
def test_rebuild_is_bit_identical(tmp_path):
    """`make bases` is deterministic: rebuilding the smallest base reproduces the shipped files byte for byte."""
    out = build_base("tiny_small", tmp_path)
    assert file_hashes(out) == json.loads((MODELS_DIR / "tiny_small" / "manifest.json").read_text())["files"]


@pytest.fixture(scope="module")
def mixture_docs():
    return corpus.documents(3000, RECIPES["tiny_math"].mixture, seed=0)


def test_mixture_shares_and_questions_of_the_pretrain_split_only(mixture_docs):
    shares = Counter(d.kind for d in mixture_docs)
    for kind, weight in RECIPES["tiny_math"].mixture:
        assert abs(shares[kind] / len(mixture_docs) - weight) < 0.03, shares
    assert {d.split for d in mixture_docs} == {"pretrain"}
    train_ids = {p.id for p in problems.generate("train", 2000, seed=0)}  # the CFT data's questions
    assert not train_ids & {d.problem_id for d in mixture_docs}
    assert corpus.documents(50, RECIPES["tiny_general"].mixture, 0) == corpus.documents(
        50, RECIPES["tiny_general"].mixture, 0
    )
    with pytest.raises(ValueError, match="sum to 1"):
        corpus.documents(5, (("solution", 0.5),))


def test_reviews_are_worded_unlike_the_teachers_critiques(mixture_docs):
    """The CFT data must stay unseen text: no teacher sentence, verdict line or instruction in pre-training."""
    reviews = [d.text for d in mixture_docs if d.kind == "review"]
    assert len(reviews) > 400 and sum("does not hold up" in r for r in reviews) > 100
    teacher_lines = set()
    for p in problems.generate("train", 200, seed=0):
        r = noisy_solve(p, seed=0)
        for style in ("checklist", "review"):
            teacher_lines.update(critique(p, r.text, WEAK, style=style).text.splitlines())
    text = "\n".join(d.text for d in mixture_docs)
    for marker in ("Conclusion:", CFT_INSTRUCTION, "is correct.", "step has an arithmetic error", "Let's check"):
        assert marker not in text
    doc_lines = {line for d in mixture_docs for line in d.text.splitlines()}
    assert not doc_lines & teacher_lines, sorted(doc_lines & teacher_lines)[:5]
