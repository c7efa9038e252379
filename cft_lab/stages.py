"""The five stages of a cell, each reading and writing documented files in the run store (``cft_lab.store``).

data   -> store/data/<key>/records.jsonl, card.json
train  -> store/train/<key>/checkpoint-*/, pairs.json (pair and token counts per arm), metrics.json
select -> store/select/<key>/selection.json  {"checkpoints": [{"step", "path", "accuracy"}], "selected", "last"}
infer  -> store/infer/<key>/<benchmark>.jsonl  {"id", "prompt", "output"}
grade  -> store/grade/<key>/<benchmark>.jsonl  {"id", "gold", "output", "correct"}; scores.json {benchmark: score}

Each stage returns early when its artefact is DONE, so reruns and tables that share a cell reuse it.
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

    out = store.path("data", key)
    if store.done("data", key):
        return out
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

    if store.done("train", key):
        return store.path("train", key)
    out = store.begin("train", key, fresh=False)  # keep checkpoints of an interrupted run: training resumes
    base = model_path(cfg.model)
    records = list(read_jsonl(data_dir / "records.jsonl"))
    pairs, pair_counts = build_pairs(cfg.objective, records)
    tokenizer = load_tokenizer(base, cfg.model.revision if cfg.model.source == "hub" else None)
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


def evaluate(cfg: Config, generator, bench_name: str, limit: int | None, desc: str = "") -> list[dict]:
    """Generate answers for one benchmark with a loaded generator and grade them:
    rows ``{id, gold, prompt, output, correct}``."""
    bench = benchmarks.get(bench_name)
    items = bench.load()
    if limit is not None:
        items = items[:limit]
    prompts = [render_eval_prompt(cfg.model.eval_template, it["question"]) for it in items]
    outputs = generator.generate(prompts, MATH_STOP_STRINGS, desc=desc or bench_name)
    return [{"id": it["id"], "gold": it["gold"], "prompt": p, "output": o, "correct": bench.grade(o, it["gold"])}
            for it, p, o in zip(items, prompts, outputs)]


def run_select(cfg: Config, store: Store, key: str, train_dir: Path, logger: Logger) -> str:
    """Score every checkpoint on the validation benchmark; keep the strictly best (first on ties, as the paper)."""
    from cft_lab.generation import make_generator
    from cft_lab.training import checkpoints

    out = store.path("select", key)
    if not store.done("select", key):
        out = store.begin("select", key)
        sel = cfg.eval.select
        scored = []
        for ckpt in checkpoints(train_dir):
            step = int(ckpt.name.split("-")[1])
            rows = [] if sel.strategy == "last" else evaluate(
                cfg, make_generator(str(ckpt), cfg.model, cfg.inference), sel.benchmark, sel.limit,
                desc=f"select {ckpt.name}")  # one model load per checkpoint
            acc = score(sum(r["correct"] for r in rows), len(rows))["accuracy"] if rows else None
            scored.append({"step": step, "path": str(ckpt), "accuracy": acc})
            if acc is not None:
                logger.log({f"select/{sel.benchmark}": acc}, step=step)
        if not scored:
            raise RuntimeError(f"train artefact {train_dir} holds no checkpoint")
        best = scored[-1] if sel.strategy == "last" else max(scored, key=lambda s: (s["accuracy"], -s["step"]))
        write_json(out / "selection.json", {"benchmark": sel.benchmark, "strategy": sel.strategy,
                                            "checkpoints": scored, "selected": best, "last": scored[-1]})
        store.finish("select", key, {"selected_step": best["step"]})
    selection = json.loads((out / "selection.json").read_text())
    return selection["selected"]["path"]


def run_infer(cfg: Config, store: Store, key: str, model_dir: str) -> Path:
    from cft_lab.generation import make_generator

    if store.done("infer", key):
        return store.path("infer", key)
    out = store.begin("infer", key, fresh=False)
    todo = [name for name in cfg.eval.benchmarks if not (out / f"{name}.jsonl").is_file()]  # resume: keep finished
    generator = make_generator(model_dir, cfg.model, cfg.inference) if todo else None  # one load for every benchmark
    for name in todo:
        target = out / f"{name}.jsonl"
        t0 = time.time()
        rows = evaluate(cfg, generator, name, cfg.eval.limit, desc=f"infer {name}")
        write_jsonl(target, [{k: r[k] for k in ("id", "prompt", "output")} for r in rows])
        log.info("infer %s %s: %d items in %.1f s", key, name, len(rows), time.time() - t0)
    store.finish("infer", key)
    return out


def run_grade(cfg: Config, store: Store, key: str, infer_dir: Path) -> dict:
    out = store.path("grade", key)
    if store.done("grade", key):
        return json.loads((out / "scores.json").read_text())
    out = store.begin("grade", key)
    scores = {}
    for name in cfg.eval.benchmarks:
        bench = benchmarks.get(name)
        items = {it["id"]: it for it in bench.load()}
        rows = []
        for r in read_jsonl(infer_dir / f"{name}.jsonl"):
            gold = items[r["id"]]["gold"]
            rows.append({"id": r["id"], "gold": gold, "output": r["output"], "correct": bench.grade(r["output"], gold)})
        write_jsonl(out / f"{name}.jsonl", rows)
        scores[name] = {"label": bench.label, **score(sum(r["correct"] for r in rows), len(rows))}
    write_json(out / "scores.json", scores)
    store.finish("grade", key)
    return scores
