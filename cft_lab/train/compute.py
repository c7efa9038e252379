"""What a training run cost: tokens, optimizer steps, an estimate of training FLOPs and the wall time.

"Did the arms get the same compute?" is not answered by the number of examples: a CFT input is the question, the
response *and* the critique, of which only the critique is in the loss, so the same 2000 records give CFT more tokens
to attend over than SFT and a different number of tokens to learn from. Per run (``metrics.json`` under
``compute``, each cell's ``result.json``, its W&B summary ``compute/*`` and the tables' optional columns):

* ``loss_tokens``: completion tokens trained on (the loss part), summed over every example each time it is seen;
* ``attended_tokens``: every non-padding token of every example each time it is seen (prompt + completion);
* ``optimizer_steps``: the trainer's global step;
* ``flops``: ``6 · parameters · attended_tokens``, the usual dense-transformer estimate of a training step
  (2 for the forward pass, 4 for the backward, per parameter and token), counting the embedding parameters and
  ignoring attention's quadratic term and padding: a comparison between arms, not a hardware measurement;
* ``train_wall_s``: seconds of training (the trainer's loop; data preparation and selection excluded).

The token counts are exact for whole epochs (every example seen ``epochs`` times: ``exact`` true). With fractional
epochs or ``max_steps`` the trainer stops inside an epoch after an order the sampler chose; the counts are then the
examples seen (``steps x global batch``, capped at the epochs' total) times the mean tokens per example
(``exact`` false).

>>> c = accounting([10, 20, 30], [2, 4, 6], parameters=1000, global_step=2, global_batch=2, epochs=2.0, max_steps=-1)
>>> c["attended_tokens"], c["loss_tokens"], c["examples_seen"], c["flops"], c["exact"]
(120, 24, 6, 720000, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def accounting(
    input_lengths: Sequence[int],
    loss_lengths: Sequence[int],
    *,
    parameters: int,
    global_step: int,
    global_batch: int,
    epochs: float,
    max_steps: int,
    train_wall_s: float | None = None,
) -> dict:
    """The run's compute (see the module doc) from its examples' token counts and the trainer's step count."""
    if len(input_lengths) != len(loss_lengths) or not input_lengths:
        raise ValueError("need the same, non-zero number of input and loss lengths")
    n = len(input_lengths)
    per_epoch_in, per_epoch_loss = sum(input_lengths), sum(loss_lengths)
    whole = max_steps <= 0 and float(epochs).is_integer()
    if whole:
        seen = n * int(epochs)
        attended, loss = per_epoch_in * int(epochs), per_epoch_loss * int(epochs)
    else:
        cap = n * math.ceil(epochs) if max_steps <= 0 else math.inf
        seen = int(min(global_step * global_batch, cap))
        attended = round(seen * per_epoch_in / n)
        loss = round(seen * per_epoch_loss / n)
    return {
        "parameters": int(parameters),
        "examples": n,
        "examples_seen": seen,
        "loss_tokens": int(loss),
        "attended_tokens": int(attended),
        "loss_share": round(loss / attended, 4) if attended else None,
        "optimizer_steps": int(global_step),
        "flops": 6 * int(parameters) * int(attended),
        "flops_rule": "6 * parameters * attended_tokens",
        "train_wall_s": None if train_wall_s is None else round(float(train_wall_s), 2),
        "exact": whole,
    }
