"""Deterministic arithmetic word problems: the testbed's stand-in for WebInstruct questions.

Contract
--------
* :func:`generate` returns ``n`` :class:`Problem` objects of one split. Everything is a pure
  function of ``(split, n, seed, min_steps, max_steps)``; no global RNG state is touched and
  Python's salted ``hash()`` is never used.
* There is ONE deterministic stream of candidate problems per ``(seed, min_steps, max_steps)``.
  Each candidate is assigned to a split by :func:`split_of`, a sha256 bucket of its question
  text, so the splits are disjoint by construction (whatever step range produced them) and
  ``generate(s, n)`` is always a prefix of ``generate(s, m)`` for ``n <= m``.
* A problem's correct chain is ``steps``: step k's ``a`` is step k-1's ``result`` (step 0's
  ``a`` is the start value); every intermediate value lies in ``[0, 99]``.
* :meth:`Problem.reference_solution` is the canonical solution text that the noisy solver,
  the teacher and the graders all share (one ``Step k: a op b = r.`` line per step, then
  ``The answer is \\boxed{r}.``).

Example
-------
>>> p = generate("train", 1, seed=0)[0]
>>> split_of(p.question)
'train'
>>> p.reference_solution().splitlines()[-1] == f"The answer is \\\\boxed{{{p.answer}}}."
True
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("test", "val", "pretrain", "train")
# Half-open sha256 bucket ranges in [0, 100) for each split, in SPLITS order.
_SPLIT_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("test", 0, 10),
    ("val", 10, 20),
    ("pretrain", 20, 60),
    ("train", 60, 100),
)

#: Splits that may not be generated right now: {why: split}, set by ``cft_lab.eval.benchmarks.forbid_test_splits``
#: (a tuning trial reads no test question, whatever code path asks for one).
FORBIDDEN_SPLITS: dict[str, str] = {}

OPS: tuple[str, ...] = ("+", "-", "*")
VALUE_MIN, VALUE_MAX = 0, 99
START_MIN, START_MAX = 2, 20
OPERAND_MIN, OPERAND_MAX = 1, 9
MULTIPLIERS: tuple[int, ...] = (2, 3)
MIN_STEPS_LIMIT, MAX_STEPS_LIMIT = 1, 6
_OP_WEIGHTS = {"+": 0.4, "-": 0.4, "*": 0.2}

NAMES: tuple[str, ...] = (
    "Mia",
    "Leo",
    "Ava",
    "Sam",
    "Zoe",
    "Max",
    "Emma",
    "Noah",
    "Lily",
    "Ben",
    "Nora",
    "Omar",
    "Ruby",
    "Ivan",
    "Maya",
    "Alex",
    "Tara",
    "Hugo",
    "Lena",
    "Finn",
)
# (plural, singular, edible)
OBJECTS: tuple[tuple[str, str, bool], ...] = (
    ("apples", "apple", True),
    ("oranges", "orange", True),
    ("cookies", "cookie", True),
    ("candies", "candy", True),
    ("grapes", "grape", True),
    ("marbles", "marble", False),
    ("stickers", "sticker", False),
    ("pencils", "pencil", False),
    ("books", "book", False),
    ("coins", "coin", False),
    ("stamps", "stamp", False),
    ("cards", "card", False),
    ("shells", "shell", False),
    ("toys", "toy", False),
    ("balloons", "balloon", False),
)
_ADD_VERBS: tuple[str, ...] = ("gets", "buys", "finds")
_SUB_VERBS_EDIBLE: tuple[str, ...] = ("gives away", "loses", "eats")
_SUB_VERBS_OTHER: tuple[str, ...] = ("gives away", "loses", "sells")
_MUL_WORDS = {2: "doubles", 3: "triples"}


# --------------------------------------------------------------------------- hashing helpers
def stable_int(*parts: object) -> int:
    """A 64-bit integer derived from ``parts`` with sha256 (stable across processes).

    >>> stable_int(0, "train", 3) == stable_int(0, "train", 3)
    True
    >>> stable_int("a") != stable_int("b")
    True
    """
    key = ":".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")


def stable_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from ``parts`` via sha256 (never the salted ``hash()``).

    >>> stable_rng(1, "x").random() == stable_rng(1, "x").random()
    True
    """
    return random.Random(stable_int(*parts))


