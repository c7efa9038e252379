"""The benchmark registry: items, golds, rendered prompts, the seeded GPQA shuffle, overlaps.

GPQA's authors ask that its questions never appear as plain text online, so no GPQA text is written into this file:
its checks use hashes, letters and structure only.
"""

import hashlib
from collections import Counter

import pytest

from cft_lab import prompts
from cft_lab.eval import benchmarks

PAPER_COUNTS = {
    "math": 5000,
    "math500": 500,
    "minerva_math": 272,
    "gsm8k": 1319,
    "olympiadbench": 675,
    "aime24": 30,
    "amc23": 40,
    "theoremqa": 800,
    "gpqa": 198,
    "mmlu_pro": 12032,
    "math_val500": 500,
}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_counts_and_order(name):
    items = benchmarks.items(name)
    assert len(items) == PAPER_COUNTS[name] == benchmarks.size(name)
    assert [it["index"] for it in items] == list(range(len(items)))
    assert len({it["id"] for it in items}) == len(items)
    assert all(it["question"].strip() for it in items)


def test_public_gold_and_prompt_calls():
    # MATH-500 item 0 is the polar-coordinates trap of the issue; its gold keeps the \left( ... \right) form
    # cleaned by the harness's strip_string (\left and \right removed)
    assert benchmarks.gold("math500", 0) == "(3,\\frac{\\pi}{2})"
    assert benchmarks.gold("gsm8k", 0) == "18"
    assert benchmarks.gold("amc23", 0) == "27"  # "27.0" through strip_string
    with pytest.raises(IndexError, match="500 items"):
        benchmarks.gold("math500", 500)


def test_prompt_snapshots_per_template():
    q = (
        "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your answer in the form "
        "$(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$"
    )
    assert benchmarks.prompt("math500", 0, "qwen25-math-cot") == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n" + q + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert benchmarks.prompt("math500", 0, "deepseek-math") == (
        "User: " + q + "\nPlease reason step by step, and put your final answer within \\boxed{}.\n\nAssistant:"
    )
    mmlu = benchmarks.prompt("mmlu_pro", 0, "mmlu-pro-cot-0shot")
    assert mmlu.startswith(
        "<|im_start|>system\nThe following are multiple choice questions (with answers) about "
        'business. Think step by step and then finish your answer with "the answer is (X)" '
        "where X is the correct letter choice.<|im_end|>\n<|im_start|>user\nQuestion:\n"
    )
    assert mmlu.endswith(
        "\nI. Unsafe practices, Distress, Fear, Serious\nAnswer: Let's think step by step.\n"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    gp = benchmarks.prompt("gpqa", 0, "gpqa-qwen")
    assert gp.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert gp.endswith("<|im_end|>\n<|im_start|>assistant\n")
    body = gp.split("\nAnswer Choices: ")[1]
    assert all(f"({c}) " in body for c in "ABCD")
    with pytest.raises(ValueError, match="its own template"):
        benchmarks.prompt("gpqa", 0, "qwen25-math-cot")
    with pytest.raises(ValueError, match="math template"):
        benchmarks.prompt("math", 0, "gpqa-qwen")


def test_true_false_hint_follows_the_gold():
    items = benchmarks.items("theoremqa")
    tf = [it for it in items if it["gold"].lower() in ("true", "false")]
    assert len(tf) == 116
    assert all(it["question"].endswith(" (True or False)") for it in tf)
    assert not any(it["question"].endswith("(True or False)") for it in items if it not in tf)


def test_gpqa_shuffle_is_seeded_and_stable():
    letters = "".join(it["gold"] for it in benchmarks.items("gpqa"))
    assert len(letters) == 198 and set(letters) == set("ABCD")
    counts = Counter(letters)
    assert min(counts.values()) >= 30  # a shuffle, not the file's "correct answer first" order
    # pinned to a literal, and equal to an independent recomputation: a change of seed, drawing order or option
    # order shows here
    assert hashlib.sha256(letters.encode()).hexdigest()[:16] == "780c3c27679c985f" == benchmarks_gpqa_letters_digest()
    again = benchmarks._gpqa_items()
    assert "".join(it["gold"] for it in again) == letters
    # the gold letter points at the correct option's text
    from cft_lab.eval.benchmarks import files

    for it, rec in zip(benchmarks.items("gpqa")[:20], files.load("gpqa")[:20]):
        choices = it["question"].split("\nAnswer Choices: ")[1]
        assert f"({it['gold']}) {rec['Correct Answer']}" in choices


def benchmarks_gpqa_letters_digest() -> str:
    import random

    from cft_lab.eval.benchmarks import files

    # recomputed independently of the registry: random.Random(0).sample over the four options, in file order
    rng = random.Random(0)
    out = ""
    for rec in files.load("gpqa"):
        opts = [rec["Correct Answer"], rec["Incorrect Answer 1"], rec["Incorrect Answer 2"], rec["Incorrect Answer 3"]]
        out += "ABCD"[rng.sample(opts, 4).index(rec["Correct Answer"])]
    return hashlib.sha256(out.encode()).hexdigest()[:16]


def test_mmlu_pro_drops_na_options_and_keeps_the_answer_letter():
    items = benchmarks.items("mmlu_pro")
    assert Counter(it["n_options"] for it in items)[10] == 9981  # the rest had fewer options, or "N/A" ones
    assert not any(". N/A\n" in it["question"] for it in items)
    assert all(it["gold"] in "ABCDEFGHIJ"[: it["n_options"]] for it in items)


def test_overlap_math500_inside_math_and_val500_disjoint():
    assert benchmarks.overlap("math500", "math") == 500
    for test in ("math", "math500", "minerva_math", "gsm8k", "olympiadbench", "aime24", "amc23", "theoremqa"):
        assert benchmarks.overlap("math_val500", test) == 0, test


def test_stops_per_benchmark():
    assert benchmarks.get("math").stops == tuple(prompts.MATH_STOP_STRINGS)
    assert "[END]" in benchmarks.get("gsm8k").stops and "\\[END\\]" in benchmarks.get("gsm8k").stops
    assert "Question:" in benchmarks.get("mmlu_pro").stops
    assert "####" in benchmarks.get("gpqa").stops
