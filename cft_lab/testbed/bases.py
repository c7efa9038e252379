"""Tiny Qwen2 base models, pre-trained by the project itself on the testbed's noisy solutions.

They stand in for the paper's three 7B bases (docs/protocol.md §2): ``tiny_math`` (≈Qwen2.5-Math-7B, the most
pre-training),
``tiny_general`` (≈Qwen2.5-7B, same size, half the budget) and ``tiny_small`` (≈DeepSeek-Math-7B, smaller).
Pre-training text is the ``pretrain`` split of the testbed (disjoint from train/val/test questions), each question
followed by a noisy solution (``PRETRAIN_ERROR_RATE`` wrong), rendered in the evaluation prompt format and, for a
share of examples, in the training chat format, with the LM loss on every token: the bases can answer the eval
prompt (Base scores well above zero) and imitate noise (fine-tuning has room to help).

``python -m cft_lab.testbed.bases`` (``make bases``) rebuilds the tokenizer and the three models deterministically
into ``cft_lab/assets/testbed/models/<name>/``, each with a ``manifest.json`` that holds its recipe, the recipe's
digest and the sha256 of every file; ``tests/test_bases.py`` checks the shipped files against both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cft_lab.paths import TESTBED_ASSETS
from cft_lab.pipeline.store import digest
from cft_lab.prompts import ENDOFTEXT, render_eval_prompt, render_prompt
from cft_lab.testbed import noisy, problems

log = logging.getLogger(__name__)

MODELS_DIR = TESTBED_ASSETS / "models"
PRETRAIN_ERROR_RATE = 0.3
TOKENIZER_CORPUS = 3000  # problems used to train the BPE


@dataclass(frozen=True)
class BaseRecipe:
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    pretrain_examples: int
    epochs: int
    learning_rate: float = 2e-3
    batch_size: int = 32
    seed: int = 0
    vocab_size: int = 640
    max_position_embeddings: int = 1024


RECIPES = {
    "tiny_math": BaseRecipe(128, 4, 4, 2, 384, pretrain_examples=16000, epochs=2),
    "tiny_general": BaseRecipe(128, 4, 4, 2, 384, pretrain_examples=16000, epochs=1),
    "tiny_small": BaseRecipe(96, 3, 4, 2, 256, pretrain_examples=12000, epochs=2),
}


def recipe_digest(name: str) -> str:
    return digest(
        {
            "name": name,
            "recipe": asdict(RECIPES[name]),
            "error_rate": PRETRAIN_ERROR_RATE,
            "tokenizer_corpus": TOKENIZER_CORPUS,
            "format": "pretrain-v1",
        }
    )


def pretrain_texts(n: int, seed: int) -> list[str]:
    """Question + noisy solution documents in the two prompt formats the fine-tuned models meet."""
    rng = random.Random(f"pretrain-format:{seed}")
    texts = []
    for p in problems.generate("pretrain", n, seed=0, min_steps=2, max_steps=4):
        y = noisy.noisy_solve(p, seed=seed, error_rate=PRETRAIN_ERROR_RATE).text
        if rng.random() < 0.7:
            prompt = render_eval_prompt("qwen25-math-cot", p.question)
        else:
            prompt = render_prompt("chatml_v1", p.question, system="You are a helpful assistant.")
        texts.append(prompt + y + "<|im_end|>\n" + ENDOFTEXT)
    return texts


def build_tokenizer(out_dir: Path):
    from cft_lab.testbed.tokenizer import save_pretrained, train_tokenizer

    texts = pretrain_texts(TOKENIZER_CORPUS, seed=0)
    tok = train_tokenizer(texts, vocab_size=RECIPES["tiny_math"].vocab_size)
    return save_pretrained(tok, out_dir)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_hashes(model_dir: Path) -> dict[str, str]:
    return {p.name: _sha256(p) for p in sorted(model_dir.iterdir()) if p.is_file() and p.name != "manifest.json"}


#: torch intra-op threads while pre-training: the order of float reductions depends on how work is split across
#: threads, so the shipped bases are only reproduced bit for bit with the count they were built with (2), whatever
#: OMP_NUM_THREADS or the machine's core count says.
BUILD_THREADS = 2


def build_base(name: str, out_root: Path = MODELS_DIR) -> Path:
    """Build and pre-train one base, deterministically, on the CPU, with :data:`BUILD_THREADS` torch threads.
    Returns its directory."""
    import torch
    from datasets import Dataset
    from transformers import (
        DataCollatorForLanguageModeling,
        Qwen2Config,
        Qwen2ForCausalLM,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    r = RECIPES[name]
    out = out_root / name
    work = out_root / f".{name}.build"
    shutil.rmtree(work, ignore_errors=True)
    tokenizer = build_tokenizer(work)
    set_seed(r.seed)
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=r.hidden_size,
        num_hidden_layers=r.num_layers,
        num_attention_heads=r.num_heads,
        num_key_value_heads=r.num_kv_heads,
        intermediate_size=r.intermediate_size,
        max_position_embeddings=r.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    log.info("%s: %.2fM parameters", name, sum(p.numel() for p in model.parameters()) / 1e6)
    texts = pretrain_texts(r.pretrain_examples, seed=r.seed)
    ds = Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], add_special_tokens=False), batched=True, remove_columns=["text"]
    )
    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=r.batch_size,
        num_train_epochs=r.epochs,
        learning_rate=r.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        logging_steps=50,
        save_strategy="no",
        report_to="none",
        seed=r.seed,
        data_seed=r.seed,
        disable_tqdm=False,
        dataloader_num_workers=0,
        use_cpu=True,
    )
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    t0 = time.time()
    try:
        Trainer(model=model, args=args, train_dataset=ds, data_collator=collator).train()
    finally:
        torch.set_num_threads(threads)
    log.info("%s: pre-trained in %.0f s", name, time.time() - t0)
    shutil.rmtree(work / "trainer", ignore_errors=True)
    model.generation_config.eos_token_id = [config.eos_token_id, tokenizer.convert_tokens_to_ids(ENDOFTEXT)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(work))
    manifest = {
        "name": name,
        "recipe": asdict(r),
        "recipe_digest": recipe_digest(name),
        "files": file_hashes(work),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(RECIPES), help="bases to build (default: all)")
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in args.names:
        if name not in RECIPES:
            parser.error(f"unknown base {name!r}; known: {', '.join(RECIPES)}")
        build_base(name, args.out)


if __name__ == "__main__":
    main()
