"""Generation backends behind one interface: ``make_generator(model_dir, model_cfg, inference)`` loads a model once;
``generator.generate(prompts, stops, desc)`` returns one output per prompt, in the prompts' order.

``hf``: transformers' batched ``generate`` (CPU or GPU), prompts sorted by length and left-padded, greedy when
``temperature == 0`` else sampling with a per-batch seed; it stops at the tokenizer's end-of-turn ids (taken from
its vocabulary, never from a path name) and cuts each output at the first stop string, as the paper's harness does
(PROTOCOL §9). ``vllm`` belongs to the evaluation stage and is refused with a clear error until it lands.
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


class HFGenerator:
    """transformers ``generate`` on one loaded model."""

    def __init__(self, model_dir: str, model_cfg: ModelConfig, inference: InferenceConfig,
                 revision: str | None = None):
        import torch

        self.inference = inference
        self.tok = load_tokenizer(model_dir, revision, model_cfg.trust_remote_code)
        self.tok.padding_side = "left"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_model(model_dir, model_cfg, revision).to(self.device).eval()
        self.eos = stop_token_ids(self.tok)

    def generate(self, prompts: list[str], stops: list[str], desc: str = "generate") -> list[str]:
        import torch

        inf, tok = self.inference, self.tok
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        outputs = [""] * len(prompts)
        sample = inf.temperature > 0
        with torch.inference_mode(), tqdm(total=len(prompts), desc=desc, leave=False, mininterval=2) as bar:
            for start in range(0, len(order), inf.batch_size):
                idx = order[start:start + inf.batch_size]
                batch = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                kwargs = dict(max_new_tokens=inf.max_new_tokens, eos_token_id=self.eos, pad_token_id=tok.pad_token_id,
                              do_sample=sample)
                if sample:
                    torch.manual_seed(inf.seed + start)  # reruns reproduce
                    kwargs.update(temperature=inf.temperature, top_p=inf.top_p)
                else:
                    kwargs.update(temperature=None, top_p=None, top_k=None)
                new = self.model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1]:]
                for i, ids in zip(idx, new):
                    outputs[i] = cut_at_stops(tok.decode(ids, skip_special_tokens=False), stops)
                bar.update(len(idx))
        return outputs


def make_generator(model_dir: str, model_cfg: ModelConfig, inference: InferenceConfig,
                   revision: str | None = None) -> HFGenerator:
    check_backend(inference)
    return HFGenerator(model_dir, model_cfg, inference, revision)


def check_backend(inference: InferenceConfig) -> None:
    """Refuse what this build cannot run, before any training (the pipeline calls it first)."""
    if inference.backend != "hf":
        raise NotImplementedError(
            f"inference.backend={inference.backend} is not in this build yet (evaluation stage); use backend=hf")
    if inference.n != 1:
        raise NotImplementedError("inference.n > 1 (several samples per prompt) comes with the evaluation stage")
    if inference.mode != "direct":
        raise NotImplementedError(f"inference.mode={inference.mode}: only direct inference is in this build")
