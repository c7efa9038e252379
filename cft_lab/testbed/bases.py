"""Tiny Qwen2 base models, pre-trained by the project itself on a web-like mixture of testbed texts.

They stand in for the paper's three 7B bases (docs/protocol.md §2): ``tiny_math`` (≈Qwen2.5-Math-7B: solution-heavy),
``tiny_general`` (≈Qwen2.5-7B: the same size and tokens, a less math-specialised mixture) and ``tiny_small``
(≈DeepSeek-Math-7B: smaller, more epochs). Budgets were set so that every base solves part of the validation set, as
the paper's bases do (docs/testbed.md §1.1). Pre-training text is the mixture of
:mod:`cft_lab.testbed.corpus` on questions of the ``pretrain`` split (disjoint from train/val/test questions): noisy
solutions in the evaluation prompt and the training chat formats (so Base scores well above zero and fine-tuning has
noise to remove), reviews of noisy solutions worded unlike the teacher's critiques, restatements, answer checks and
explanations (so neither fine-tuning format is new, as for a web-pre-trained base; docs/testbed.md §1). Documents are
packed into blocks of ``block_size`` tokens (GPT-style pre-training), with the LM loss on every token.

``python -m cft_lab.testbed.bases`` (``make bases``) rebuilds the tokenizer and the three models deterministically
into ``cft_lab/assets/testbed/models/<name>/``, each with a ``manifest.json`` that holds its recipe, the recipe's
digest, the mixture's document counts, the build time and the sha256 of every file; ``tests/test_bases.py`` checks the
shipped files against both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from cft_lab.paths import TESTBED_ASSETS
from cft_lab.pipeline.store import digest
from cft_lab.prompts import ENDOFTEXT
from cft_lab.testbed import corpus

log = logging.getLogger(__name__)

MODELS_DIR = TESTBED_ASSETS / "models"
TOKENIZER_CORPUS = 3000  # documents used to train the BPE (of the math mixture)
#: Document shares (cft_lab.testbed.corpus.KINDS): a math base reads mostly solutions, a general one more of the rest.
MATH_MIXTURE = (("solution", 0.5), ("review", 0.2), ("restatement", 0.1), ("answer_check", 0.1), ("explanation", 0.1))
GENERAL_MIXTURE = (
    ("solution", 0.3),
    ("review", 0.2),
    ("restatement", 0.15),
    ("answer_check", 0.15),
    ("explanation", 0.2),
)


@dataclass(frozen=True)
class BaseRecipe:
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    documents: int  # pre-training documents (each on its own pretrain-split question)
    epochs: int
    mixture: tuple[tuple[str, float], ...] = MATH_MIXTURE
    learning_rate: float = 2e-3
    batch_size: int = 32  # blocks per optimizer step
    block_size: int = 256  # tokens per packed block: the longest document fits; 512 cost 2.5x the time per token
    seed: int = 0
    vocab_size: int = 640
    max_position_embeddings: int = 1024


RECIPES = {
    "tiny_math": BaseRecipe(128, 4, 4, 2, 384, documents=32000, epochs=2),
    "tiny_general": BaseRecipe(128, 4, 4, 2, 384, documents=32000, epochs=2, mixture=GENERAL_MIXTURE),
    "tiny_small": BaseRecipe(96, 3, 4, 2, 256, documents=32000, epochs=3),
}


def recipe_digest(name: str) -> str:
    return digest(
        {
            "name": name,
            "recipe": asdict(RECIPES[name]),
            "error_rates": corpus.ERROR_RATES,
            "tokenizer_corpus": TOKENIZER_CORPUS,
            "format": "pretrain-v2-mixture",
        }
    )


def pretrain_texts(n: int, seed: int, mixture: tuple[tuple[str, float], ...] = MATH_MIXTURE) -> list[str]:
    """The first ``n`` pre-training documents of a mixture (:func:`cft_lab.testbed.corpus.documents`), as text."""
    return [d.text for d in corpus.documents(n, mixture, seed=seed)]


def build_tokenizer(out_dir: Path):
    from cft_lab.testbed.tokenizer import save_pretrained, train_tokenizer

    texts = pretrain_texts(TOKENIZER_CORPUS, seed=0)
    tok = train_tokenizer(texts, vocab_size=RECIPES["tiny_math"].vocab_size)
    return save_pretrained(tok, out_dir)


def pack(token_lists: list[list[int]], block_size: int) -> list[list[int]]:
    """Concatenate documents (each already ends with ``<|endoftext|>``) and cut them into full blocks; the tail that
    does not fill a block is dropped.

    >>> pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4)
    [[1, 2, 3, 4], [5, 6, 7, 8]]
    """
    flat = [t for ids in token_lists for t in ids]
    return [flat[i : i + block_size] for i in range(0, len(flat) - block_size + 1, block_size)]


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
    Returns its directory. The manifest's timings are measured, not part of what is checked."""
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
    t_start = time.time()
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
    docs = corpus.documents(r.documents, r.mixture, seed=r.seed)
    ids = [tokenizer(d.text, add_special_tokens=False)["input_ids"] for d in docs]
    blocks = pack(ids, r.block_size)
    ds = Dataset.from_dict({"input_ids": blocks})
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
    train_s = time.time() - t0
    log.info("%s: pre-trained in %.0f s", name, train_s)
    shutil.rmtree(work / "trainer", ignore_errors=True)
    model.generation_config.eos_token_id = [config.eos_token_id, tokenizer.convert_tokens_to_ids(ENDOFTEXT)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(work))
    params = sum(p.numel() for p in model.parameters())
    tokens = len(blocks) * r.block_size * r.epochs
    manifest = {
        "name": name,
        "recipe": asdict(r),
        "recipe_digest": recipe_digest(name),
        "files": file_hashes(work),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "parameters": params,
        # what the build read and cost (the time is this machine's, not part of the recipe)
        "documents_by_kind": dict(sorted(Counter(d.kind for d in docs).items())),
        "document_tokens": sum(len(x) for x in ids),
        "blocks": len(blocks),
        "tokens_trained": tokens,
        "flops_estimate": 6 * params * tokens,
        "build_s": round(time.time() - t_start, 1),
        "train_s": round(train_s, 1),
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
