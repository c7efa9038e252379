"""The embedded testbed world: a CPU stand-in for WebInstruct + noisy responses + a GPT-4o teacher.

Modules: :mod:`~cft_lab.testbed.problems` (word problems and disjoint splits),
:mod:`~cft_lab.testbed.noisy` (the noisy solver), :mod:`~cft_lab.testbed.teacher` (critiques,
teacher solutions, verdict parsing) and :mod:`~cft_lab.testbed.answers` (boxed-answer grading).
Everything is deterministic from a seed and uses the standard library only.

Example
-------
>>> from cft_lab.testbed import generate, noisy_solve, critique, parse_verdict
>>> p = generate("train", 1)[0]
>>> parse_verdict(critique(p, noisy_solve(p).text).text) in ("right", "wrong")
True
"""

from cft_lab.testbed.answers import extract_boxed, grade, parse_int
from cft_lab.testbed.noisy import Response, noisy_solve
from cft_lab.testbed.problems import SPLITS, Problem, Step, generate, split_of
from cft_lab.testbed.teacher import STRONG, WEAK, Critique, TeacherStrength, critique, parse_verdict, teacher_solution

__all__ = [
    "SPLITS",
    "STRONG",
    "WEAK",
    "Critique",
    "Problem",
    "Response",
    "Step",
    "TeacherStrength",
    "critique",
    "extract_boxed",
    "generate",
    "grade",
    "noisy_solve",
    "parse_int",
    "parse_verdict",
    "split_of",
    "teacher_solution",
]
