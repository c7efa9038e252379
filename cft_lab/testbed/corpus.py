"""The tiny bases' pre-training corpus: the testbed's stand-in for the web text a 7B base was pre-trained on.

Why a mixture. The paper's bases (Qwen2.5-Math-7B, Qwen2.5-7B, DeepSeek-Math-7B) were pre-trained on web and math
corpora that hold, besides solutions, reviews and corrections of solutions (forum answers, graded homework, "let's
verify"), restatements of problems, answer checks and explanations; neither fine-tuning format (imitating a solution,
critiquing one) is new to them. A base that has seen only solutions meets critiques for the first time in CFT and
learns their surface instead of their content. Each document kind below stands for one of those sources:

==============  =============================================================================================
kind            what a document holds
==============  =============================================================================================
solution        a question and a noisy solution (:data:`ERROR_RATES` wrong), in the evaluation prompt or the
                training chat format, as the first release's bases saw (the bases must answer the harness prompt)
review          a question, a noisy solution and a reader's check of it, ending in a verdict; as forum text or
                as a chat turn answering one of several "is this right?" requests (never the CFT instruction)
restatement     a question, then the arithmetic it asks for in plain words ("start with 12, add 7, ...")
answer_check    a question, an answer (right or wrong), and a check that works backwards to the start value
explanation     what a phrase of the questions means in arithmetic ("triples" = times 3), with an example
==============  =============================================================================================

The review texts are worded unlike the rule teacher's critiques (``cft_lab.testbed.teacher``, both styles): other
verbs ("plus", "minus", "times"), no ``Step k`` line, no "Conclusion:" line, other verdict words ("Verdict: the
answer holds up / does not hold up"), so the CFT data (the teacher's critiques of train-split questions) stays unseen
text on unseen questions. Every document is about a question of the ``pretrain`` split, disjoint from train, val
and test by construction (``cft_lab.testbed.problems``); the tests check both.

Deterministic: :func:`documents` is a pure function of ``(n, mixture, seed)``.

>>> docs = documents(4, (("solution", 0.5), ("review", 0.5)), seed=0)
>>> [d.kind for d in docs], all(d.split == "pretrain" for d in docs)
(['solution', 'review', 'solution', 'review'], True)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from cft_lab.prompts import ENDOFTEXT, IM_END, render_eval_prompt, render_prompt
from cft_lab.testbed import noisy, problems
from cft_lab.testbed.problems import Problem, Step, stable_rng

KINDS: tuple[str, ...] = ("solution", "review", "restatement", "answer_check", "explanation")
#: Share of wrong noisy solutions per kind that shows one (reviews and checks need both verdicts to be seen).
ERROR_RATES = {"solution": 0.3, "review": 0.5, "answer_check": 0.5}
_WORDS = {"+": "plus", "-": "minus", "*": "times"}
_REVIEW_ASKS = (
    "Is this answer right?",
    "Can you check my work on this problem?",
    "My friend solved this. Did they get it right?",
    "Please look over this solution.",
)
_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class Document:
    kind: str
    problem_id: str
    split: str
    text: str


def _solution_doc(p: Problem, rng: random.Random, seed: int) -> str:
    y = noisy.noisy_solve(p, seed=seed, error_rate=ERROR_RATES["solution"]).text
    if rng.random() < 0.7:
        prompt = render_eval_prompt("qwen25-math-cot", p.question)
    else:
        prompt = render_prompt("chatml_v1", p.question, system=_SYSTEM)
    return prompt + y + IM_END + "\n"


def _check_lines(p: Problem, written: Sequence[Step], rng: random.Random) -> tuple[list[str], bool]:
    """A reader's line-by-line check of written steps against the question; stops at the first slip."""
    lines = []
    for k, (right, got) in enumerate(zip(p.steps, written)):
        expr = f"{right.a} {_WORDS[right.op]} {right.b}"
        if got == right:
            lines.append(rng.choice((f"{expr} makes {right.result}, fine.", f"{expr} is {right.result}, good.")))
            continue
        if (got.a, got.op, got.b) == (right.a, right.op, right.b):
            lines.append(f"{expr} makes {right.result}, but the answer has {got.result}: a slip here.")
        else:
            lines.append(f"Here the question needs {expr}, which is {right.result}; the answer did something else.")
        if k < p.n_steps - 1:
            lines.append("Everything after this builds on the slip.")
        return lines, False
    return lines, True


def _review_doc(p: Problem, rng: random.Random, seed: int) -> str:
    r = noisy.noisy_solve(p, seed=seed, error_rate=ERROR_RATES["review"])
    written = [parsed[1] for line in r.text.splitlines() if (parsed := _parse(line)) is not None]
    lines, ok = _check_lines(p, written, rng)
    if ok:
        verdict = f"Verdict: the answer {p.answer} holds up."
    else:
        verdict = f"Verdict: the answer {r.final} does not hold up; it should be {p.answer}."
    check = "Checking it: " + " ".join(lines) + "\n" + verdict
    if rng.random() < 0.5:  # a forum thread
        return f"Question: {p.question}\nPosted answer:\n{r.text}\n{check}\n"
    user = f"{rng.choice(_REVIEW_ASKS)}\n{p.question}\n{r.text}"
    return render_prompt("chatml_v1", user, system=_SYSTEM) + check + IM_END + "\n"


