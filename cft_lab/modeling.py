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
    """Directory or hub id of the base model."""
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


def stop_token_ids(tokenizer) -> list[int]:
    """End-of-turn ids taken from the tokenizer's own vocabulary (never guessed from a path name, PITFALLS):
    ``<|im_end|>``, ``<|endoftext|>`` and the tokenizer's eos, where they exist."""
    vocab = tokenizer.get_vocab()
    ids = [vocab[t] for t in (IM_END, ENDOFTEXT) if t in vocab]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
