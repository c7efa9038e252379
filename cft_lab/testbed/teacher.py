"""A programmatic teacher: stands in for the GPT-4o critic (and GPT-4o's own solutions).

Contract
--------
* :func:`critique` reads a response TEXT (lines ``Step k: a op b = r.`` then a boxed final
  answer), checks every step against the problem's correct chain and writes a short,
  step-referencing critique in the paper's format: one check line per step up to and
  including the first faulty one, a final-answer line, and the last line exactly
  ``Conclusion: right [END]`` or ``Conclusion: wrong [END]``. A missing, misnumbered,
  unreadable or extra line makes the solution wrong/incomplete.
* With :data:`STRONG` the verdict is "wrong" iff some step or the final answer is faulty, so it
  agrees with the final answer's correctness on every noisy-solver response and names the
  exact first wrong step and its correct value. (It can only disagree with the final answer
  on *process* errors -- wrong steps that still reach the right answer -- which it calls
  wrong; the noisy solver never produces those.)
* A :class:`TeacherStrength` adds imperfections, drawn deterministically from
  ``(problem.id, sha256(response_text), seed)``: a *miss* blesses a wrong response, a
  *false alarm* flags a correct step with a bogus value, a *vague* critique names the wrong
  step without its correct value.
* ``style`` words the critique: ``checklist`` (below: each checked line repeated with "is correct") or ``review``
  (GPT-4o-like prose, :mod:`cft_lab.testbed.review`); the behaviours and verdicts do not depend on it.
* :func:`teacher_solution` is the reference solution, or (``solution_error_rate``) a slipped
  one from the noisy solver's slip machinery.
* :func:`parse_verdict` reads the LAST conclusion of any critique-like text (via :mod:`cft_lab.data.verdicts`).

Example
-------
>>> from cft_lab.testbed.problems import Problem, Step
>>> p = Problem("tb-x", "q", (Step(12, "+", 7, 19), Step(19, "-", 5, 14)), 14)
>>> bad = "Step 1: 12 + 7 = 19.\\nStep 2: 19 - 5 = 15.\\nThe answer is \\\\boxed{15}."
>>> print(critique(p, bad).text)
Step 1: 12 + 7 = 19 is correct.
Step 2 is wrong: 19 - 5 = 14, not 15.
The final answer should be 14, not 15.
Conclusion: wrong [END]
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from dataclasses import dataclass

from cft_lab.testbed.answers import extract_boxed, parse_int
from cft_lab.testbed.noisy import ARITH_DELTAS, make_slip
from cft_lab.testbed.problems import Problem, Step, apply_op, render_solution, stable_rng

logger = logging.getLogger(__name__)

RIGHT, WRONG = "right", "wrong"
BEHAVIOURS: tuple[str, ...] = ("precise", "vague", "miss", "false_alarm")


@dataclass(frozen=True)
class TeacherStrength:
    """Imperfection rates of a teacher (all zero: a perfect teacher)."""

    miss_rate: float = 0.0  # P(says right when the response is wrong)
    false_alarm_rate: float = 0.0  # P(says wrong when right; flags a correct step, bogus value)
    vague_rate: float = 0.0  # P(a correct "wrong" verdict names the step but not its value)
    solution_error_rate: float = 0.0  # P(its own solution (SFT-teacher arm) contains a slip)

    def __post_init__(self) -> None:
        for name in ("miss_rate", "false_alarm_rate", "vague_rate", "solution_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


STRONG = TeacherStrength()  # stands in for GPT-4o-1120
WEAK = TeacherStrength(
    miss_rate=0.25, false_alarm_rate=0.10, vague_rate=0.5, solution_error_rate=0.15
)  # stands in for GPT-4o-mini


@dataclass(frozen=True)
class Critique:
    """A critique text and its labels.

    ``behaviour`` (an addition to the spec, default ``"precise"``) records which teacher
    behaviour wrote it: one of :data:`BEHAVIOURS`.
    """

    text: str
    verdict: str  # "right" | "wrong" (what the text concludes)
    truthful: bool  # verdict agrees with whether the response's final answer is correct
    behaviour: str = "precise"


# --------------------------------------------------------------------------- reading responses
_STEP_RE = re.compile(r"^\s*Step\s+(\d+)\s*:\s*(-?\d+)\s*([+*-])\s*(-?\d+)\s*=\s*(-?\d+)\s*\.?\s*$", re.IGNORECASE)


def parse_step_line(line: str) -> tuple[int, Step] | None:
    """``(k, Step)`` for a line ``Step k: a op b = r.``; None for anything else.

    >>> parse_step_line("Step 2: 19 - 5 = 15.")
    (2, Step(a=19, op='-', b=5, result=15))
    >>> parse_step_line("The answer is 3.") is None
    True
    """
    m = _STEP_RE.match(line)
    if m is None:
        return None
    return int(m[1]), Step(int(m[2]), m[3], int(m[4]), int(m[5]))


@dataclass(frozen=True)
class Analysis:
    """What a perfect checker finds in a response.

    ``issue`` is None, ``"wrong"`` (step ``issue_step`` has the wrong expression or result),
    ``"missing"`` (step ``issue_step`` is absent, misnumbered or unreadable) or ``"extra"``
    (all steps fine but there are lines other than one final-answer line after them).
    """

    checked: tuple[Step, ...]  # leading written steps that match the correct chain
    issue: str | None
    issue_step: int | None
    written: Step | None  # the faulty written step for issue == "wrong"
    written_steps: tuple[Step, ...]  # every readable step line, in order (used by misses)
    final: int | None  # the response's boxed final answer
    answer: int

    @property
    def verdict(self) -> str:
        return RIGHT if self.issue is None and self.final == self.answer else WRONG


def analyze(problem: Problem, response_text: str) -> Analysis:
    """Check ``response_text`` line by line against ``problem``'s correct chain."""
    lines = [ln.strip() for ln in response_text.splitlines() if ln.strip()]
    parsed = [parse_step_line(ln) for ln in lines]
    written_steps = tuple(p[1] for p in parsed if p is not None)
    final = parse_int(extract_boxed(response_text))
    checked: list[Step] = []
    issue, issue_step, written = None, None, None
    for k, correct in enumerate(problem.steps):
        got = parsed[k] if k < len(parsed) else None
        if got is None or got[0] != k + 1:
            issue, issue_step = "missing", k
            break
        if got[1] != correct:
            issue, issue_step, written = "wrong", k, got[1]
            break
        checked.append(correct)
    else:
        rest = lines[problem.n_steps :]
        if len(rest) > 1 or (rest and extract_boxed(rest[0]) is None):
            issue = "extra"
    return Analysis(tuple(checked), issue, issue_step, written, written_steps, final, problem.answer)


