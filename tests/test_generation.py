"""Generation (default suite, CPU, seconds): the ``hf`` backend on the shipped tiny model, stop strings and stop
ids, per-request seeds, and what ``check_backend`` refuses. The ``vllm`` backend runs for real in
``tests/test_vllm.py`` (``make test-vllm``)."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from cft_lab.config import InferenceConfig, ModelConfig
from cft_lab.eval.generation import (
    Completion,
    HFGenerator,
    _SeededSampling,
    check_backend,
    cut_at_stops,
    make_generator,
)
from cft_lab.prompts import MATH_STOP_STRINGS, render_eval_prompt
from cft_lab.train.modeling import END_TOKENS, load_tokenizer, model_path, stop_token_ids

TINY = ModelConfig(name="tiny_math", label="tiny-math", source="testbed", path="tiny_math")
MAX_NEW = 64  # the tiny model's testbed answers take 36-71 tokens


def _inference(**kw) -> InferenceConfig:
    return InferenceConfig(**{"name": "test", "max_new_tokens": MAX_NEW, "batch_size": 8, **kw})


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    from cft_lab.eval import benchmarks

    items = benchmarks.get("testbed_val").load()[:12]
    return [render_eval_prompt(TINY.eval_template, it["question"]) for it in items]


@pytest.fixture(scope="module")
def gen() -> HFGenerator:
    g = make_generator(model_path(TINY), TINY, _inference())
    yield g
    g.close()


# ---- stop strings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", MATH_STOP_STRINGS)
def test_cut_at_each_math_stop_string(stop):
    assert (
        cut_at_stops(f"Step 1: 2 + 2 = 4.\nThe answer is \\boxed{{4}}.  {stop}\nmore text", MATH_STOP_STRINGS)
        == "Step 1: 2 + 2 = 4.\nThe answer is \\boxed{4}."
    )


def test_cut_at_the_earliest_stop_and_only_strip_the_right():
    assert cut_at_stops("  a (END) b [END] c", MATH_STOP_STRINGS) == "  a"
    assert cut_at_stops("a \\[END\\] b", ["[END]", "\\[END\\]"]) == "a"  # the escaped form starts first
    assert cut_at_stops("a [END] b", ["\\[END\\]"]) == "a [END] b"  # the escaped form is literal, not a regex
    assert cut_at_stops("x **END** y", MATH_STOP_STRINGS) == "x"
    assert cut_at_stops("nothing to cut \n\t", []) == "nothing to cut"


# ---- the hf backend ------------------------------------------------------------------------------------------


def test_greedy_matches_plain_generate(gen, prompts):
    """Batched, length-sorted, left-padded greedy equals transformers' own generate on each prompt alone."""
    import torch

    from cft_lab.train.modeling import load_model

    out = gen.generate(prompts, MATH_STOP_STRINGS)
    assert len(out) == len(prompts) and all(len(c) == 1 for c in out)
    tok = load_tokenizer(model_path(TINY))
    model = load_model(model_path(TINY), TINY).eval()
    lengths = set()
    for prompt, (c,) in zip(prompts, out):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        lengths.add(ids.shape[1])
        with torch.inference_mode():
            new = model.generate(
                ids,
                max_new_tokens=MAX_NEW,
                do_sample=False,
                eos_token_id=stop_token_ids(tok),
                pad_token_id=tok.pad_token_id,
            )[0, ids.shape[1] :].tolist()
        assert c.text == cut_at_stops(tok.decode(new, skip_special_tokens=True), MATH_STOP_STRINGS)
        assert c.tokens == len(new)
        assert c.finish_reason == ("stop" if new[-1] in gen.stop_ids else "length")
    assert len(lengths) > 1, "prompts of one length would not exercise the padding"
    assert {c[0].finish_reason for c in out} >= {"stop"}


def test_finish_reason_length_when_max_new_tokens_is_hit(prompts):
    with make_generator(model_path(TINY), TINY, _inference(max_new_tokens=10)) as g:
        out = g.generate(prompts[:4], MATH_STOP_STRINGS, n=2, temperature=0.7, seeds=[0, 10, 20, 30])
        out += g.generate(prompts[:4], MATH_STOP_STRINGS)
    for comps in out:
        for c in comps:
            assert c.finish_reason == "length" and c.tokens == 10 and c.text


def test_stop_string_ends_generation(gen, prompts):
    full = gen.generate(prompts[:6], MATH_STOP_STRINGS)
    cut = gen.generate(prompts[:6], ["Step 2"])
    for (f,), (c,) in zip(full, cut):
        assert "Step 2" in f.text and "Step 2" not in c.text and f.text.startswith(c.text)
        assert c.finish_reason == "stop" and c.tokens < f.tokens
        assert c.text == c.text.rstrip()


