"""Sequence packing (``train.packing``: TRL's padding-free path) never lets attention cross examples, changes no update,
and every arm of every table trains with the same setting (docs/pitfalls.md#training); Liger kernels are wired as an
option (they need a GPU: only the wiring is tested here)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cft_lab.config import key_dict
from cft_lab.paths import EXPERIMENTS_DIR
from cft_lab.train.modeling import load_model, load_tokenizer, model_path
from cft_lab.train.objectives import spec
from cft_lab.train.trainer import _sft_config, train_inprocess
from conftest import SMOKE, compose


def _rows(tok, n: int = 3) -> list[dict]:
    out = []
    for i in range(n):
        p = tok(f"What is {i + 2} + {3 * i + 1}? ", add_special_tokens=False)["input_ids"]
        c = tok(f"Step 1: {i + 2} + {3 * i + 1} = {4 * i + 3}. " * (i + 1), add_special_tokens=False)["input_ids"]
        out.append({"id": str(i), "input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)})
    return out


def _collator(cfg, tmp_path, tok, model):
    from datasets import Dataset
    from trl import SFTTrainer

    rows = _rows(tok)
    ds = Dataset.from_list([{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]} for r in rows])
    args = _sft_config(cfg, tmp_path, len(rows))
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    prepared = [trainer.train_dataset[i] for i in range(len(rows))]  # completion_mask folded into labels by TRL
    return trainer.data_collator, rows, prepared


def test_a_packed_batch_gives_every_example_the_logits_it_has_alone(tmp_path):
    cfg = compose([*SMOKE, "train.packing=true"])
    tok = load_tokenizer(model_path(cfg.model))
    model = load_model(model_path(cfg.model), cfg.model, dtype="float32").eval()
    collate, rows, prepared = _collator(cfg, tmp_path, tok, model)
    batch = collate(prepared)
    lengths = [len(r["input_ids"]) for r in rows]
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch  # one row, no padding
    starts = [0, *torch.tensor(lengths).cumsum(0).tolist()[:-1]]
    assert batch["position_ids"][0, starts].tolist() == [0, 0, 0]  # positions restart at every example
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        alone = [model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows]
        causal = model(input_ids=batch["input_ids"]).logits[0]  # the same tokens without the example boundaries
    for s, n, a in zip(starts, lengths, alone):
        assert torch.allclose(packed[s : s + n], a, atol=1e-5), "attention crossed an example boundary"
    # the check can fail: attending across the boundary changes the second example's logits
    assert not torch.allclose(causal[starts[1] : starts[1] + lengths[1]], alone[1], atol=1e-3)
    # labels: completion tokens only, as without packing (an example's first token is never a completion token)
    labels = batch["labels"][0].tolist()
    expected = [t if m else -100 for r in rows for t, m in zip(r["input_ids"], r["completion_mask"])]
    assert labels == expected


def test_packing_changes_no_update(tmp_path):
    """One optimizer step over the same 3 examples, packed into one row or padded: the same weights."""
    base = [*SMOKE, "train.max_steps=1", "train.per_device_train_batch_size=3", "train.learning_rate=1e-3",
            "train.warmup_ratio=0"]  # fmt: skip
    weights = {}
    for packing in (False, True):
        cfg = compose([*base, f"train.packing={packing}"])
        rows = _rows(load_tokenizer(model_path(cfg.model)))
        out = tmp_path / str(packing)
        out.mkdir()
        metrics = train_inprocess(cfg, model_path(cfg.model), rows, out)
        assert metrics["packing"] is packing and metrics["global_step"] == 1
        weights[packing] = load_file(str(out / "checkpoint-1" / "model.safetensors"))
    worst = max((weights[True][k] - weights[False][k]).abs().max().item() for k in weights[True])
    assert worst < 2.5e-4, f"packed and padded updates differ by {worst}"  # a flipped Adam step would be 2e-3


def test_every_arm_of_every_table_trains_with_the_same_recipe():
    """Within each shipped table, every trained cell has the same train settings (packing, loss normalisation, Liger,
    the schedule...): the arms differ in their data only -- and, in the tiny tables, in the learning rate and epochs
    each arm was tuned to on the validation split (train=tiny_tuned; the tuning sweep varies exactly those)."""
    from cft_lab.report.tables import expand

    tables = sorted(p.stem for p in (EXPERIMENTS_DIR / "table").glob("*.yaml"))
    assert len(tables) == 28  # every shipped table (experiments/table): main's 26, tune_tiny, data_efficiency_tiny
    per_arm = {"learning_rate", "num_train_epochs"}
    for table in tables:
        cells = [c for c in expand(table, []) if spec(c.objective).trains]
        tuned = table == "tune_tiny" or {c.train.name for c in cells} == {"tiny_tuned"}
        recipes = {
            json.dumps({k: v for k, v in key_dict(c.train).items() if not (tuned and k in per_arm)}, sort_keys=True)
            for c in cells
        }
        assert len(recipes) == 1, f"{table}: arms train with {len(recipes)} different recipes"
    packed = expand("table2_tiny", ["train.packing=true"])
    assert {c.train.packing for c in packed if spec(c.objective).trains} == {True}  # an override reaches every arm


def test_liger_kernels_are_wired_and_refused_without_the_package(tmp_path):
    import importlib.util

    cfg = compose([*SMOKE, "train.use_liger_kernel=true"])
    assert _sft_config(cfg, tmp_path, 8).use_liger_kernel is True
    assert _sft_config(compose(SMOKE), tmp_path, 8).use_liger_kernel is False
    if importlib.util.find_spec("liger_kernel") is not None:
        pytest.skip("liger-kernel is installed here: the refusal cannot be seen")
    from cft_lab.pipeline.preflight import PreflightError, preflight

    with pytest.raises(PreflightError, match="pip install liger-kernel"):
        preflight(cfg)


def test_throughput_options_leave_existing_keys_alone_and_are_keyed_when_set():
    from cft_lab.pipeline.plan import plan_cell

    base = plan_cell(compose(SMOKE))
    for extra in ("train.packing=true", "train.use_liger_kernel=true", "train.loss_normalization=per_device"):
        plan = plan_cell(compose([*SMOKE, extra]))
        assert plan.key_of("data") == base.key_of("data") and plan.key_of("train") != base.key_of("train"), extra
    assert plan_cell(compose([*SMOKE, "train.packing=false"])).key == base.key