def apply_op(a: int, op: str, b: int) -> int:
    """Evaluate ``a op b`` for ``op`` in ``OPS``.

    >>> apply_op(12, "+", 7), apply_op(19, "-", 5), apply_op(14, "*", 2)
    (19, 14, 28)
    """
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown op {op!r}; expected one of {OPS}")


# --------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class Step:
    """One written arithmetic line ``a op b = result``.

    A ``Step`` is also used for *written* (possibly wrong) lines, so ``result`` is not
    forced to equal ``a op b``; see :attr:`is_consistent`.

    >>> Step(12, "+", 7, 19).render()
    '12 + 7 = 19'
    >>> Step(19, "-", 5, 15).is_consistent
    False
    """

    a: int
    op: str
    b: int
    result: int

    def render(self) -> str:
        return f"{self.a} {self.op} {self.b} = {self.result}"

    @property
    def is_consistent(self) -> bool:
        """Whether ``result`` really equals ``a op b``."""
        return apply_op(self.a, self.op, self.b) == self.result


def render_solution(steps: tuple[Step, ...] | list[Step], final: int) -> str:
    """The canonical solution text for a chain of (written) steps and a final answer.

    >>> print(render_solution([Step(12, "+", 7, 19), Step(19, "-", 5, 14)], 14))
    Step 1: 12 + 7 = 19.
    Step 2: 19 - 5 = 14.
    The answer is \\boxed{14}.
    """
    lines = [f"Step {k}: {s.render()}." for k, s in enumerate(steps, start=1)]
    lines.append(f"The answer is \\boxed{{{final}}}.")
    return "\n".join(lines)