def test_greedy_n_repeats_the_answer(gen, prompts):
    one = gen.generate(prompts[:3], MATH_STOP_STRINGS)
    three = gen.generate(prompts[:3], MATH_STOP_STRINGS, n=3)
    assert three == [c * 3 for c in one]


def test_sampling_shape_and_variety(gen, prompts):
    out = gen.generate(prompts[:5], MATH_STOP_STRINGS, n=4, temperature=1.0, seeds=[0, 100, 200, 300, 400])
    assert [len(c) for c in out] == [4] * 5
    assert all(
        isinstance(c, Completion) and c.finish_reason in ("stop", "length") and c.tokens > 0
        for comps in out
        for c in comps
    )
    assert len({c.text for comps in out for c in comps}) > 5, "T=1 samples should vary"


def test_seeded_samples_do_not_depend_on_the_batch(prompts):
    """A prompt's samples are the same alone, in a batch, in another order and split over other batches."""
    seeds = [1000 * i for i in range(8)]
    with make_generator(model_path(TINY), TINY, _inference(batch_size=12)) as g:
        batch = g.generate(prompts[:8], MATH_STOP_STRINGS, n=3, temperature=1.0, seeds=seeds)
        alone = g.generate([prompts[5]], MATH_STOP_STRINGS, n=3, temperature=1.0, seeds=[seeds[5]])
        rev = g.generate(prompts[:8][::-1], MATH_STOP_STRINGS, n=3, temperature=1.0, seeds=seeds[::-1])
        other = g.generate(prompts[:8], MATH_STOP_STRINGS, n=3, temperature=1.0, seeds=[s + 500 for s in seeds])
    with make_generator(model_path(TINY), TINY, _inference(batch_size=3)) as g:  # one prompt per batch
        small = g.generate(prompts[:8], MATH_STOP_STRINGS, n=3, temperature=1.0, seeds=seeds)
    assert alone == [batch[5]]
    assert rev == batch[::-1]
    assert small == batch
    assert other != batch
    assert sum(o != b for o, b in zip(other, batch)) >= 4


def test_unseeded_calls_draw_fresh_seeds_reproducibly(prompts):
    def two_calls():
        with make_generator(model_path(TINY), TINY, _inference(seed=7)) as g:
            return [g.generate(prompts[:4], MATH_STOP_STRINGS, n=2, temperature=1.0) for _ in range(2)]

    first, again = two_calls(), two_calls()
    assert first == again  # the seed stream starts from inference.seed
    assert first[0] != first[1]  # and moves on between calls


def test_temperature_override_per_call(gen, prompts):
    greedy = gen.generate(prompts[:4], MATH_STOP_STRINGS)
    # 1e-6, not 1e-3: the shipped tiny-math has a near-tie on prompt 2 (top-2 logits 0.0003 apart: '2' vs '3'), where
    # temperature 1e-3 still samples the runner-up with probability exp(-0.28) = 0.43
    cold = gen.generate(prompts[:4], MATH_STOP_STRINGS, n=2, temperature=1e-6, seeds=[0, 10, 20, 30])
    assert cold == [c * 2 for c in greedy]
    hot = gen.generate(prompts[:4], MATH_STOP_STRINGS, n=2, temperature=2.0, seeds=[0, 10, 20, 30])
    assert hot != cold


def test_seeded_sampler_draws_from_the_warped_softmax():
    """The Gumbel-max sampler: frequencies over 20k seeds match softmax(logits / T); top-p drops the tail."""
    import torch

    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    rows = 20000
    scores = logits.repeat(rows, 1)
    draws = _SeededSampling(0.8, 1.0, list(range(rows)), "cpu")(None, scores.clone()).argmax(-1)
    freq = torch.bincount(draws, minlength=5).double() / rows
    p = torch.softmax(logits / 0.8, -1).double()
    assert torch.all((freq - p).abs() < 4 * torch.sqrt(p * (1 - p) / rows) + 1e-3), (freq, p)
    # top_p=0.7: the smallest set of tokens whose probability reaches 0.7 (here the first two) is kept
    draws = _SeededSampling(0.8, 0.7, list(range(2000)), "cpu")(None, logits.repeat(2000, 1)).argmax(-1)
    assert set(draws.tolist()) == {0, 1}
    with pytest.raises(RuntimeError, match="rows"):
        _SeededSampling(1.0, 1.0, [0, 1], "cpu")(None, logits.repeat(3, 1))


