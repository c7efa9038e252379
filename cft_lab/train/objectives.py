"""Objectives: how one record set becomes {prompt, completion} pairs, and how those become token ids.

Every arm reads the same records (``cft_lab.data.stage``: id, question, response, critique, verdict, teacher_solution)
with the same ids; an objective only decides the pair (PROTOCOL §1.2, §2):

==============  =====================================  ==========================================
objective       prompt (user turn)                      completion (loss)
==============  =====================================  ==========================================
sft             question                                noisy response
sft_verified    question (records judged right only)    noisy response
sft_teacher     question                                teacher's own solution
cft             instruction + question + response       critique
==============  =====================================  ==========================================

``tokenize_pairs`` tokenizes prompt and completion separately (so the loss boundary is exact), applies the cutoff
and returns ``input_ids`` + ``completion_mask`` rows for TRL's SFTTrainer, with counts of what was truncated or
dropped. Why not let TRL tokenize: its truncation keeps the start and cuts silently, while the paper cut the source
first (LLaMA-Factory ``infer_seqlen``); and the counts per arm are what PITFALLS asks to report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cft_lab.config import ObjectiveConfig
from cft_lab.prompts import completion_suffix, cft_user_turn, render_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    id: str
    prompt: str
    completion: str


class MaskError(ValueError):
    """An example would carry no loss token."""


def build_pairs(objective: ObjectiveConfig, records: list[dict]) -> tuple[list[Pair], dict]:
    """Pairs for one objective, and counts of the records it used and skipped (with the reason)."""
    name, tpl, system = objective.name, objective.template, objective.system_prompt
    if name == "cft" and not objective.instruction:
        raise ValueError("objective=cft needs objective.instruction (the critique instruction of PROTOCOL §1.2)")
    suffix = completion_suffix(tpl)
    pairs: list[Pair] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for r in records:
        if name != "sft_teacher" and not r.get("response"):
            skip("no response")  # never train on the text "None"
            continue
        if name == "sft":
            user, target = r["question"], r["response"]
        elif name == "sft_verified":
            if r.get("verdict") is None:
                skip("verdict unparsed")
                continue
            if r["verdict"] != "right":
                skip("judged wrong")
                continue
            user, target = r["question"], r["response"]
        elif name == "sft_teacher":
            if not r.get("teacher_solution"):
                skip("no teacher solution")
                continue
            user, target = r["question"], r["teacher_solution"]
        elif name == "cft":
            if not r.get("critique"):
                skip("no critique")
                continue
            user = cft_user_turn(r["question"], r["response"], objective.instruction)
            target = r["critique"]
        else:
            raise ValueError(f"objective={name} has no training pairs")
        pairs.append(Pair(r["id"], render_prompt(tpl, user, system), target + suffix))
    counts = {"records": len(records), "pairs": len(pairs), "skipped": skipped}
    if not pairs:
        raise ValueError(f"objective={name}: no training pair out of {len(records)} records (skipped: {skipped})")
    return pairs, counts


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's truncation rule (PROTOCOL §3.1): if the target is shorter than half the cutoff only the
    source is cut; otherwise both are cut in proportion.

    >>> infer_seqlen(100, 50, 200)
    (100, 50)
    >>> infer_seqlen(300, 50, 200)
    (150, 50)
    >>> infer_seqlen(300, 300, 200)
    (100, 100)
    """
    if target_len * 2 < cutoff_len:
        max_target = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target = cutoff_len - source_len
    else:
        max_target = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target = min(max_target, target_len)
    new_source = min(max(cutoff_len - new_target, 0), source_len)
    return new_source, new_target


def tokenize_pairs(pairs: list[Pair], tokenizer, cutoff_len: int, truncation: str = "paper") -> tuple[list[dict], dict]:
    """Rows ``{id, input_ids, completion_mask}`` and counts ``{examples, truncated, dropped, loss_tokens, ...}``.

    ``truncation="paper"`` cuts with :func:`infer_seqlen` and, like LLaMA-Factory, keeps the first tokens of each
    side (a long prompt loses its tail); ``"drop"`` drops any pair over the cutoff.
    """
    rows, truncated, dropped, loss_tokens, lengths = [], 0, 0, 0, []
    for p in pairs:
        src = tokenizer(p.prompt, add_special_tokens=False)["input_ids"]
        tgt = tokenizer(p.completion, add_special_tokens=False)["input_ids"]
        if len(src) + len(tgt) > cutoff_len:
            if truncation == "drop":
                dropped += 1
                continue
            s_len, t_len = infer_seqlen(len(src), len(tgt), cutoff_len)
            src, tgt = src[:s_len], tgt[:t_len]
            truncated += 1
            if not tgt:  # a prompt that fills the cutoff leaves nothing to learn: count it, never train on it
                dropped += 1
                continue
        if not tgt:
            raise MaskError(f"pair {p.id}: empty completion, the example would be fully masked")
        rows.append({"id": p.id, "input_ids": src + tgt, "completion_mask": [0] * len(src) + [1] * len(tgt)})
        loss_tokens += len(tgt)
        lengths.append(len(src) + len(tgt))
    counts = {"examples": len(rows), "truncated": truncated, "dropped": dropped, "loss_tokens": loss_tokens,
              "mean_length": round(sum(lengths) / max(len(lengths), 1), 1), "max_length": max(lengths, default=0)}
    if not rows:
        raise MaskError(f"all {len(pairs)} pairs were dropped by cutoff_len={cutoff_len} (truncation={truncation})")
    return rows, counts


def check_masks(dataset) -> None:
    """Fail loudly if any prepared training example has no loss token (labels all -100)."""
    bad = [i for i, labels in enumerate(dataset["labels"]) if all(t == -100 for t in labels)]
    if bad:
        raise MaskError(f"{len(bad)} training examples are fully masked (first indices: {bad[:5]})")
