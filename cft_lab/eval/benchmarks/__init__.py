"""Benchmark registry: each benchmark owns its items, question text, gold parsing, prompt and grader choice.

An item is ``{"id", "index", "question", "gold", "golds", "template", "stops"}``: ``question`` is the text that
goes into the prompt, ``gold`` the gold answer as the paper's harness parses it, ``golds`` the gold per grading
mode (``paper`` / ``strict`` / ``math_verify``; they differ only where the paper harness's cleanup mangles a gold),
``template`` the benchmark's own prompt template (``None``: the model's ``eval_template``) and ``stops`` its stop
strings. Items keep the shipped file's order, and ``index`` is the position in that file.

Two public calls expose them (the project's own checks use them too)::

    cft_lab.eval.benchmarks.gold(benchmark, index) -> str               # the gold as the paper's harness parses it
    cft_lab.eval.benchmarks.prompt(benchmark, index, template) -> str   # the exact rendered prompt

Benchmarks (docs/protocol.md §4.1-§4.5, §9):

* math harness (``math``, ``math500``, ``minerva_math``, ``gsm8k``, ``olympiadbench``, ``aime24``, ``amc23``,
  ``theoremqa``): question = the first present of ``question``/``problem``/``Question``/``input``, stripped, with
  " (True or False)" / " (Yes or No)" appended when the gold is one of those (the harness's ``parse_question``);
  template = the model's (``qwen25-math-cot`` or ``deepseek-math``); stops = ``MATH_STOP_STRINGS``.
* ``gpqa`` (Diamond, 198): the four options shuffled with ``random.Random(GPQA_SEED).sample`` drawn in file order
  (the paper's harness called ``random.sample`` with no seed, so its gold letters changed run to run);
  ``{Question}\\nAnswer Choices: (A) .. (B) .. (C) .. (D) ..`` in the ``gpqa-qwen`` ChatML form.
* ``mmlu_pro`` (12032): "N/A" options removed, 0-shot CoT prompt ``mmlu-pro-cot-0shot``; micro accuracy.
* ``math_val500``: 500 MATH *train* problems, a checkpoint-selection set disjoint from every test set (MATH-500, the
  paper's selection set, lies entirely inside MATH; :func:`overlap` measures it).
* ``ifeval`` (541 prompts, 834 instructions) and ``mt_bench`` (80 two-turn questions), v4 Table 8: kind
  ``instruct``, the prompt as written (template ``raw``), graded by ``cft_lab.eval.instruct`` (IF-Eval's checks; an
  OpenAI-compatible judge for MT-Bench, ``eval.judge``).
* testbed (``testbed_val``, ``testbed_2step`` .. ``testbed_5step``): generated deterministically from
  ``cft_lab.testbed.problems``; they never overlap the training questions, by construction of the splits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Optional

from cft_lab import prompts
from cft_lab.testbed import answers as tb_answers
from cft_lab.testbed import problems

TESTBED_SEED = 0  # the testbed world is fixed; data configs vary the training set only
TESTBED_SIZE = 200  # items per testbed benchmark: 95% CI half-width about 7 points at 50% accuracy
GPQA_SEED = 0  # the option shuffle's seed; recorded next to every GPQA score
MODES = ("paper", "strict", "math_verify")
MATH_HARNESS = (
    "math",
    "math500",
    "minerva_math",
    "gsm8k",
    "olympiadbench",
    "aime24",
    "amc23",
    "theoremqa",
    "math_val500",
)
CHOICE = ("gpqa", "mmlu_pro")
LETTERS = "ABCDEFGHIJKLMNOP"


@dataclass(frozen=True)
class Benchmark:
    name: str
    label: str  # table column
    kind: str  # testbed | math | choice
    load: Callable[[], list[dict]]
    template: Optional[str] = None  # the benchmark's own prompt template; None = the model's eval_template
    stops: tuple[str, ...] = field(default_factory=lambda: tuple(prompts.MATH_STOP_STRINGS))
    grader: str = "math"  # the grading.grade benchmark name, or "testbed"

    def grade(self, output: str, gold: str, mode: str = "paper") -> bool:
        if self.kind == "testbed":
            return tb_answers.grade(output, int(gold))
        from cft_lab.eval import grading

        return grading.grade(output, gold, self.grader, mode=mode)


# ---- testbed ------------------------------------------------------------------------------------------------------


def _testbed_items(split: str, min_steps: int, max_steps: int, n: int = TESTBED_SIZE) -> list[dict]:
    out = []
    for i, p in enumerate(problems.generate(split, n, seed=TESTBED_SEED, min_steps=min_steps, max_steps=max_steps)):
        gold = str(p.answer)
        out.append({"id": p.id, "index": i, "question": p.question, "gold": gold, "golds": {m: gold for m in MODES}})
    return out


TESTBED_SPECS: dict[str, tuple[str, int, int]] = {}  # name -> (split, min steps, max steps)


def _testbed(name: str, label: str, split: str, lo: int, hi: int) -> Benchmark:
    TESTBED_SPECS[name] = (split, lo, hi)
    return Benchmark(name, label, "testbed", lambda: _testbed_items(split, lo, hi), grader="testbed")


def problems_for(name: str, limit: Optional[int] = None) -> list:
    """The ``cft_lab.testbed.problems.Problem`` objects behind a testbed benchmark, in item order."""
    if name not in TESTBED_SPECS:
        raise ValueError(f"benchmark {name} is not a testbed benchmark ({', '.join(TESTBED_SPECS)})")
    _check_split(name)
    split, lo, hi = TESTBED_SPECS[name]
    got = problems.generate(split, TESTBED_SIZE, seed=TESTBED_SEED, min_steps=lo, max_steps=hi)
    return got if limit is None else got[:limit]


# ---- the math harness's benchmarks --------------------------------------------------------------------------------


def question_text(record: dict, gold: str) -> str:
    """The harness's ``parse_question``: the first present question field, stripped, plus the True/False or Yes/No
    hint when the gold is one of those (``cft_lab.eval.grading.suffix_for_gold``).

    >>> question_text({"problem": " Is 7 prime? "}, "True")
    'Is 7 prime? (True or False)'
    """
    for key in ("question", "problem", "Question", "input"):
        if record.get(key):
            q = str(record[key]).strip()
            break
    else:
        raise ValueError("record has none of the fields question/problem/Question/input")
    from cft_lab.eval.grading import suffix_for_gold

    return q + suffix_for_gold(gold)


def _math_items(name: str) -> list[dict]:
    from cft_lab.eval import grading
    from cft_lab.eval.benchmarks import files

    source = "math" if name == "math_val500" else name  # same schema and gold rules as MATH
    items = []
    for i, rec in enumerate(files.load(name)):
        golds = {m: grading.gold_answer(source, rec, mode=m) for m in MODES}
        try:
            q = question_text(rec, golds["paper"])
        except ValueError as e:
            raise ValueError(f"benchmark {name} item {i}: {e}") from None
        items.append(
            {
                "id": f"{name}-{i}",
                "index": i,
                "question": q,
                "gold": golds["paper"],
                "golds": golds,
                "quirks": list(grading.gold_quirks(source, rec)),
            }
        )
    return items


def _math(name: str, label: str) -> Benchmark:
    grader = "math" if name == "math_val500" else name
    return Benchmark(name, label, "math", lambda: _math_items(name), grader=grader)


# ---- multiple choice ----------------------------------------------------------------------------------------------


def _choices_text(options: list[str]) -> str:
    return "Answer Choices: " + " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))


def _gpqa_items() -> list[dict]:
    from cft_lab.eval.benchmarks import files

    rng = random.Random(GPQA_SEED)  # one generator, drawn in file order: item i's order depends on items < i
    items = []
    for i, rec in enumerate(files.load("gpqa")):
        options = [
            rec["Correct Answer"],
            rec["Incorrect Answer 1"],
            rec["Incorrect Answer 2"],
            rec["Incorrect Answer 3"],
        ]
        shuffled = rng.sample(options, len(options))
        gold = LETTERS[shuffled.index(rec["Correct Answer"])]
        q = f"{rec['Question']}\n{_choices_text(shuffled)}"
        items.append(
            {
                "id": f"gpqa-{i}",
                "index": i,
                "question": q,
                "gold": gold,
                "golds": {m: gold for m in MODES},
                "n_options": 4,
                "record_id": rec.get("Record ID"),
            }
        )
    return items


def mmlu_pro_question(rec: dict) -> tuple[str, list[str]]:
    """MMLU-Pro's ``format_cot_example`` without answer, after removing "N/A" options.

    >>> mmlu_pro_question({"question": "2+2?", "options": ["3", "4", "N/A"]})[0]
    "Question:\\n2+2?\\nOptions:\\nA. 3\\nB. 4\\nAnswer: Let's think step by step."
    """
    options = [o for o in rec["options"] if o != "N/A"]
    text = "Question:\n" + rec["question"] + "\nOptions:\n"
    text += "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(options))
    return text + "Answer: Let's think step by step.", options


def _mmlu_pro_items() -> list[dict]:
    from cft_lab.eval.benchmarks import files

    items = []
    for i, rec in enumerate(files.load("mmlu_pro")):
        q, options = mmlu_pro_question(rec)
        gold = rec["answer"]
        if gold not in LETTERS[: len(options)]:
            raise ValueError(f"benchmark mmlu_pro item {i}: answer {gold!r} is not one of {len(options)} options")
        items.append(
            {
                "id": f"mmlu_pro-{rec['question_id']}",
                "index": i,
                "question": q,
                "gold": gold,
                "golds": {m: gold for m in MODES},
                "n_options": len(options),
                "category": rec["category"],
            }
        )
    return items


def _ifeval_items() -> list[dict]:
    from cft_lab.eval.benchmarks import files

    items = []
    for i, rec in enumerate(files.load("ifeval")):
        if len(rec["instruction_id_list"]) != len(rec["kwargs"]):
            raise ValueError(f"benchmark ifeval item {i} (key {rec['key']}): instruction ids and kwargs differ")
        items.append(
            {
                "id": f"ifeval-{rec['key']}",
                "index": i,
                "question": rec["prompt"],
                "gold": "",
                "golds": {},
                "instructions": list(rec["instruction_id_list"]),
                "kwargs": list(rec["kwargs"]),
            }
        )
    return items


def _mt_bench_items() -> list[dict]:
    from cft_lab.eval.benchmarks import files

    return [
        {
            "id": f"mt_bench-{rec['question_id']}",
            "index": i,
            "question": rec["turns"][0],
            "turns": list(rec["turns"]),
            "category": rec["category"],
            "question_id": rec["question_id"],
            "gold": "",
            "golds": {},
        }
        for i, rec in enumerate(files.load("mt_bench"))
    ]


#: What an instruction-following benchmark's prompt may stop at: the end-of-turn texts only.
INSTRUCT_STOPS = ("</s>", prompts.IM_END, prompts.ENDOFTEXT)

REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in (
        _testbed("testbed_val", "Val", "val", 2, 4),
        _testbed("testbed_2step", "2-step", "test", 2, 2),
        _testbed("testbed_3step", "3-step", "test", 3, 3),
        _testbed("testbed_4step", "4-step", "test", 4, 4),
        _testbed("testbed_5step", "5-step (OOD)", "test", 5, 5),
        _math("math", "MATH"),
        _math("math500", "MATH-500"),
        _math("minerva_math", "Minerva-Math"),
        _math("gsm8k", "GSM8K"),
        _math("olympiadbench", "OlympiadBench"),
        _math("aime24", "AIME24"),
        _math("amc23", "AMC23"),
        _math("theoremqa", "TheoremQA"),
        _math("math_val500", "MATH-train-val500"),
        Benchmark(
            "gpqa",
            "GPQA",
            "choice",
            _gpqa_items,
            template="gpqa-qwen",
            stops=tuple(prompts.GPQA_STOP_STRINGS),
            grader="gpqa",
        ),
        Benchmark(
            "mmlu_pro",
            "MMLU-Pro",
            "choice",
            _mmlu_pro_items,
            template="mmlu-pro-cot-0shot",
            stops=tuple(prompts.MMLU_PRO_STOP_STRINGS),
            grader="mmlu_pro",
        ),
        # v4 Table 8 (docs/protocol.md §4.6; cft_lab.eval.instruct): the prompt as written, graded by IF-Eval's
        # checks / judged by an OpenAI-compatible judge
        Benchmark("ifeval", "IF-Eval", "instruct", _ifeval_items, "raw", INSTRUCT_STOPS, "ifeval"),
        Benchmark("mt_bench", "MT-Bench", "instruct", _mt_bench_items, "raw", INSTRUCT_STOPS, "mt_bench"),
    )
}
#: Paper benchmarks and their table labels (docs/protocol.md §4.1).
PAPER_LABELS = {n: REGISTRY[n].label for n in (*MATH_HARNESS[:-1], *CHOICE)}


def get(name: str) -> Benchmark:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def label(name: str) -> str:
    return get(name).label


@cache
def _load(name: str) -> tuple[dict, ...]:
    return tuple(get(name).load())


def _items(name: str) -> tuple[dict, ...]:
    """Every read of a benchmark's items passes here (and :func:`problems_for`): the split guard's one gate."""
    _check_split(name)
    return _load(name)


# ---- the split guard: tuning reads validation data only -----------------------------------------------------------

#: Validation sets: what checkpoint selection and tuning may read. Every other benchmark counts as a test set.
VALIDATION = ("testbed_val", "math_val500")
_GUARDS: list[str] = []  # why test sets are forbidden right now (a stack of active guards)


class SplitGuardError(RuntimeError):
    """A test benchmark was read inside :func:`forbid_test_splits` (e.g. by a tuning trial)."""


def is_validation(name: str) -> bool:
    """Whether ``name`` is a validation set (:data:`VALIDATION`, or a testbed benchmark of the ``val`` split)."""
    return name in VALIDATION or TESTBED_SPECS.get(name, ("",))[0] == "val"


def _check_split(name: str) -> None:
    if _GUARDS and not is_validation(name):
        raise SplitGuardError(
            f"{_GUARDS[-1]} may read validation data only, but asked for the items of {name}, a test set "
            f"(validation sets: {', '.join(VALIDATION)})"
        )


@contextmanager
def forbid_test_splits(why: str) -> Iterator[None]:
    """Inside the block, reading a test benchmark (or generating test-split testbed problems) raises
    :class:`SplitGuardError` naming ``why``; hyper-parameter choices are made on validation data only.

    >>> with forbid_test_splits("a tuning trial"):
    ...     _ = items("testbed_val", limit=1)
    ...     items("testbed_2step", limit=1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cft_lab.eval.benchmarks.SplitGuardError: a tuning trial may read validation data only, but asked for ...
    """
    _GUARDS.append(why)
    problems.FORBIDDEN_SPLITS[why] = "test"
    try:
        yield
    finally:
        _GUARDS.pop()
        problems.FORBIDDEN_SPLITS.pop(why, None)


def items(name: str, limit: Optional[int] = None) -> list[dict]:
    """The items of a benchmark in file order (the first ``limit`` if given); copies, safe to modify."""
    got = _items(name)
    return [dict(it) for it in (got if limit is None else got[:limit])]


def size(name: str) -> int:
    """How many items a benchmark has, without loading it (the manifest's count; for planning and dry runs)."""
    b = get(name)
    if b.kind == "testbed":
        return TESTBED_SIZE
    from cft_lab.eval.benchmarks import files

    return files.manifest()[name]["records"]


def _item(benchmark: str, index: int) -> dict:
    got = _items(benchmark)
    if not 0 <= index < len(got):
        raise IndexError(f"benchmark {benchmark} has {len(got)} items; index {index} is out of range")
    return got[index]


def gold(benchmark: str, index: int) -> str:
    """The gold answer of item ``index`` as the paper's harness parses it (the ``paper`` mode's gold)."""
    return _item(benchmark, index)["gold"]


def template_for(benchmark: str, model_template: str) -> str:
    """The template a benchmark is prompted with: its own (GPQA, MMLU-Pro) or the model's math template."""
    return get(benchmark).template or model_template


def render(item: dict, template: str, benchmark: str) -> str:
    """The exact prompt of one item under ``template``."""
    b = get(benchmark)
    if b.template is not None and template != b.template:
        raise ValueError(f"benchmark {benchmark} is prompted with its own template {b.template!r}, not {template!r}")
    if b.kind == "instruct":
        return item["question"]  # as written (the authors' IF-Eval script; MT-Bench turns: cft_lab.eval.instruct)
    if b.template is None and template not in prompts.EVAL_TEMPLATES:
        raise ValueError(
            f"benchmark {benchmark} takes a math template ({sorted(prompts.EVAL_TEMPLATES)}), not {template!r}"
        )
    text = prompts.template_text(template)
    if template == "mmlu-pro-cot-0shot":
        text = text.replace("{category}", item["category"])
    return text.replace("{question}", item["question"].strip() if b.kind != "choice" else item["question"])


def messages(item: dict, template: str, benchmark: str) -> list[dict]:
    """The chat messages of one item under ``template`` (a chat-template model or an API model is sent these; the
    pinned prompt of :func:`render` is their ChatML form): the same question text, stripped as :func:`render` does."""
    b = get(benchmark)
    if b.kind == "instruct":  # IF-Eval, MT-Bench: the prompt as written, no system turn
        return [{"role": "user", "content": item["question"]}]
    render(item, template, benchmark)  # the same checks (a benchmark with its own template, a math template)
    question = item["question"].strip() if b.kind != "choice" else item["question"]
    return prompts.eval_messages(template, question, item.get("category"))


def prompt(benchmark: str, index: int, template: str) -> str:
    """The exact rendered prompt of item ``index`` of ``benchmark`` under ``template``.

    >>> prompt("testbed_val", 0, "deepseek-math").startswith("User: ")
    True
    """
    return render(_item(benchmark, index), template, benchmark)


_WS = re.compile(r"\s+")


def _norm_question(text: str) -> str:
    return _WS.sub(" ", text).strip().lower()


def overlap(a: str, b: str) -> int:
    """How many items of benchmark ``a`` have the same question text (whitespace and case folded) as an item of
    ``b``. MATH-500 lies entirely inside MATH: ``overlap("math500", "math") == 500``."""
    qa = {_norm_question(it["question"]) for it in _items(a)}
    qb = {_norm_question(it["question"]) for it in _items(b)}
    return len(qa & qb)