# --------------------------------------------------------------------------- writing critiques
def _conclusion(verdict: str) -> str:
    return f"Conclusion: {verdict} [END]"


def _correct_lines(steps: tuple[Step, ...] | list[Step]) -> list[str]:
    return [f"Step {k}: {s.render()} is correct." for k, s in enumerate(steps, start=1)]


def _issue_line(problem: Problem, an: Analysis, vague: bool) -> str | None:
    if an.issue is None:
        return None
    if an.issue == "extra":
        return f"The solution has extra lines after step {problem.n_steps}."
    k = an.issue_step
    assert k is not None
    correct = problem.steps[k]
    if an.issue == "missing":
        if vague:
            return f"Step {k + 1} is missing."
        return f"Step {k + 1} is missing: it should be {correct.render()}."
    assert an.written is not None
    if vague:
        return f"Step {k + 1} is wrong."
    got = an.written.result if an.written.result != correct.result else an.written.render()
    return f"Step {k + 1} is wrong: {correct.render()}, not {got}."


def _final_line(an: Analysis, vague: bool) -> str:
    if an.final is None:
        if vague:
            return "The final answer is missing."
        return f"The final answer is missing; it should be {an.answer}."
    if an.final != an.answer:
        if vague:
            return "The final answer is wrong."
        return f"The final answer should be {an.answer}, not {an.final}."
    if an.issue is not None:
        return f"The final answer {an.answer} is correct, but the work is not."
    return f"The final answer {an.answer} is correct."


def _honest_text(problem: Problem, an: Analysis, vague: bool) -> str:
    lines = _correct_lines(an.checked)
    issue = _issue_line(problem, an, vague)
    if issue is not None:
        lines.append(issue)
    lines += [_final_line(an, vague), _conclusion(an.verdict)]
    return "\n".join(lines)


def _miss_text(an: Analysis) -> str:
    """A "right" critique that blesses whatever the response wrote."""
    lines = _correct_lines(an.written_steps)
    lines.append("The solution is correct." if an.final is None else f"The final answer {an.final} is correct.")
    lines.append(_conclusion(RIGHT))
    return "\n".join(lines)


