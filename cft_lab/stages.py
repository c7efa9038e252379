"""The five stages of a cell, each reading and writing documented files in the run store (``cft_lab.store``).

data   -> store/data/<key>/records.jsonl, card.json
train  -> store/train/<key>/checkpoint-*/, pairs.json (pair and token counts per arm), metrics.json
select -> store/select/<key>/scores/<step>.jsonl (graded validation outputs, one file per checkpoint: resumable)
          and selection.json {"checkpoints": [{"step", "path", "accuracy"}], "selected", "last"}, with paths
          relative to the store root
infer  -> store/infer/<key>/<benchmark>.jsonl  {"id", "prompt", "output"} (generation only: a grader error
          never costs the generations)
grade  -> store/grade/<key>/<benchmark>.jsonl  {"id", "gold", "output", "correct"}; scores.json {benchmark: score}

Each stage returns early when its artefact is DONE, so reruns and tables that share a cell reuse it; it builds
under a per-artefact lock, so concurrent jobs that need the same artefact build it once.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cft_lab import benchmarks
from cft_lab.config import Config
from cft_lab.loggers import Logger
from cft_lab.metrics import score
from cft_lab.modeling import load_tokenizer, model_path
from cft_lab.prompts import MATH_STOP_STRINGS, render_eval_prompt
from cft_lab.store import Store, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)


def run_data(cfg: Config, store: Store, key: str) -> Path:
    from cft_lab.data import build_records, data_card

    with store.lock("data", key):
        if store.done("data", key):
            return store.path("data", key)
        out = store.begin("data", key)
        records = build_records(cfg)
        write_jsonl(out / "records.jsonl", records)
        card = data_card(records)
        write_json(out / "card.json", card)
        store.finish("data", key, {"records": len(records)})
    log.info("data %s: %s", key, card)
    return out


def run_train(cfg: Config, store: Store, key: str, data_dir: Path, logger: Logger) -> Path:
    from cft_lab.objectives import build_pairs, tokenize_pairs
    from cft_lab.training import train_inprocess, train_subprocess

    with store.lock("train", key):
        if store.done("train", key):
            return store.path("train", key)
        out = store.begin("train", key, fresh=False)  # keep checkpoints of an interrupted run: training resumes
        base = model_path(cfg.model)
        records = list(read_jsonl(data_dir / "records.jsonl"))
        pairs, pair_counts = build_pairs(cfg.objective, records)
        tokenizer = load_tokenizer(base, cfg.model.revision if cfg.model.source == "hub" else None,
                                   cfg.model.trust_remote_code)
        rows, tok_counts = tokenize_pairs(pairs, tokenizer, cfg.train.cutoff_len, cfg.train.truncation)
        counts = {"objective": cfg.objective.name, **pair_counts, **tok_counts}
        write_json(out / "pairs.json", counts)
        log.info("train %s: %s", key, counts)
        logger.summary({f"data/{k}": v for k, v in counts.items() if not isinstance(v, dict)})
        if cfg.train.launcher == "inprocess":
            metrics = train_inprocess(cfg, base, rows, out, logger)
        else:
            rows_path = out / "rows.jsonl"
            write_jsonl(rows_path, rows)
            metrics = train_subprocess(cfg, base, rows_path, out)
            for entry in metrics.get("log_history", []):
                logger.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=entry.get("step"))
        store.finish("train", key, {"global_step": metrics["global_step"]})
    return out


def generate_rows(cfg: Config, generator, bench_name: str, limit: int | None, desc: str = "") -> list[dict]:
    """Generate one answer per item of a benchmark: rows ``{id, prompt, output}`` in the benchmark's order."""
    items = benchmarks.get(bench_name).load()
    if limit is not None:
        items = items[:limit]
    prompts = [render_eval_prompt(cfg.model.eval_template, it["question"]) for it in items]
    outputs = generator.generate(prompts, MATH_STOP_STRINGS, desc=desc or bench_name)
    return [{"id": it["id"], "prompt": p, "output": o} for it, p, o in zip(items, prompts, outputs)]


