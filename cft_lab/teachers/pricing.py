"""Per-model prices (USD per 1M tokens) and what a response cost.

The paper's scripts priced every call at GPT-4o's $2.50/$10 whatever the model (docs/pitfalls.md#data-and-teacher),
which mis-costs the GPT-4o-mini ablation 16x. Here every model has its own price; a model missing from the
table costs ``None`` with a warning, never a neighbour's price. Prices are OpenAI's list prices for the
standard (synchronous) tier, checked for the snapshots below; ``batch_discount`` is the Batch API's 50%, applied to
every response bought in batch mode (``teacher.mode=batch``, :mod:`cft_lab.teachers.batch`) and to its estimates.
``cached_input`` is the price of prompt tokens the
server reports as cached (``usage.prompt_tokens_details.cached_tokens``).

Override or add prices from config with :meth:`PriceTable.with_overrides`, e.g.
``{"my-model": {"input": 0.5, "output": 1.5}}``; an option's ``price_input``/``price_output`` pair (a teacher, a
judge, an API model) goes through :func:`configured`, the one place that turns it into a table.

>>> t = PriceTable()
>>> round(t.cost("gpt-4o-2024-11-20", 1_000_000, 100_000), 4)
3.5
>>> round(t.cost("gpt-4o-mini", 1_000_000, 1_000_000), 4)
0.75
>>> t.cost("no-such-model", 10, 10) is None
True
>>> round(t.cost("gpt-4o-2024-11-20", 1_000_000, 100_000, batch=True), 4)  # the Batch API: half price
1.75
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)

#: The budget of a paid teacher (a model with a price) when ``teacher.budget_usd`` is null: small on purpose, so that
#: buying a paper-size dataset (50K critiques of GPT-4o: a few hundred USD) is a decision, not a default.
DEFAULT_BUDGET_USD = 20.0


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens
    cached_input: float | None = None  # USD per 1M cached prompt tokens (None: same as input)
    batch_discount: float = 0.5  # fraction taken off by the Batch API

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, *, batch: bool = False) -> float:
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        usd = ((prompt_tokens - cached) * self.input + cached * cached_price + completion_tokens * self.output) / 1e6
        return usd * (1.0 - self.batch_discount) if batch else usd


#: List prices (USD / 1M tokens). The gpt-4o alias pointed at 2024-08-06 when the paper was written.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-2024-11-20": Price(2.50, 10.00, cached_input=1.25),
    "gpt-4o-2024-08-06": Price(2.50, 10.00, cached_input=1.25),
    "gpt-4o-2024-05-13": Price(5.00, 15.00),
    "gpt-4o": Price(2.50, 10.00, cached_input=1.25),
    "gpt-4o-mini-2024-07-18": Price(0.15, 0.60, cached_input=0.075),
    "gpt-4o-mini": Price(0.15, 0.60, cached_input=0.075),
}


class PriceTable:
    """Prices by model name; unknown names cost ``None`` (warned once per name)."""

    def __init__(self, prices: Mapping[str, Price] | None = None):
        self._prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._warned: set[str] = set()

    def with_overrides(self, overrides: Mapping[str, Mapping[str, float] | Price] | None) -> PriceTable:
        """A new table with ``overrides`` (model -> Price or {input, output[, cached_input, batch_discount]})."""
        prices = dict(self._prices)
        for model, p in (overrides or {}).items():
            if isinstance(p, Price):
                prices[model] = p
                continue
            unknown = set(p) - {"input", "output", "cached_input", "batch_discount"}
            if unknown or not {"input", "output"} <= set(p):
                raise ValueError(
                    f"price for {model!r} needs input and output (USD/1M tokens), "
                    f"optionally cached_input and batch_discount; got {sorted(p)}"
                )
            base = Price(float(p["input"]), float(p["output"]))
            prices[model] = replace(base, **{k: float(v) for k, v in p.items() if k not in ("input", "output")})
        return PriceTable(prices)

    def get(self, *models: str | None) -> Price | None:
        """The price of the first of ``models`` the table knows (e.g. the reported snapshot, then the name asked)."""
        for m in models:
            if m and m in self._prices:
                return self._prices[m]
        return None

    def known(self, model: str | None) -> bool:
        return self.get(model) is not None

    def cost(
        self,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        *,
        fallback: str | None = None,
        batch: bool = False,
    ) -> float | None:
        """USD for one response, or None (with a warning, once per name) when neither name has a price."""
        price = self.get(model, fallback)
        if price is None:
            name = model or fallback or "<none>"
            if name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "no price for model %r (nor %r): its cost is recorded as unknown (None). Add it with "
                    "teacher prices in the config.",
                    model,
                    fallback,
                )
            return None
        return price.cost(prompt_tokens, completion_tokens, cached_tokens, batch=batch)

    def as_dict(self) -> dict[str, dict]:
        return {
            m: {
                "input": p.input,
                "output": p.output,
                "cached_input": p.cached_input,
                "batch_discount": p.batch_discount,
            }
            for m, p in sorted(self._prices.items())
        }


def configured(
    model: str | None, price_input: float | None, price_output: float | None, *, option: str, prefix: str = ""
) -> PriceTable:
    """The default table with ``model`` priced as its config option says: both prices (USD per 1M tokens) or
    neither (the default table's price, if any); one without the other is refused, naming ``option`` and its fields
    (``prefix``: ``teacher.``, ``model.api.``). Preflight and every price consumer raise this one message, so a dry
    run names the problem once."""
    prices = PriceTable()
    if price_input is None and price_output is None:
        return prices
    if price_input is None or price_output is None:
        raise ValueError(f"{option}: set both {prefix}price_input and {prefix}price_output (USD per 1M tokens)")
    if not model:
        raise ValueError(f"{option}: prices are set but no model is named to price")
    return prices.with_overrides({model: {"input": price_input, "output": price_output}})