def _parse(line: str):
    from cft_lab.testbed.teacher import parse_step_line

    return parse_step_line(line)


def _op_phrase(step: Step) -> str:
    if step.op == "*":
        return {2: "double it", 3: "triple it"}[step.b]
    return f"{'add' if step.op == '+' else 'take away'} {step.b}"


def _restatement_doc(p: Problem, rng: random.Random, seed: int) -> str:
    ops = ", ".join(_op_phrase(s) for s in p.steps)
    lead = rng.choice(("In other words:", "Put simply:", "What the question asks:"))
    return f"{p.question}\n{lead} start with {p.start}, {ops}. That is {p.n_steps} operations.\n"


_INVERSE = {"+": "-", "-": "+"}


def _backwards(value: int, step: Step) -> tuple[str, int | None]:
    """Undo one step: (the written undo, the value before it), None when the value does not divide."""
    if step.op == "*":
        if value % step.b:
            return f"{value} does not split into {step.b} equal parts", None
        return f"{value} / {step.b} = {value // step.b}", value // step.b
    before = value - step.b if step.op == "+" else value + step.b
    return f"{value} {_INVERSE[step.op]} {step.b} = {before}", before


def _answer_check_doc(p: Problem, rng: random.Random, seed: int) -> str:
    r = noisy.noisy_solve(p, seed=seed, error_rate=ERROR_RATES["answer_check"])
    value: int | None = r.final
    undo = []
    for step in reversed(p.steps):
        assert value is not None
        text, value = _backwards(value, step)
        undo.append(text)
        if value is None:
            break
    if value == p.start:
        verdict = f"we are back at the start, {p.start}, so {r.final} is right."
    else:
        verdict = f"that does not lead back to the start, {p.start}, so {r.final} cannot be right."
    return f"{p.question}\nAnswer: {r.final}.\nCheck by working backwards: {'; '.join(undo)}; {verdict}\n"


_PHRASES = (
    ("gets {b} more", "+"),
    ("buys {b} more", "+"),
    ("finds {b} more", "+"),
    ("gives away {b}", "-"),
    ("loses {b}", "-"),
    ("sells {b}", "-"),
    ("eats {b}", "-"),
    ("doubles", "*2"),
    ("triples", "*3"),
)


def _explanation_doc(p: Problem, rng: random.Random, seed: int) -> str:
    phrase, op = rng.choice(_PHRASES)
    a, b = rng.randint(10, 40), rng.randint(1, 9)
    if op == "+":
        return f'"{phrase.format(b=b)}" means adding {b}. For example, {a} + {b} = {a + b}.\n'
    if op == "-":
        return f'"{phrase.format(b=b)}" means taking away {b}. For example, {a} - {b} = {a - b}.\n'
    m = int(op[1])
    return f"When the number {phrase}, multiply it by {m}. For example, {a} * {m} = {a * m}.\n"


_WRITERS = {
    "solution": _solution_doc,
    "review": _review_doc,
    "restatement": _restatement_doc,
    "answer_check": _answer_check_doc,
    "explanation": _explanation_doc,
}


def check_mixture(mixture: Sequence[tuple[str, float]]) -> None:
    kinds = [k for k, _ in mixture]
    if set(kinds) - set(KINDS) or len(set(kinds)) != len(kinds) or any(w < 0 for _, w in mixture):
        raise ValueError(f"a mixture names each of {KINDS} at most once with a weight >= 0, got {mixture}")
    if abs(sum(w for _, w in mixture) - 1.0) > 1e-9:
        raise ValueError(f"mixture weights must sum to 1, got {sum(w for _, w in mixture)}")


def documents(n: int, mixture: Sequence[tuple[str, float]], seed: int = 0) -> list[Document]:
    """``n`` documents, each on its own question of the pretrain split (2-4 steps), of kinds drawn with the
    mixture's weights. The kind sequence and each document's wording are seeded by ``seed``; the questions are the
    pretrain split's first ``n`` (the same for every base)."""
    check_mixture(mixture)
    kinds = [k for k, _ in mixture]
    weights = [w for _, w in mixture]
    rng = stable_rng("pretrain-mixture", seed)
    out = []
    for p in problems.generate("pretrain", n, seed=0, min_steps=2, max_steps=4):
        kind = rng.choices(kinds, weights)[0]
        text = _WRITERS[kind](p, stable_rng("pretrain-doc", kind, p.id, seed), seed) + ENDOFTEXT
        out.append(Document(kind, p.id, problems.split_of(p.question), text))
    return out
