"""Benchmark registry: each benchmark owns its items, its prompt template choice and its grader.

An item is ``{"id": str, "question": str, "gold": str}``. The testbed's benchmarks are generated deterministically
from ``cft_lab.testbed.problems`` (test split by number of steps; ``testbed_val`` from the validation split, used for
checkpoint selection); they never overlap the training questions, by construction of the splits.

The paper's benchmarks (MATH, MATH-500, Minerva-Math, GSM8K, OlympiadBench, AIME24, AMC23, TheoremQA, GPQA,
MMLU-Pro) are registered by name so that paper-scale configs compose and dry-run; loading them is the evaluation
stage's work and raises a clear error until it lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cft_lab.testbed import grading as tb_grading
from cft_lab.testbed import problems

TESTBED_SEED = 0  # the testbed world is fixed; data configs vary the training set only
TESTBED_SIZE = 200  # items per testbed benchmark: 95% CI half-width about 7 points at 50% accuracy


@dataclass(frozen=True)
class Benchmark:
    name: str
    label: str  # table column
    load: Callable[[], list[dict]]
    grade: Callable[[str, str], bool]  # (model output, gold) -> correct
    available: bool = True  # False: registered for planning only


def _testbed_items(split: str, min_steps: int, max_steps: int, n: int = TESTBED_SIZE) -> list[dict]:
    return [{"id": p.id, "question": p.question, "gold": str(p.answer)}
            for p in problems.generate(split, n, seed=TESTBED_SEED, min_steps=min_steps, max_steps=max_steps)]


def _testbed_grade(output: str, gold: str) -> bool:
    return tb_grading.grade(output, int(gold))


def _testbed(name: str, label: str, split: str, lo: int, hi: int) -> Benchmark:
    return Benchmark(name, label, lambda: _testbed_items(split, lo, hi), _testbed_grade)


REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in (
        _testbed("testbed_val", "Val", "val", 2, 4),
        _testbed("testbed_2step", "2-step", "test", 2, 2),
        _testbed("testbed_3step", "3-step", "test", 3, 3),
        _testbed("testbed_4step", "4-step", "test", 4, 4),
        _testbed("testbed_5step", "5-step (OOD)", "test", 5, 5),
    )
}

#: Paper benchmarks and their table labels (PROTOCOL §4.1).
PAPER_LABELS = {
    "math": "MATH", "math500": "MATH-500", "minerva_math": "Minerva-Math", "gsm8k": "GSM8K",
    "olympiadbench": "OlympiadBench", "aime24": "AIME24", "amc23": "AMC23", "theoremqa": "TheoremQA",
    "gpqa": "GPQA", "mmlu_pro": "MMLU-Pro",
}


def _not_yet(name: str) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        raise NotImplementedError(
            f"benchmark {name!r} is registered for planning, but its loader, prompts and paper grader are not in "
            "this build yet (the evaluation stage); testbed benchmarks run now")
    return load


def _not_yet_grade(name: str) -> Callable[[str, str], bool]:
    def grade(output: str, gold: str) -> bool:
        raise NotImplementedError(f"benchmark {name!r} has no grader in this build yet (the evaluation stage)")
    return grade


for _name, _label in PAPER_LABELS.items():
    REGISTRY[_name] = Benchmark(_name, _label, _not_yet(_name), _not_yet_grade(_name), available=False)


def get(name: str) -> Benchmark:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def label(name: str) -> str:
    return get(name).label
