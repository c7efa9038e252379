"""Generation backends behind one call: ``generate(model_dir, prompts, inference, model_cfg) -> list[str]``.

``hf``: transformers' batched ``generate`` (CPU or GPU), prompts sorted by length and left-padded, greedy when
``temperature == 0`` else sampling seeded per run; stops at the tokenizer's end-of-turn ids and cuts each output at
the first stop string (the paper harness's rule, PROTOCOL §9). Outputs come back in the prompts' order.
``vllm`` belongs to the evaluation stage and is refused with a clear error until it lands.
"""

from __future__ import annotations

import logging

from tqdm import tqdm

from cft_lab.config import InferenceConfig, ModelConfig
from cft_lab.modeling import load_model, load_tokenizer, stop_token_ids

log = logging.getLogger(__name__)


def cut_at_stops(text: str, stops: list[str]) -> str:
    """Cut at the earliest stop string, then strip trailing whitespace.

    >>> cut_at_stops("x = 2 [END] junk", ["[END]", "<|im_end|>"])
    'x = 2'
    """
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut].rstrip()


def generate(model_dir: str, prompts: list[str], inference: InferenceConfig, model_cfg: ModelConfig,
             stops: list[str], desc: str = "generate") -> list[str]:
    if inference.backend != "hf":
        raise NotImplementedError(
            f"inference.backend={inference.backend} is not in this build yet (evaluation stage); use backend=hf")
    if inference.n != 1:
        raise NotImplementedError("inference.n > 1 (sampling several answers) comes with the evaluation stage")
    return _generate_hf(model_dir, prompts, inference, model_cfg, stops, desc)


def _generate_hf(model_dir, prompts, inference, model_cfg, stops, desc) -> list[str]:
    import torch

    tok = load_tokenizer(model_dir)
    tok.padding_side = "left"
    model = load_model(model_dir, model_cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    eos = stop_token_ids(tok)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str | None] = [None] * len(prompts)
    sample = inference.temperature > 0
    bs = inference.batch_size
    with torch.inference_mode(), tqdm(total=len(prompts), desc=desc, leave=False, mininterval=2) as bar:
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            batch = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(device) for k, v in batch.items()}
            kwargs = dict(max_new_tokens=inference.max_new_tokens, eos_token_id=eos, pad_token_id=tok.pad_token_id,
                          do_sample=sample)
            if sample:
                torch.manual_seed(inference.seed + start)  # per-batch seed: reruns reproduce, order-independent
                kwargs.update(temperature=inference.temperature, top_p=inference.top_p)
            else:
                kwargs.update(temperature=None, top_p=None, top_k=None)
            out = model.generate(**batch, **kwargs)
            new = out[:, batch["input_ids"].shape[1]:]
            for i, ids in zip(idx, new):
                outputs[i] = cut_at_stops(tok.decode(ids, skip_special_tokens=False), stops)
            bar.update(len(idx))
    return [o if o is not None else "" for o in outputs]
