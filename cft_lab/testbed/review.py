"""The rule teacher's ``review`` critique style: prose that reads like GPT-4o's critiques, not like the solution.

The ``checklist`` style (:mod:`cft_lab.testbed.teacher`) repeats each solution line with "is correct" appended
("Step 1: 12 + 7 = 19 is correct."), so a model trained on it learns to write solution lines inside critiques and
then mixes critique phrases into its solutions. The released GPT-4o-1120 critiques of WebInstruct-CFT read differently:
an opening ("Let's analyze the student's solution step by step"), a sentence per step that re-derives the value in
words and says whether it holds ("The values ... are computed correctly"), the kind of error where there is one
("the constant term was mishandled"), the consequence for the final answer, then ``Conclusion: right/wrong [END]``;
a correct short solution often gets a short "Your answer is correct." critique. This style writes that shape for the
testbed's arithmetic chains, with the same facts as the checklist style: the same verdict, the same first wrong step
and its correct value (or, for the weak teacher's behaviours, the same omissions and bogus values).

Wording is drawn from ``rng`` (seeded by the teacher from the problem, the response and its seed), after the
behaviour draws, so both styles of one teacher make the same judgements.

>>> import random
>>> from cft_lab.testbed.problems import Problem, Step
>>> from cft_lab.testbed.teacher import analyze
>>> p = Problem("tb-x", "q", (Step(12, "+", 7, 19), Step(19, "-", 5, 14)), 14)
>>> an = analyze(p, "Step 1: 12 + 7 = 19.\\nStep 2: 19 - 5 = 15.\\nThe answer is \\\\boxed{15}.")
>>> print(honest_text(p, an, vague=False, rng=random.Random(1)))
Let me verify each step of the solution.
First, 12 + 7 gives 19, as the question requires.
The second step has an arithmetic error: 19 - 5 equals 14, not 15.
Therefore the final answer 15 is wrong; the correct answer is 14.
Conclusion: wrong [END]
"""

from __future__ import annotations

import random

from cft_lab.testbed.problems import Problem, Step

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
OPENERS = (
    "Let's check the solution step by step.",
    "Let me verify each step of the solution.",
    "Let's go through the student's work carefully.",
    "We check each calculation against the question.",
)
_OP_NAMES = {"+": "addition", "-": "subtraction", "*": "multiplication"}


def _ordinal(k: int) -> str:
    """0-based step index -> "first", "second", ...; "step 9" beyond the table."""
    return ORDINALS[k] if k < len(ORDINALS) else f"number {k + 1}"


def _action(step: Step) -> str:
    if step.op == "+":
        return f"adds {step.b}"
    if step.op == "-":
        return f"takes away {step.b}"
    return {2: "doubles the count", 3: "triples the count"}.get(step.b, f"multiplies by {step.b}")


def checked_line(k: int, step: Step, rng: random.Random) -> str:
    """A sentence saying step ``k`` (0-based) is right, in one of three wordings."""
    ordinal = _ordinal(k)
    return rng.choice(
        (
            f"The {ordinal} step {_action(step)}: {step.render()}, which is correct.",
            f"In the {ordinal} step, {step.render()} is right.",
            f"{ordinal.capitalize()}, {step.a} {step.op} {step.b} gives {step.result}, as the question requires.",
        )
    )


