"""The noisy solver: stands in for WebInstruct's unverified Qwen-72B / Mixtral responses.

Contract
--------
:func:`noisy_solve` writes a solution in exactly the format of
:meth:`~cft_lab.testbed.problems.Problem.reference_solution`. With probability
``error_rate`` it makes ONE realistic slip at a uniformly chosen step:

* ``arithmetic`` -- right expression, result off by ±1, ±2 or ±10 (``19 - 5 = 15``);
* ``wrong_op``   -- ``+`` <-> ``-``, or ``*`` read as ``+`` (``19 + 5 = 24``);
* ``misread``    -- an operand off by one or with its digits swapped (``19 - 6 = 13``).

The slipped line is internally consistent with what the solver believed (except for the
arithmetic slip, which *is* an inconsistent line), and every later step is computed
correctly from the wrong value, so the error propagates to the final answer. A slip is
re-drawn until the written result of the slipped step differs from the correct one and all
believed values stay non-negative; since ``+``/``-`` keep and ``* 2``/``* 3`` scale a
non-zero difference, the final answer then always differs, so ``correct == not slipped``.
Everything is a pure function of ``(problem.id, seed, error_rate)``.

Example
-------
>>> from cft_lab.testbed.problems import generate
>>> p = generate("train", 1)[0]
>>> r = noisy_solve(p, seed=0, error_rate=0.0)
>>> r.text == p.reference_solution(), r.correct, r.first_error
(True, True, None)
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from cft_lab.testbed.problems import Problem, Step, apply_op, render_solution, stable_rng

logger = logging.getLogger(__name__)

SLIP_KINDS: tuple[str, ...] = ("arithmetic", "wrong_op", "misread")
ARITH_DELTAS: tuple[int, ...] = (-10, -2, -1, 1, 2, 10)
_WRONG_OP = {"+": "-", "-": "+", "*": "+"}
_MUL_MISREAD = {2: 3, 3: 2}
_MAX_REDRAWS = 200


@dataclass(frozen=True)
class Response:
    """A (possibly slipped) solution and its ground-truth labels."""

    text: str
    final: int | None
    correct: bool
    first_error: int | None


@dataclass(frozen=True)
class Slip:
    """A slipped chain of written steps."""

    steps: tuple[Step, ...]
    final: int
    first_error: int
    kind: str


def digit_swap(n: int) -> int | None:
    """Swap the last two digits of ``n``; None when that changes nothing.

    >>> digit_swap(12), digit_swap(105), digit_swap(7), digit_swap(11)
    (21, 150, None, None)
    """
    s = str(n)
    if len(s) < 2 or s[-1] == s[-2]:
        return None
    swapped = int(s[:-2] + s[-1] + s[-2])
    return swapped if swapped != n else None


def misread_candidates(n: int) -> list[int]:
    """Plausible misreadings of a number: off by one, or a digit swap (all >= 1, != n).

    >>> misread_candidates(12)
    [11, 13, 21]
    >>> misread_candidates(1)
    [2]
    """
    out = [m for m in (n - 1, n + 1) if m >= 1]
    swapped = digit_swap(n)
    if swapped is not None and swapped >= 1:
        out.append(swapped)
    return [m for m in out if m != n]


def slipped_line(rng: random.Random, a: int, op: str, b: int, kind: str) -> Step:
    """The written line for one slip of ``kind`` on the correct expression ``a op b``.

    >>> slipped_line(random.Random(0), 19, "-", 5, "wrong_op")
    Step(a=19, op='+', b=5, result=24)
    """
    if kind == "arithmetic":
        return Step(a, op, b, apply_op(a, op, b) + rng.choice(ARITH_DELTAS))
    if kind == "wrong_op":
        wrong = _WRONG_OP[op]
        return Step(a, wrong, b, apply_op(a, wrong, b))
    if kind == "misread":
        if rng.random() < 0.7:  # the operand of this sentence; "doubles" <-> "triples"
            b = _MUL_MISREAD[b] if op == "*" else rng.choice(misread_candidates(b))
        else:
            a = rng.choice(misread_candidates(a) or [a + 1])  # the carried / start value
        return Step(a, op, b, apply_op(a, op, b))
    raise ValueError(f"unknown slip kind {kind!r}; expected one of {SLIP_KINDS}")


def _propagate(problem: Problem, k: int, line: Step) -> tuple[Step, ...]:
    """Correct steps before ``k``, the slipped ``line`` at ``k``, then correct ops on the wrong value."""
    written = list(problem.steps[:k]) + [line]
    value = line.result
    for step in problem.steps[k + 1 :]:
        nxt = apply_op(value, step.op, step.b)
        written.append(Step(value, step.op, step.b, nxt))
        value = nxt
    return tuple(written)


def make_slip(problem: Problem, rng: random.Random) -> Slip:
    """One slip at a random step, propagated; re-drawn until it is a real, non-negative error."""
    for _ in range(_MAX_REDRAWS):
        k = rng.randrange(problem.n_steps)
        kind = rng.choice(SLIP_KINDS)
        correct = problem.steps[k]
        line = slipped_line(rng, correct.a, correct.op, correct.b, kind)
        if line.result == correct.result:
            continue  # e.g. 2 * 2 read as 2 + 2: not an error
        written = _propagate(problem, k, line)
        if any(s.a < 0 or s.result < 0 for s in written) or written[-1].result == problem.answer:
            continue
        return Slip(steps=written, final=written[-1].result, first_error=k, kind=kind)
    raise RuntimeError(f"no valid slip found for problem {problem.id}")  # pragma: no cover


def noisy_solve(problem: Problem, seed: int = 0, error_rate: float = 0.5) -> Response:
    """Solve ``problem``, slipping once with probability ``error_rate``."""
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    rng = stable_rng("noisy", problem.id, seed)
    if rng.random() >= error_rate:
        return Response(problem.reference_solution(), problem.answer, True, None)
    slip = make_slip(problem, rng)
    logger.debug("problem %s: %s slip at step %d", problem.id, slip.kind, slip.first_error)
    return Response(render_solution(slip.steps, slip.final), slip.final, False, slip.first_error)
