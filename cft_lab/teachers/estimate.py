"""What a cell's data stage would buy, before it buys anything: the number of teacher requests, how many the request
cache already holds, the prompt tokens of the rendered teacher prompts and an estimated cost.

Prompt tokens are counted with a **tokenizer-free estimate** (:func:`estimate_tokens`: one token per word of up to
8 letters and one more per further 8, one per group of 3 digits, one per other symbol), not with the model's own
tokenizer: ``tiktoken`` needs to download its encodings, which an offline machine cannot, and an estimate is what a
budget check needs. Completion tokens are unknown before asking: the estimate uses
``teacher.expected_completion_tokens`` per request, and the bound uses ``teacher.max_tokens``. Batch mode
(``teacher.mode=batch``) is priced with the Batch API's discount (``cft_lab.teachers.pricing``).

Only a teacher that costs money is estimated: an ``openai`` teacher whose critiques are not replayed from the
dataset (``cft_lab.teachers.replays_released``).

>>> estimate_tokens("What is 12345 + 6?")
7
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cft_lab.options import TeacherKind, TeacherMode

if TYPE_CHECKING:
    from cft_lab.config import Config

METHOD = "tokenizer-free estimate (words, 3-digit groups, symbols)"
_PIECE = re.compile(r"[^\W\d_]+|\d+|\S")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count of ``text`` (see the module doc)."""
    n = 0
    for piece in _PIECE.findall(text):
        if piece.isdigit():
            n += -(-len(piece) // 3)
        elif piece[0].isalpha():
            n += 1 + (len(piece) - 1) // 8
        else:
            n += 1
    return n


@dataclass
class Estimate:
    """What a cell's teacher would be asked and what it would cost (USD; None: the model has no price)."""

    requests: int
    cached: int
    prompt_tokens: int
    completion_tokens: int  # expected: requests to ask x teacher.expected_completion_tokens
    cost_usd: Optional[float]
    cost_max_usd: Optional[float]  # every completion at teacher.max_tokens
    budget_usd: Optional[float]
    note: str = ""
    what: str = "teacher requests"  # what is bought (an API model's evaluation: "API requests")

    def line(self) -> str:
        cost = "unknown (no price for the model)" if self.cost_usd is None else f"~${self.cost_usd:,.2f}"
        bound = (
            ""
            if self.cost_max_usd is None
            else f" (at most ${self.cost_max_usd:,.2f} if every answer ran to max_tokens)"
        )
        budget = "no cap" if self.budget_usd is None else f"${self.budget_usd:,.2f}"
        return (
            f"{self.what}: {self.requests - self.cached} to buy ({self.requests} in all, {self.cached} in the "
            f"request cache); prompt tokens {self.prompt_tokens:,} ({METHOD}), completion tokens ~"
            f"{self.completion_tokens:,} expected; estimated cost {cost}{bound}; budget {budget}"
            + (f"; {self.note}" if self.note else "")
        )


def buys(cfg: Config) -> bool:
    """True when the cell's data stage pays a teacher (an openai teacher that does not replay released critiques)."""
    from cft_lab.teachers import replays_released
    from cft_lab.train.objectives import teacher_work

    paid = cfg.teacher.kind == TeacherKind.openai
    return bool(teacher_work(cfg.objective)) and paid and not replays_released(cfg)


def teacher_prices(t):
    """The price table of a teacher option (its ``price_input``/``price_output`` over the defaults)."""
    from cft_lab.teachers.pricing import configured

    return configured(t.model, t.price_input, t.price_output, option=f"teacher={t.name}", prefix="teacher.")


def budget_of(cfg: Config) -> Optional[float]:
    """The budget the teacher runs under: ``teacher.budget_usd``, else the default for a model with a price."""
    from cft_lab.teachers.pricing import DEFAULT_BUDGET_USD

    t = cfg.teacher
    if t.budget_usd is not None:
        return t.budget_usd
    try:
        priced = teacher_prices(t).known(t.model)
    except ValueError:  # half a price pair: the plan still prints; preflight refuses the cell, naming both fields
        priced = False
    return DEFAULT_BUDGET_USD if priced else None


def estimate(cfg: Config, records: list, cache_dir: Path) -> Estimate:
    """The estimate for ``records`` (the data stage's records before the teacher runs)."""
    from cft_lab.prompts.teacher import render_messages
    from cft_lab.teachers import sampling_of
    from cft_lab.teachers.cache import RequestCache, request_key
    from cft_lab.train.objectives import teacher_work

    t = cfg.teacher
    assert t.model
    sampling = sampling_of(cfg)
    keys, prompt_tokens = {}, 0
    for kind in teacher_work(cfg.objective):
        for r in records:
            messages = render_messages(kind, r.question, r.response if kind == "critique" else None, t.prompt_version)
            keys[request_key(t.model, messages, sampling)] = messages
    cache_path = Path(t.cache) if t.cache else cache_dir / "teacher_cache.sqlite"
    cached: set[str] = set()
    if cache_path.is_file():
        with RequestCache(cache_path) as cache:
            cached = {k for k, row in cache.get_many(list(keys)).items() if row.status == "ok"}
    for k, messages in keys.items():
        if k not in cached:
            prompt_tokens += sum(estimate_tokens(m["content"]) + 4 for m in messages)
    todo = len(keys) - len(cached)
    price = teacher_prices(t).get(t.model)
    batch = t.mode == TeacherMode.batch
    expected = todo * t.expected_completion_tokens
    cost = None if price is None else price.cost(prompt_tokens, expected, batch=batch)
    cost_max = None if price is None else price.cost(prompt_tokens, todo * t.max_tokens, batch=batch)
    note = "batch prices" if batch else ""
    return Estimate(len(keys), len(cached), prompt_tokens, expected, cost, cost_max, budget_of(cfg), note)


def check_estimate(cfg: Config, est: Estimate) -> None:
    """Refuse a cell whose expected cost exceeds its budget (the default one included), before any request."""
    if est.budget_usd is not None and est.cost_usd is not None and est.cost_usd > est.budget_usd:
        default = " (the default for paid teachers)" if cfg.teacher.budget_usd is None else ""
        raise ValueError(
            f"teacher={cfg.teacher.name}: the estimated cost ${est.cost_usd:,.2f} of {est.requests - est.cached} "
            f"requests exceeds teacher.budget_usd=${est.budget_usd:,.2f}{default}; raise it on purpose, e.g. "
            f"teacher.budget_usd={_round_up(est.cost_usd * 1.25)}, or ask for fewer items (data.source.sample)"
        )


def _round_up(x: float) -> int:
    step = 10 ** max(0, len(str(int(x))) - 2)
    return int(-(-x // step) * step)
