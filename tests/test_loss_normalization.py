"""The loss normalisation across devices (``train.loss_normalization``) is what it says, on a real 2-rank run: torchrun
with the gloo backend (two CPU processes), one optimizer step over two examples of very different loss-token counts
(one per rank), compared with the same update computed by hand in this process.

* ``global_batch``: the loss is the sum over every loss token of the global batch divided by their number;
* ``per_device``: each rank divides by its own count, and the gradients are averaged over the ranks (the paper's
  LLaMA-Factory runs).

Adam's first step moves each weight by about the learning rate in the direction of its gradient's sign, so a
differently weighted gradient shows up as weights moved the other way (differences near 2 x lr); float noise stays
well below that."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cft_lab.train.modeling import load_model, load_tokenizer, model_path
from cft_lab.train.trainer import train_subprocess
from conftest import SMOKE, compose

LR = 1e-3


def _rows(tok) -> list[dict]:
    """Two examples: 3 loss tokens and about 40."""

    def row(prompt: str, completion: str) -> dict:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(completion, add_special_tokens=False)["input_ids"]
        return {"id": prompt, "input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)}

    short = row("What is 2 + 3? ", "5.")
    long = row("What is 12 + 30 - 7? ", "Step 1: 12 + 30 = 42. Step 2: 42 - 7 = 35. The answer is \\boxed{35}.")
    assert sum(short["completion_mask"]) <= 4 and sum(long["completion_mask"]) >= 30
    return [short, long]


def _reference(cfg, rows: list[dict], mode: str) -> dict[str, torch.Tensor]:
    """The update by hand: the loss of each normalisation, clipped gradient, one AdamW step."""
    torch.manual_seed(0)
    model = load_model(model_path(cfg.model), cfg.model, dtype="float32")
    sums, counts = [], []
    for r in rows:
        ids = torch.tensor([r["input_ids"]])
        labels = torch.tensor([[t if m else -100 for t, m in zip(r["input_ids"], r["completion_mask"])]])
        logits = model(input_ids=ids).logits[0, :-1]
        target = labels[0, 1:]
        sums.append(torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=-100, reduction="sum"))
        counts.append(int((target != -100).sum()))
    if mode == "global_batch":
        loss = sum(sums) / sum(counts)
    else:
        loss = sum(s / n for s, n in zip(sums, counts)) / len(rows)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    opt.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


def _distributed(cfg, rows: list[dict], out) -> dict[str, torch.Tensor]:
    out.mkdir(parents=True)
    rows_path = out / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = train_subprocess(cfg, model_path(cfg.model), rows_path, out)
    assert metrics["global_step"] == 1 and metrics["loss_normalization"] == cfg.train.loss_normalization
    return load_file(str(out / "checkpoint-1" / "model.safetensors"))


def _worst(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a if k in b)


@pytest.mark.parametrize("mode,other", [("global_batch", "per_device"), ("per_device", "global_batch")])
def test_two_gloo_ranks_make_the_single_process_update_of_their_normalisation(tmp_path, mode, other):
    cfg = compose(
        SMOKE
        + [
            "objective=sft",
            "train.launcher=torchrun",
            "train.num_devices=2",
            "train.per_device_train_batch_size=1",
            "train.gradient_accumulation_steps=1",
            "train.max_steps=1",
            f"train.learning_rate={LR}",
            "train.warmup_ratio=0",
            "train.lr_scheduler_type=constant",
            f"train.loss_normalization={mode}",
        ]
    )
    rows = _rows(load_tokenizer(model_path(cfg.model)))
    got = _distributed(cfg, rows, tmp_path / mode)
    mine, theirs = _reference(cfg, rows, mode), _reference(cfg, rows, other)
    # float noise: a gradient near 0 whose last bits differ moves by lr * noise / eps (measured: up to 5e-5);
    # a gradient of the other sign moves by 2 * lr
    assert _worst(got, mine) < LR / 4, f"2 ranks differ from the single-process {mode} update"
    assert _worst(got, theirs) > 1.5 * LR, f"the {mode} and {other} updates are indistinguishable here"
    base = load_model(model_path(cfg.model), cfg.model, dtype="float32").state_dict()
    assert _worst(got, base) > LR / 2  # it did move