def wrong_line(k: int, correct: Step, written: Step) -> str:
    """What is wrong with step ``k`` (0-based) and what it should be: the kind of slip, named as GPT-4o names it."""
    ordinal = _ordinal(k)
    same_expr = (written.a, written.op, written.b) == (correct.a, correct.op, correct.b)
    if same_expr:
        return (
            f"The {ordinal} step has an arithmetic error: {correct.a} {correct.op} {correct.b} equals "
            f"{correct.result}, not {written.result}."
        )
    if written.op != correct.op and (written.a, written.b) == (correct.a, correct.b):
        return (
            f"The {ordinal} step uses {_OP_NAMES.get(written.op, written.op)} where the question calls for "
            f"{_OP_NAMES[correct.op]}: it should be {correct.render()}, not {written.render()}."
        )
    if written.b != correct.b and (written.a, written.op) == (correct.a, correct.op):
        return (
            f"The {ordinal} step uses {written.b} instead of {correct.b} from the question: it should be "
            f"{correct.render()}."
        )
    if written.a != correct.a and (written.op, written.b) == (correct.op, correct.b):
        return (
            f"The {ordinal} step starts from {written.a}, but the running total is {correct.a}: it should be "
            f"{correct.render()}."
        )
    return f"The {ordinal} step is wrong: it should be {correct.render()}, not {written.render()}."


def _issue_line(problem: Problem, an, vague: bool) -> str | None:
    if an.issue is None:
        return None
    if an.issue == "extra":
        return "The solution has extra lines after its last step."
    k = an.issue_step
    correct = problem.steps[k]
    if an.issue == "missing":
        if vague:
            return f"The {_ordinal(k)} step is missing."
        return f"The solution has no proper {_ordinal(k)} step; it should be {correct.render()}."
    if vague:
        return f"The {_ordinal(k)} step is not correct."
    return wrong_line(k, correct, an.written)


def _final_line(an, vague: bool) -> str:
    if an.final is None:
        return "No final answer is given." if vague else f"No final answer is given; it should be {an.answer}."
    if an.final != an.answer:
        if vague:
            return "Therefore the final answer is wrong."
        return f"Therefore the final answer {an.final} is wrong; the correct answer is {an.answer}."
    if an.issue is not None:
        return f"The final answer {an.answer} happens to be right, but the work contains an error."
    return f"The final answer {an.answer} is correct."


def honest_text(problem: Problem, an, vague: bool, rng: random.Random) -> str:
    """A critique whose verdict is the analysis's: the checked steps, the first issue, the final answer."""
    if an.verdict == "right" and rng.random() < 0.3:  # GPT-4o's short form for a correct answer
        n = problem.n_steps
        return (
            f"The student's solution is correct. Each of the {n} steps follows the question, and the final answer "
            f"{an.answer} is right.\nConclusion: right [END]"
        )
    lines = [rng.choice(OPENERS)] + [checked_line(k, s, rng) for k, s in enumerate(an.checked)]
    issue = _issue_line(problem, an, vague)
    if issue is not None:
        lines.append(issue)
        if an.issue == "wrong" and an.issue_step is not None and an.issue_step < problem.n_steps - 1:
            lines.append("The mistake carries through the rest of the solution.")
    lines += [_final_line(an, vague), f"Conclusion: {an.verdict} [END]"]
    return "\n".join(lines)


def miss_text(an, rng: random.Random) -> str:
    """A "right" critique that blesses whatever the response wrote (the weak teacher's miss)."""
    lines = [rng.choice(OPENERS)] + [checked_line(k, s, rng) for k, s in enumerate(an.written_steps)]
    lines.append("The solution is correct." if an.final is None else f"The final answer {an.final} is correct.")
    lines.append("Conclusion: right [END]")
    return "\n".join(lines)


def false_alarm_text(problem: Problem, j: int, bogus: int, value: int, rng: random.Random) -> str:
    """A "wrong" critique of a correct solution: step ``j`` flagged with the bogus value ``bogus``, the final answer
    "corrected" to ``value`` (what the bogus value propagates to)."""
    step = problem.steps[j]
    lines = [rng.choice(OPENERS)] + [checked_line(k, s, rng) for k, s in enumerate(problem.steps[:j])]
    lines.append(
        f"The {_ordinal(j)} step has an arithmetic error: {step.a} {step.op} {step.b} equals {bogus}, "
        f"not {step.result}."
    )
    lines.append(f"Therefore the final answer {problem.answer} is wrong; the correct answer is {value}.")
    lines.append("Conclusion: wrong [END]")
    return "\n".join(lines)