def grade_rows(bench_name: str, rows: list[dict]) -> list[dict]:
    """Add the gold answer and the verdict to generated rows: ``{id, gold, output, correct}``."""
    bench = benchmarks.get(bench_name)
    gold = {it["id"]: it["gold"] for it in bench.load()}
    return [{"id": r["id"], "gold": gold[r["id"]], "output": r["output"], "correct": bench.grade(r["output"], gold[r["id"]])}
            for r in rows]


def run_select(cfg: Config, store: Store, key: str, train_dir: Path, logger: Logger) -> str:
    """Score every checkpoint on the validation benchmark; keep the strictly best (the first on ties, as the
    paper's script did, PROTOCOL §3.5). Each checkpoint's scores are kept, so an interrupted selection resumes."""
    from cft_lab.generation import make_generator
    from cft_lab.training import checkpoints

    with store.lock("select", key):
        out = store.path("select", key)
        if not store.done("select", key):
            out = store.begin("select", key, fresh=False)
            sel = cfg.eval.select
            scored = []
            for ckpt in checkpoints(train_dir):
                step = int(ckpt.name.split("-")[1])
                acc = None
                if sel.strategy != "last":
                    target = out / "scores" / f"{step}.jsonl"
                    if not target.is_file():
                        generator = make_generator(str(ckpt), cfg.model, cfg.inference)  # one load per checkpoint
                        rows = generate_rows(cfg, generator, sel.benchmark, sel.limit, desc=f"select {ckpt.name}")
                        write_jsonl(target, grade_rows(sel.benchmark, rows))
                    graded = list(read_jsonl(target))
                    acc = score(sum(r["correct"] for r in graded), len(graded))["accuracy"]
                    logger.log({"select/step": step, f"select/{sel.benchmark}": acc})
                scored.append({"step": step, "path": store.relative(ckpt), "accuracy": acc})
            if not scored:
                raise RuntimeError(f"train artefact {train_dir} holds no complete checkpoint")
            best = scored[-1] if sel.strategy == "last" else max(scored, key=lambda s: (s["accuracy"], -s["step"]))
            write_json(out / "selection.json", {"benchmark": sel.benchmark, "strategy": sel.strategy,
                                                "checkpoints": scored, "selected": best, "last": scored[-1]})
            store.finish("select", key, {"selected_step": best["step"]})
    selection = json.loads((out / "selection.json").read_text())
    return str(store.absolute(selection["selected"]["path"]))


def run_infer(cfg: Config, store: Store, key: str, model_dir: str) -> Path:
    from cft_lab.generation import make_generator

    with store.lock("infer", key):
        if store.done("infer", key):
            return store.path("infer", key)
        out = store.begin("infer", key, fresh=False)
        todo = [b for b in cfg.eval.benchmarks if not (out / f"{b}.jsonl").is_file()]  # resume: keep finished ones
        revision = cfg.model.revision if model_dir == cfg.model.path else None  # a hub base row: pinned revision
        generator = make_generator(model_dir, cfg.model, cfg.inference, revision) if todo else None
        for name in todo:
            t0 = time.time()
            rows = generate_rows(cfg, generator, name, cfg.eval.limit, desc=f"infer {name}")
            write_jsonl(out / f"{name}.jsonl", rows)
            log.info("infer %s %s: %d items in %.1f s", key, name, len(rows), time.time() - t0)
        store.finish("infer", key)
    return out


def run_grade(cfg: Config, store: Store, key: str, infer_dir: Path) -> dict:
    with store.lock("grade", key):
        out = store.path("grade", key)
        if not store.done("grade", key):
            out = store.begin("grade", key)
            scores = {}
            for name in cfg.eval.benchmarks:
                rows = grade_rows(name, list(read_jsonl(infer_dir / f"{name}.jsonl")))
                write_jsonl(out / f"{name}.jsonl", rows)
                scores[name] = {"label": benchmarks.label(name), **score(sum(r["correct"] for r in rows), len(rows))}
            write_json(out / "scores.json", scores)
            store.finish("grade", key)
    return json.loads((out / "scores.json").read_text())
