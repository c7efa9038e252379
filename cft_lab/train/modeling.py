"""Loading models and tokenizers: the same code for a hub id on a GPU cluster and a shipped testbed model.

Offline use: set ``HF_HUB_OFFLINE=1`` (the Makefile and tests do); a hub id then resolves from the local cache only.
"""

from __future__ import annotations

import logging

from cft_lab.config import ModelConfig
from cft_lab.prompts import ENDOFTEXT, IM_END

log = logging.getLogger(__name__)

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def model_path(model: ModelConfig) -> str:
    """Directory or hub id of the base model (an API model's id for ``source=api``: nothing to load)."""
    if model.source == "testbed":
        from cft_lab.testbed.bases import MODELS_DIR

        path = MODELS_DIR / model.path
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model={model.name}: no testbed model at {path}; build it with `make bases`")
        return str(path)
    return model.path


def load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:  # Qwen/DeepSeek bases define one; keep generation batched either way
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, model: ModelConfig, revision: str | None = None, dtype: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": getattr(torch, DTYPES[dtype or model.dtype]), "trust_remote_code": model.trust_remote_code}
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    return AutoModelForCausalLM.from_pretrained(path, revision=revision, **kwargs)


#: End-of-turn / end-of-text tokens of the model families the paper evaluates: Qwen's ChatML ``<|im_end|>`` and
#: ``<|endoftext|>`` (the ids 151645/151643 the harness hard-codes) and DeepSeek's end of sentence (full-width bars,
#: U+FF5C, and U+2581). Each is used only where the tokenizer's own vocabulary holds it.
#: End-of-turn tokens looked up in every tokenizer's vocabulary: Qwen's ChatML, DeepSeek's, and Llama 3's end of turn
#: (``<|eot_id|>``, and ``<|eom_id|>`` after a tool call) that Llama-3.1-Instruct ends its answers with.
END_TOKENS = (IM_END, ENDOFTEXT, "<\uff5cend\u2581of\u2581sentence\uff5c>", "<|eot_id|>", "<|eom_id|>")


def stop_token_ids(tokenizer) -> list[int]:
    """Ids that end a generation, looked up in the tokenizer's own vocabulary (never guessed from a path name:
    the paper's harness passed 151645/151643 only when the path contained "qwen2", docs/pitfalls.md#evaluation): every
    :data:`END_TOKENS` entry the vocabulary holds, plus the tokenizer's eos. Sorted, without duplicates.

    Raises ``ValueError`` when there is none at all: generation could then only stop at the length limit.
    """
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in END_TOKENS if t in vocab}
    eos = tokenizer.eos_token_id
    if eos is not None:
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    if not ids:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} has no eos token and none of {END_TOKENS} in its "
            "vocabulary: generation could only stop at max_new_tokens"
        )
    return sorted(int(i) for i in ids)
