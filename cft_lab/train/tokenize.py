"""Tokenizing training pairs: the exact loss boundary, the paper's truncation rule, and the counts per arm.

``tokenize_pairs`` tokenizes prompt and completion separately (so the loss boundary is exact), applies the cutoff
and returns ``input_ids`` + ``completion_mask`` rows for TRL's SFTTrainer, with counts of what was truncated or
dropped. Why not let TRL tokenize: its truncation keeps the start and cuts silently, while the paper cut the source
first (LLaMA-Factory ``infer_seqlen``, docs/protocol.md §3.1); and the counts per arm are what
docs/pitfalls.md#training asks to report (a CFT input ``[x; y] + c`` is longer than an SFT one, so a cutoff truncates
the arms differently).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cft_lab.train.objectives import Pair


class MaskError(ValueError):
    """An example would carry no loss token."""


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's truncation rule (docs/protocol.md §3.1): if the target is shorter than half the cutoff only the
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
    counts = {
        "examples": len(rows),
        "truncated": truncated,
        "dropped": dropped,
        "loss_tokens": loss_tokens,
        "mean_length": round(sum(lengths) / max(len(lengths), 1), 1),
        "max_length": max(lengths, default=0),
    }
    if not rows:
        raise MaskError(f"all {len(pairs)} pairs were dropped by cutoff_len={cutoff_len} (truncation={truncation})")
    return rows, counts


def check_masks(dataset) -> None:
    """Fail loudly if any prepared training example has no loss token (labels all -100)."""
    bad = [i for i, labels in enumerate(dataset["labels"]) if all(t == -100 for t in labels)]
    if bad:
        raise MaskError(f"{len(bad)} training examples are fully masked (first indices: {bad[:5]})")