def test_generate_rejects_bad_arguments(gen, prompts):
    with pytest.raises(ValueError, match="one seed per prompt"):
        gen.generate(prompts[:2], MATH_STOP_STRINGS, seeds=[1])
    with pytest.raises(ValueError, match="n=0"):
        gen.generate(prompts[:2], MATH_STOP_STRINGS, n=0)
    with pytest.raises(ValueError, match="temperature"):
        gen.generate(prompts[:2], MATH_STOP_STRINGS, temperature=-1)
    with pytest.raises(TypeError, match="not a string"):
        gen.generate(prompts[0], MATH_STOP_STRINGS)
    assert gen.generate([], MATH_STOP_STRINGS, n=3, temperature=1.0) == []


def test_completion_is_frozen_and_describe_records_settings(gen):
    c = Completion("x", 3, "stop")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.text = "y"
    d = gen.describe(n=4, temperature=0.6)
    assert d["backend"] == "hf" and d["versions"]["torch"] and d["versions"]["transformers"]
    assert d["engine"]["dtype"] == "float32" and d["engine"]["device"] == "cpu"
    assert d["sampling"]["n"] == 4 and d["sampling"]["temperature"] == 0.6 and not d["sampling"]["greedy"]
    assert d["sampling"]["stop_token_ids"] == [0, 2] and d["sampling"]["max_new_tokens"] == MAX_NEW


def test_close_releases_the_model(prompts):
    g = make_generator(model_path(TINY), TINY, _inference())
    g.close()
    g.close()  # idempotent
    with pytest.raises(RuntimeError, match="close"):
        g.generate(prompts[:1], MATH_STOP_STRINGS)


# ---- stop token ids from the vocabulary ----------------------------------------------------------------------


def _tokenizer(specials: list[str], **special_kw):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[UNK]", "a", "b", *specials])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", **special_kw)


DS_BOS, DS_EOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"


@pytest.mark.parametrize(
    "specials, kw, expected",
    [
        # Qwen2.5 base: eos <|endoftext|>, ChatML's <|im_end|> ends a turn as well (the harness's 151643/151645)
        (
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            {"eos_token": "<|endoftext|>"},
            ["<|endoftext|>", "<|im_end|>"],
        ),
        # Qwen2.5 instruct: eos <|im_end|>
        (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], {"eos_token": "<|im_end|>"}, ["<|endoftext|>", "<|im_end|>"]),
        # DeepSeek-Math: its own end of sentence, no ChatML
        ([DS_BOS, DS_EOS], {"bos_token": DS_BOS, "eos_token": DS_EOS}, [DS_EOS]),
        # DeepSeek's end of sentence even when the eos is declared otherwise
        ([DS_EOS, "</s>"], {"eos_token": "</s>"}, [DS_EOS, "</s>"]),
        # a Llama-style vocabulary: only its eos
        (["<s>", "</s>"], {"bos_token": "<s>", "eos_token": "</s>"}, ["</s>"]),
    ],
)
def test_stop_ids_come_from_the_vocabulary(specials, kw, expected, tmp_path):
    tok = _tokenizer(specials, **kw)
    want = sorted(tok.convert_tokens_to_ids(expected))
    assert stop_token_ids(tok) == want
    # the directory's name plays no part (the harness passed Qwen's ids only for paths containing "qwen2")
    for name in ("qwen2-math-7b", "deepseek-math-7b"):
        tok.save_pretrained(tmp_path / name)
        assert stop_token_ids(load_tokenizer(str(tmp_path / name))) == want


def test_stop_ids_of_the_testbed_tokenizer_and_none_at_all():
    tok = load_tokenizer(model_path(TINY))
    assert stop_token_ids(tok) == sorted(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])) == [0, 2]
    assert END_TOKENS[2] == DS_EOS
    with pytest.raises(ValueError, match="no eos"):
        stop_token_ids(_tokenizer([]))


# ---- check_backend -------------------------------------------------------------------------------------------


def test_check_backend_accepts_hf_and_any_mode():
    check_backend(_inference())
    check_backend(_inference(mode="self_critique_two_stage", n=8, temperature=0.6))  # modes are the stages' job


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"backend": "tgi"}, "unknown; choose one of hf, vllm"),
        ({"n": 0}, "n=0"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ],
)
def test_check_backend_refuses_impossible_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        check_backend(_inference(**kw))


def test_check_backend_refuses_vllm_when_it_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what Python does for a package that is not installed
    with pytest.raises(ImportError, match="make install-vllm") as err:
        check_backend(_inference(backend="vllm"))
    assert "import vllm" in str(err.value)
    with pytest.raises(ImportError, match="make install-vllm"):
        make_generator(model_path(TINY), TINY, _inference(backend="vllm"))
