"""Compute accounting (cft_lab.train.compute) on a fixture of tokenized rows, for whole epochs and for runs cut by
steps, and the same numbers from a real tiny training run (tests/test_pipeline.py checks the cell's result)."""

from __future__ import annotations

import pytest

from cft_lab.train.compute import accounting

# Five tokenized rows as tokenize_pairs makes them: an SFT-like short prompt and a CFT-like long one.
ROWS = [
    {"input_ids": [0] * 40, "completion_mask": [0] * 30 + [1] * 10},
    {"input_ids": [0] * 60, "completion_mask": [0] * 45 + [1] * 15},
    {"input_ids": [0] * 50, "completion_mask": [0] * 20 + [1] * 30},
    {"input_ids": [0] * 30, "completion_mask": [0] * 10 + [1] * 20},
    {"input_ids": [0] * 20, "completion_mask": [0] * 5 + [1] * 15},
]
IN = [len(r["input_ids"]) for r in ROWS]  # 200 tokens per epoch
LOSS = [sum(r["completion_mask"]) for r in ROWS]  # 90 per epoch


def test_whole_epochs_are_exact():
    c = accounting(
        IN, LOSS, parameters=1_000, global_step=6, global_batch=2, epochs=2.0, max_steps=-1, train_wall_s=3.14159
    )
    assert (c["attended_tokens"], c["loss_tokens"], c["examples_seen"]) == (400, 180, 10)
    assert c["flops"] == 6 * 1_000 * 400 and c["loss_share"] == 0.45 and c["exact"]
    assert (c["optimizer_steps"], c["train_wall_s"], c["examples"]) == (6, 3.14, 5)


def test_runs_cut_by_steps_or_fractional_epochs_are_estimated_from_examples_seen():
    steps = accounting(IN, LOSS, parameters=10, global_step=4, global_batch=2, epochs=1.0, max_steps=4)
    assert (steps["examples_seen"], steps["attended_tokens"], steps["loss_tokens"]) == (8, 320, 144)  # 8 x 40, 8 x 18
    assert not steps["exact"]
    half = accounting(IN, LOSS, parameters=10, global_step=2, global_batch=2, epochs=0.5, max_steps=-1)
    assert half["examples_seen"] == 4 and half["attended_tokens"] == 160
    capped = accounting(IN, LOSS, parameters=10, global_step=4, global_batch=2, epochs=1.5, max_steps=-1)
    assert capped["examples_seen"] == 8  # min(4 x 2, 5 x ceil(1.5))
    with pytest.raises(ValueError):
        accounting([], [], parameters=1, global_step=1, global_batch=1, epochs=1.0, max_steps=-1)