def problem_id(question: str) -> str:
    """Stable id derived from the question text.

    >>> problem_id("Mia has 2 apples.") == problem_id("Mia has 2 apples.")
    True
    >>> problem_id("x").startswith("tb-"), len(problem_id("x"))
    (True, 15)
    """
    return "tb-" + hashlib.sha256(question.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Problem:
    """A word problem with its correct chain of steps."""

    id: str
    question: str
    steps: tuple[Step, ...]
    answer: int

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def start(self) -> int:
        """The start value (step 0's ``a``)."""
        return self.steps[0].a

    def reference_solution(self) -> str:
        """One ``Step k: a op b = r.`` line per step, then ``The answer is \\boxed{answer}.``."""
        return render_solution(self.steps, self.answer)


# --------------------------------------------------------------------------- splits
def split_bucket(question: str) -> int:
    """sha256 bucket of the question text, in ``[0, 100)``.

    >>> 0 <= split_bucket("anything") < 100
    True
    """
    digest = hashlib.sha256(("split:" + question).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def split_of(question: str) -> str:
    """The split a question belongs to; depends on the question text only.

    >>> split_of("Mia has 2 apples.") in SPLITS
    True
    """
    bucket = split_bucket(question)
    for name, lo, hi in _SPLIT_BUCKETS:
        if lo <= bucket < hi:
            return name
    raise AssertionError(f"bucket {bucket} not covered")  # pragma: no cover


# --------------------------------------------------------------------------- sampling
def _draw_op(rng: random.Random, value: int) -> tuple[str, int]:
    """Draw one operation whose result stays in ``[VALUE_MIN, VALUE_MAX]`` (re-drawing)."""
    ops = list(_OP_WEIGHTS)
    weights = [_OP_WEIGHTS[o] for o in ops]
    for _ in range(1000):
        op = rng.choices(ops, weights)[0]
        b = rng.choice(MULTIPLIERS) if op == "*" else rng.randint(OPERAND_MIN, OPERAND_MAX)
        if op == "*" and value == 0:
            continue  # "zero doubles" is a degenerate problem
        if VALUE_MIN <= apply_op(value, op, b) <= VALUE_MAX:
            return op, b
    raise RuntimeError(f"could not draw an in-range operation from value {value}")  # pragma: no cover


def _count(n: int, obj: tuple[str, str, bool]) -> str:
    """``'1 apple'`` / ``'3 apples'``.

    >>> _count(1, OBJECTS[0]), _count(3, OBJECTS[0])
    ('1 apple', '3 apples')
    """
    plural, singular, _ = obj
    return f"{n} {singular if n == 1 else plural}"


def _sentence(rng: random.Random, name: str, obj: tuple[str, str, bool], op: str, b: int) -> str:
    """One sentence of the question describing ``op b``."""
    if op == "+":
        count = _count(b, obj).replace(" ", " more ", 1)
        return f"Then {name} {rng.choice(_ADD_VERBS)} {count}."
    if op == "-":
        verbs = _SUB_VERBS_EDIBLE if obj[2] else _SUB_VERBS_OTHER
        return f"Then {name} {rng.choice(verbs)} {_count(b, obj)}."
    return f"Then the number of {obj[0]} {_MUL_WORDS[b]}."


def make_problem(rng: random.Random, n_steps: int) -> Problem:
    """Sample one problem with ``n_steps`` operations from ``rng``."""
    name = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    value = rng.randint(START_MIN, START_MAX)
    sentences = [f"{name} has {_count(value, obj)}."]
    steps: list[Step] = []
    for _ in range(n_steps):
        op, b = _draw_op(rng, value)
        result = apply_op(value, op, b)
        steps.append(Step(value, op, b, result))
        sentences.append(_sentence(rng, name, obj, op, b))
        value = result
    sentences.append(f"How many {obj[0]} does {name} have now?")
    question = " ".join(sentences)
    return Problem(id=problem_id(question), question=question, steps=tuple(steps), answer=value)


def _check_args(split: str, n: int, min_steps: int, max_steps: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    for why, forbidden in FORBIDDEN_SPLITS.items():
        if split == forbidden:
            raise RuntimeError(f"{why} may not generate {split}-split problems (validation data only)")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not (MIN_STEPS_LIMIT <= min_steps <= max_steps <= MAX_STEPS_LIMIT):
        raise ValueError(
            f"need {MIN_STEPS_LIMIT} <= min_steps <= max_steps <= {MAX_STEPS_LIMIT}, "
            f"got min_steps={min_steps}, max_steps={max_steps}"
        )


def candidate(i: int, seed: int, min_steps: int, max_steps: int) -> Problem:
    """The i-th candidate of the stream for ``(seed, min_steps, max_steps)`` (any split)."""
    rng = stable_rng("testbed-stream", seed, f"{min_steps}-{max_steps}", i)
    return make_problem(rng, rng.randint(min_steps, max_steps))


def generate(split: str, n: int, seed: int = 0, min_steps: int = 2, max_steps: int = 4) -> list[Problem]:
    """The first ``n`` distinct problems of ``split`` in the candidate stream.

    >>> a = generate("val", 5, seed=1)
    >>> a == generate("val", 5, seed=1), a[:3] == generate("val", 3, seed=1)
    (True, True)
    >>> all(split_of(p.question) == "val" for p in a)
    True
    """
    _check_args(split, n, min_steps, max_steps)
    out: list[Problem] = []
    seen: set[str] = set()
    budget = 200 * n + 10_000  # 20x what the rarest split (10%) needs: only hit if the stream repeats
    i = 0
    while len(out) < n:
        if i >= budget:
            raise RuntimeError(
                f"candidate stream exhausted: found {len(out)}/{n} {split!r} problems "
                f"in {budget} candidates (steps {min_steps}-{max_steps})"
            )
        p = candidate(i, seed, min_steps, max_steps)
        i += 1
        if p.question in seen or split_of(p.question) != split:
            continue
        seen.add(p.question)
        out.append(p)
    logger.debug("generate(%s, n=%d, seed=%d): walked %d candidates", split, n, seed, i)
    return out
