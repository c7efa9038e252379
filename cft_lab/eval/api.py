"""The ``openai`` generation backend: evaluation prompts sent to a model behind an OpenAI-compatible API (GPT-4o,
o1-mini, or any model a server such as ``vllm serve`` exposes), for the rows of Table 3 that no local weights give.

It keeps :mod:`cft_lab.eval.generation`'s contract (``generate(prompts, stops, seeds=, n=, temperature=)`` returns
``n`` :class:`Completion` per prompt, in order) with these differences:

* a prompt is a list of chat **messages** (:func:`cft_lab.eval.benchmarks.messages`), not a rendered string
  (``takes_messages``); the template's system text goes in the role ``model.api.system_role`` says (``user`` folds
  it into the user turn, for models that take no system message);
* requests go through the ``openai`` teacher's machinery, not a copy of it (:class:`OpenAITeacher`): the durable
  request cache (a rerun asks nothing already answered, so an interrupted benchmark resumes), retries honouring
  Retry-After, the adaptive concurrency window, the cost ledger and the USD budget. A request that still failed
  makes :meth:`generate` raise (the cell fails and names the count; a rerun asks only those again);
* **stop strings are applied here**, after the answer comes back (``cut_at_stops``), never sent: the API takes at
  most four and a reasoning model none, and the harness has seven;
* sampling: greedy is ``temperature=0, top_p=1``; a sample ``j`` of prompt ``i`` at T > 0 is its own request with
  ``seed = seeds[i] + j`` (the API's best-effort seed; distinct requests, so distinct cache entries). A
  **reasoning model** (``model.api.reasoning``) is sent neither temperature nor top_p (the API refuses them: its
  decoding cannot be made greedy) and ``max_completion_tokens`` (which bounds its hidden reasoning tokens too)
  instead of ``max_tokens``; it takes ``n = 1`` only (validated at compose time);
* ``tokens`` of a completion is the API's ``completion_tokens`` (hidden reasoning tokens included);
  ``describe()`` reports the requests, cached answers, tokens and USD spent so far (``usage``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cft_lab.config import ApiModelConfig, InferenceConfig, ModelConfig
from cft_lab.eval.generation import _SEED_SPAN, Completion, cut_at_stops

log = logging.getLogger(__name__)

SYSTEM_ROLES = ("system", "developer", "user")


class GenerationFailed(RuntimeError):
    """Some requests of a call failed for good (after the teacher machinery's retries)."""


def api_messages(messages: list[dict], system_role: str) -> list[dict]:
    """The template's messages with the system text in ``system_role``'s place.

    >>> api_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], "user")
    [{'role': 'user', 'content': 'S\\n\\nQ'}]
    >>> api_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], "developer")[0]["role"]
    'developer'
    """
    if system_role not in SYSTEM_ROLES:
        raise ValueError(f"model.api.system_role={system_role!r}; choose one of {', '.join(SYSTEM_ROLES)}")
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system or system_role == "system":
        return [dict(m) for m in messages]
    if system_role == "developer":
        return [{"role": "developer", "content": "\n\n".join(system)}, *rest]
    first = next(i for i, m in enumerate(rest) if m["role"] == "user")
    rest[first]["content"] = "\n\n".join([*system, rest[first]["content"]])
    return rest


def budget_for(m: ModelConfig) -> float | None:
    """The USD budget of an API model's requests: ``model.api.budget_usd``, else the teachers' default budget for a
    model with a price, else none (a local server)."""
    from cft_lab.teachers.pricing import DEFAULT_BUDGET_USD

    api = m.api or ApiModelConfig()
    if api.budget_usd is not None:
        return api.budget_usd
    return DEFAULT_BUDGET_USD if prices_for(m).known(m.path) else None


def prices_for(m: ModelConfig):
    """The price table of an API model (``model.api.price_input``/``price_output`` over the defaults)."""
    from cft_lab.teachers.pricing import configured

    api = m.api or ApiModelConfig()
    return configured(m.path, api.price_input, api.price_output, option=f"model={m.name}", prefix="model.api.")


class OpenAIGenerator:
    """Generation through an OpenAI-compatible API (see the module docstring)."""

    backend = "openai"
    takes_messages = True

    def __init__(self, model_cfg: ModelConfig, inference: InferenceConfig, *, cache_dir: Path | None = None):
        from cft_lab.teachers.openai_teacher import OpenAITeacher

        self.model_cfg, self.inference = model_cfg, inference
        self.api = api = model_cfg.api or ApiModelConfig()
        if api.system_role not in SYSTEM_ROLES:
            raise ValueError(f"model.api.system_role={api.system_role!r}; choose one of {', '.join(SYSTEM_ROLES)}")
        if api.cache:
            cache = Path(api.cache)
        elif cache_dir is not None:
            cache = Path(cache_dir) / "api_cache.sqlite"
        else:
            raise ValueError(f"model={model_cfg.name}: no request cache (set model.api.cache)")
        self.model = model_cfg.path
        self.client = OpenAITeacher(
            f"model {model_cfg.name}",
            self.model,
            cache_path=cache,
            base_url=api.base_url,
            api_key_env=api.api_key_env,
            prompt_version="eval",
            sampling={},
            concurrency=api.concurrency,
            timeout_s=api.timeout_s,
            max_attempts=api.max_attempts,
            rate_limit_patience_s=api.rate_limit_patience_s,
            budget_usd=budget_for(model_cfg),
            prices=prices_for(model_cfg),
        )
        self._seed_stream = np.random.default_rng(inference.seed)
        self.usage = {"requests": 0, "cached": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        self._closed = False

    def _sampling(self, temperature: float, max_new_tokens: int | None) -> dict[str, Any]:
        cap = max_new_tokens or self.inference.max_new_tokens
        if self.api.reasoning:
            return {"max_completion_tokens": self.api.max_completion_tokens or cap}
        greedy = temperature == 0
        return {"temperature": temperature, "top_p": 1.0 if greedy else self.inference.top_p, "max_tokens": cap}

    def generate(
        self,
        prompts: list[list[dict]],
        stops: list[str],
        *,
        seeds: list[int] | None = None,
        n: int | None = None,
        temperature: float | None = None,
        desc: str = "",
        max_new_tokens: int | None = None,
    ) -> list[list[Completion]]:
        from cft_lab.teachers.base import TeacherTask

        if self._closed:
            raise RuntimeError("generate() after close()")
        if prompts and not isinstance(prompts[0], list):
            raise TypeError("the openai backend takes chat messages per prompt (cft_lab.eval.benchmarks.messages)")
        n = self.inference.n if n is None else int(n)
        temperature = self.inference.temperature if temperature is None else float(temperature)
        if n < 1 or temperature < 0:
            raise ValueError(f"n={n} must be >= 1 and temperature={temperature} >= 0")
        if self.api.reasoning and n > 1:
            raise ValueError(f"model={self.model_cfg.name} is a reasoning model: its samples cannot be seeded (n=1)")
        if seeds is None:
            seeds = [int(s) for s in self._seed_stream.integers(0, _SEED_SPAN, size=len(prompts))]
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts: give one seed per prompt")
        sample = temperature > 0 and not self.api.reasoning
        base = self._sampling(temperature, max_new_tokens)
        tasks, where = [], []
        for i, (msgs, seed) in enumerate(zip(prompts, seeds)):
            sent = tuple(api_messages(msgs, self.api.system_role))
            for j in range(n if sample else 1):
                sampling = {**base, "seed": int(seed) + j} if sample else base
                tasks.append(TeacherTask(f"{desc or 'generate'}:{i}:{j}", "generate", "", None, messages=sent,
                                         sampling=sampling))  # fmt: skip
                where.append(i)
        results = self.client.run(tasks, progress=bool(tasks))
        run = self.client.last_run
        self.usage["requests"] += int(run.get("asked", 0))
        self.usage["cached"] += int(run.get("cached_keys", 0))
        for r in results:
            if r.status == "ok" and not r.cached:
                self.usage["prompt_tokens"] += r.prompt_tokens
                self.usage["completion_tokens"] += r.completion_tokens
                self.usage["cost_usd"] += r.cost_usd or 0.0
        bad = [r for r in results if r.status != "ok"]
        if bad:
            kinds = {r.status for r in bad}
            raise GenerationFailed(
                f"model={self.model_cfg.name}: {len(bad)} of {len(results)} requests did not succeed "
                f"({', '.join(kinds)}; first: {bad[0].error}); the answered ones are cached: rerun to ask only these"
                + (" (raise model.api.budget_usd)" if "budget_exhausted" in kinds else "")
            )
        out: list[list[Completion]] = [[] for _ in prompts]
        for i, r in zip(where, results):
            text = r.text or ""
            out[i].append(Completion(cut_at_stops(text, stops), r.completion_tokens,
                                     "length" if r.finish_reason == "length" else "stop"))  # fmt: skip
        return out if sample else [c * n for c in out]

    def describe(self, *, n: int | None = None, temperature: float | None = None) -> dict[str, Any]:
        import openai

        t = self.inference.temperature if temperature is None else float(temperature)
        return {
            "backend": self.backend,
            "versions": {"openai": openai.__version__},
            "model": self.model,
            "endpoint_host": self.client.host(),
            "api": {"reasoning": self.api.reasoning, "system_role": self.api.system_role},
            "sampling": {
                **self._sampling(t, None),
                "n": self.inference.n if n is None else int(n),
                "seeding": "sample j of prompt i at T > 0: seed = seeds[i] + j (the API's best effort)",
                "stops": "applied to the returned text (never sent)",
            },
            "budget_usd": self.client.budget_usd,
            "cache": str(self.client.cache_path),
            "usage": {**self.usage, "cost_usd": round(self.usage["cost_usd"], 6)},
        }

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def estimate(cfg, cache_dir: Path):
    """What evaluating an API model cell would buy (a :class:`cft_lab.teachers.estimate.Estimate`): every request of
    every benchmark, the ones already in the request cache, prompt tokens counted without a tokenizer, completions at
    ``model.api.expected_completion_tokens`` (at most ``max_tokens``), priced from the price table or
    ``model.api.price_*``. Refused (ValueError) when over the budget."""
    from cft_lab.eval import benchmarks
    from cft_lab.teachers.cache import RequestCache, request_key
    from cft_lab.teachers.estimate import Estimate, estimate_tokens

    m, inf = cfg.model, cfg.inference
    api = m.api or ApiModelConfig()
    gen = OpenAIGenerator.__new__(OpenAIGenerator)  # its sampling rule without a client
    gen.api, gen.inference = api, inf
    sample = inf.temperature > 0 and not api.reasoning
    base = gen._sampling(inf.temperature, None)
    keys: dict[str, list[dict]] = {}
    for name in cfg.eval.benchmarks:
        template = benchmarks.template_for(name, m.eval_template)
        for it in benchmarks.items(name, cfg.eval.limit):
            msgs = api_messages(benchmarks.messages(it, template, name), api.system_role)
            seed = cfg.inference.seed + it["index"] * inf.n
            for j in range(inf.n if sample else 1):
                keys[request_key(m.path, msgs, {**base, "seed": seed + j} if sample else base)] = msgs
    cache_path = Path(api.cache) if api.cache else Path(cache_dir) / "api_cache.sqlite"
    cached: set[str] = set()
    if cache_path.is_file():
        with RequestCache(cache_path) as cache:
            cached = {k for k, row in cache.get_many(list(keys)).items() if row.status == "ok"}
    todo = [k for k in keys if k not in cached]
    prompt_tokens = sum(sum(estimate_tokens(x["content"]) + 4 for x in keys[k]) for k in todo)
    cap = api.max_completion_tokens or inf.max_new_tokens
    expected = len(todo) * min(api.expected_completion_tokens, cap)
    price = prices_for(m).get(m.path)
    cost = None if price is None else price.cost(prompt_tokens, expected)
    cost_max = None if price is None else price.cost(prompt_tokens, len(todo) * cap)
    budget = budget_for(m)
    est = Estimate(len(keys), len(cached), prompt_tokens, expected, cost, cost_max, budget, what="API requests")
    if budget is not None and cost is not None and cost > budget:
        raise ValueError(
            f"model={m.name}: the estimated cost ${cost:,.2f} of {len(todo)} API requests exceeds "
            f"model.api.budget_usd=${budget:,.2f}; raise it on purpose or evaluate fewer items (eval.limit)"
        )
    return est
