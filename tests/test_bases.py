"""The shipped testbed tokenizer and base models match their recipe, reload exactly, and can be rebuilt."""

from __future__ import annotations

import json

import pytest

from cft_lab.testbed.bases import MODELS_DIR, RECIPES, build_base, file_hashes, pretrain_texts, recipe_digest


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
