"""LoRA checkpoints as full models: a checkpoint trained with ``train/lora=default`` holds adapters only
(``adapter_config.json``, ``adapter_model.safetensors``); every evaluation backend reads full weights, so
:func:`evaluable` merges the adapters into their base once (PEFT's ``merge_and_unload``) and returns the merged
folder, ``<checkpoint>/merged``, which later loads reuse. A full checkpoint is returned as it is.

The merge is written to a temporary folder and renamed into place, so a stopped merge leaves nothing that looks
finished and two processes merging the same checkpoint agree on one result.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MERGED = "merged"


def is_adapter(model_dir: str | Path) -> bool:
    """True for a folder of LoRA adapters without full weights of its own."""
    d = Path(model_dir)
    return (d / "adapter_config.json").is_file() and not (d / "config.json").is_file()


def evaluable(model_dir: str) -> str:
    """The folder to load for generation: ``model_dir`` itself, or for adapters their merge into the base."""
    if not is_adapter(model_dir):
        return model_dir
    src = Path(model_dir)
    out = src / MERGED
    if (out / "config.json").is_file():
        return str(out)
    base = json.loads((src / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{src / 'adapter_config.json'}: field base_model_name_or_path is empty: no base to merge")
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoConfig, AutoTokenizer

    log.info("merging the LoRA adapters of %s into %s", src, base)
    merged = AutoPeftModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).merge_and_unload()
    want = AutoConfig.from_pretrained(base).dtype  # merged in float32, saved in the base's own dtype
    want = getattr(torch, want, None) if isinstance(want, str) else want
    if isinstance(want, torch.dtype):
        merged = merged.to(want)
    tmp = src / f".{MERGED}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(tmp))
    try:
        tmp.rename(out)
    except OSError:  # another process finished the same merge first: keep its folder
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