def _false_alarm(problem: Problem, rng: random.Random) -> tuple[int, int, int]:
    """The step a false alarm flags, the bogus value it claims, and the final answer that value propagates to."""
    j = rng.randrange(problem.n_steps)
    step = problem.steps[j]
    bogus = step.result + rng.choice(ARITH_DELTAS)
    if bogus < 0:
        bogus = step.result + abs(bogus - step.result)
    value = bogus
    for later in problem.steps[j + 1 :]:
        value = apply_op(value, later.op, later.b)
    return j, bogus, value


def _false_alarm_text(problem: Problem, j: int, bogus: int, value: int) -> str:
    """A "wrong" critique of a correct solution: flags one step with a bogus value."""
    step = problem.steps[j]
    lines = _correct_lines(problem.steps[:j])
    lines.append(f"Step {j + 1} is wrong: {step.a} {step.op} {step.b} = {bogus}, not {step.result}.")
    lines.append(f"The final answer should be {value}, not {problem.answer}.")
    lines.append(_conclusion(WRONG))
    return "\n".join(lines)


def _behaviour_rng(problem: Problem, response_text: str, seed: int) -> random.Random:
    text_hash = hashlib.sha256(response_text.encode("utf-8")).hexdigest()[:16]
    return stable_rng("teacher", problem.id, text_hash, seed)


#: Critique wordings: ``checklist`` (one "Step k: ... is correct." line per step, the first release) and ``review``
#: (GPT-4o-like prose, :mod:`cft_lab.testbed.review`). Both state the same facts and end in the same verdict line.
STYLES: tuple[str, ...] = ("checklist", "review")


def critique(
    problem: Problem, response_text: str, strength: TeacherStrength = STRONG, seed: int = 0, style: str = "checklist"
) -> Critique:
    """Critique ``response_text`` as a teacher of the given ``strength``, worded in ``style`` (:data:`STYLES`)."""
    from cft_lab.testbed import review

    if style not in STYLES:
        raise ValueError(f"unknown critique style {style!r}; expected one of {STYLES}")
    an = analyze(problem, response_text)
    rng = _behaviour_rng(problem, response_text, seed)
    u_flip, u_vague = rng.random(), rng.random()  # always drawn: behaviours stay independent
    words = stable_rng("teacher-wording", problem.id, response_text, seed)  # never shifts the behaviour draws
    final_correct = an.final == problem.answer
    if an.verdict == WRONG and u_flip < strength.miss_rate:
        text = _miss_text(an) if style == "checklist" else review.miss_text(an, words)
        verdict, behaviour = RIGHT, "miss"
    elif an.verdict == RIGHT and u_flip < strength.false_alarm_rate:
        j, bogus, value = _false_alarm(problem, rng)
        if style == "checklist":
            text = _false_alarm_text(problem, j, bogus, value)
        else:
            text = review.false_alarm_text(problem, j, bogus, value, words)
        verdict, behaviour = WRONG, "false_alarm"
    else:
        vague = an.verdict == WRONG and u_vague < strength.vague_rate
        if style == "checklist":
            text = _honest_text(problem, an, vague)
        else:
            text = review.honest_text(problem, an, vague, words)
        verdict = an.verdict
        behaviour = "vague" if vague else "precise"
    logger.debug("critique of %s: %s (%s)", problem.id, verdict, behaviour)
    return Critique(text, verdict, (verdict == RIGHT) == final_correct, behaviour)


def teacher_solution(problem: Problem, strength: TeacherStrength = STRONG, seed: int = 0) -> str:
    """The teacher's own solution: the reference, or with ``solution_error_rate`` a slipped one."""
    rng = stable_rng("teacher-solution", problem.id, seed)
    if rng.random() >= strength.solution_error_rate:
        return problem.reference_solution()
    slip = make_slip(problem, rng)
    return render_solution(slip.steps, slip.final)


# --------------------------------------------------------------------------- reading verdicts
def parse_verdict(text: str) -> str | None:
    """``"right"``/``"wrong"`` from the LAST conclusion of ``text``; None if absent or unreadable. The project has
    one verdict parser, :func:`cft_lab.data.verdicts.parse_verdict` (released-data variants, bold, correct/incorrect);
    this is its verdict alone.

    >>> parse_verdict("ok.\\nConclusion: right [END]"), parse_verdict("**Conclusion: Incorrect**")
    ('right', 'wrong')
    >>> parse_verdict("The answer is right.") is None
    True
    """
    from cft_lab.data.verdicts import parse_verdict as parse

    return parse(text).verdict
