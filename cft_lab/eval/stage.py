"""The five stages of a cell, each reading and writing documented files in the run store (``cft_lab.pipeline.store``).

data   -> store/data/<key>/records.jsonl, card.json
train  -> store/train/<key>/checkpoint-*/, pairs.json (pair and token counts per arm), metrics.json
select -> store/select/<key>/generations/<step>/<benchmark>.jsonl and scores/<step>.jsonl (one file per
          checkpoint: resumable), selection.json {"checkpoints": [{"step", "path", "accuracy"}], "selected",
          "last", "validation_test_overlap"}, with paths relative to the store root
infer  -> store/infer/<key>/<benchmark>.jsonl  {"id", "index", "prompt", "seed", "outputs": [{"text", "tokens",
          "finish_reason"}]} (generation only, resumable item by item: a grader error never costs the
          generations), generator.json (backend, versions, engine and sampling settings), critique.jsonl
grade  -> store/grade/<key>/<benchmark>.jsonl  per item: prompt, gold(s), every sample's output, extracted answer,
          verdict and status per grading mode, quirks; scores.json {benchmark: aggregate (cft_lab.eval.engine)};
          eval.json (versions, git sha, template hashes, sampling, grading settings); critique.json

Each stage returns early when its artefact is DONE, so reruns and tables that share a cell reuse it; it builds
under a per-artefact lock, so concurrent jobs that need the same artefact build it once.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cft_lab.eval import benchmarks

from cft_lab.eval import engine as evaluation
from cft_lab.config import Config, as_dict
from cft_lab.report.tracking import Logger
from cft_lab.eval.metrics import score
from cft_lab.train.modeling import load_tokenizer, model_path
from cft_lab.pipeline.store import Store, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)


def run_data(cfg: Config, store: Store, key: str) -> Path:
    from cft_lab.data.stage import build_records, data_card, describe_records
    from cft_lab.data.records import write_records

    with store.lock("data", key):
        if store.done("data", key):
            return store.path("data", key)
        out = store.begin("data", key)
        records, info = build_records(cfg, cache_dir=store.root)
        write_records(out / "records.jsonl", records)
        tokenizer = load_tokenizer(model_path(cfg.model), cfg.model.revision if cfg.model.source == "hub" else None,
                                   cfg.model.trust_remote_code)
        card = data_card(records, info, tokenizer=tokenizer, cutoff_len=cfg.train.cutoff_len,
                         truncation=cfg.train.truncation)
        from cft_lab.data.card import write_card

        write_card(card, out)
        from cft_lab.data.stage import check_teacher

        check_teacher(cfg, info.get("teacher") or {})  # after the files: a refused dataset can still be inspected
        store.finish("data", key, {"records": len(records)})
    log.info("data %s: %s", key, describe_records(records))
    return out


def run_train(cfg: Config, store: Store, key: str, data_dir: Path, logger: Logger) -> Path:
    from cft_lab.train.objectives import build_pairs, tokenize_pairs
    from cft_lab.train.trainer import train_inprocess, train_subprocess

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


def run_select(cfg: Config, store: Store, key: str, train_dir: Path, logger: Logger) -> str:
    """Score every checkpoint on the validation benchmark with one engine load per checkpoint; keep the strictly
    best (the first on ties, as the paper's script did, PROTOCOL §3.5). Each checkpoint's graded outputs are kept,
    so an interrupted selection resumes; ``selection.json`` reports the selected and the last checkpoint side by
    side, and how many validation questions also appear in each test benchmark."""
    from cft_lab.eval.generation import make_generator
    from cft_lab.train.trainer import checkpoints

    with store.lock("select", key):
        out = store.path("select", key)
        if not store.done("select", key):
            out = store.begin("select", key, fresh=False)
            sel = cfg.eval.select
            template = benchmarks.template_for(sel.benchmark, cfg.model.eval_template)
            modes = list(cfg.eval.modes)
            scored = []
            for ckpt in checkpoints(train_dir):
                step = int(ckpt.name.split("-")[1])
                acc = None
                if sel.strategy != "last":
                    target = out / "scores" / f"{step}.jsonl"
                    if not target.is_file():
                        gen_dir = out / "generations" / str(step)
                        gen_dir.mkdir(parents=True, exist_ok=True)
                        generator = make_generator(str(ckpt), cfg.model, cfg.inference)  # one load per checkpoint
                        try:
                            path = evaluation.generate_benchmark(generator, sel.benchmark, template, gen_dir,
                                                                 limit=sel.limit, seed=cfg.inference.seed,
                                                                 n=cfg.inference.n,
                                                                 desc=f"select {ckpt.name}")
                        finally:
                            generator.close()
                        graded = evaluation.grade_benchmark(sel.benchmark, list(read_jsonl(path)), modes,
                                                            timeout=cfg.eval.grade_timeout,
                                                            workers=cfg.eval.grade_workers)
                        write_jsonl(target, graded)
                    graded = list(read_jsonl(target))
                    acc = score(sum(bool(g["correct"]) for g in graded), len(graded))["accuracy"]
                    logger.log({"select/step": step, f"select/{sel.benchmark}": acc})
                scored.append({"step": step, "path": store.relative(ckpt), "accuracy": acc})
            if not scored:
                raise RuntimeError(f"train artefact {train_dir} holds no complete checkpoint")
            best = scored[-1] if sel.strategy == "last" else max(scored, key=lambda s: (s["accuracy"], -s["step"]))
            overlap = {b: benchmarks.overlap(sel.benchmark, b) for b in cfg.eval.benchmarks}
            write_json(out / "selection.json", {
                "benchmark": sel.benchmark, "strategy": sel.strategy, "mode": modes[0], "checkpoints": scored,
                "selected": best, "last": scored[-1], "validation_test_overlap": overlap})
            if any(overlap.values()):
                log.warning("selection set %s shares questions with test sets: %s (the paper's MATH-500 lies inside "
                            "MATH; eval.select.benchmark=math_val500 is disjoint)", sel.benchmark,
                            {b: n for b, n in overlap.items() if n})
            store.finish("select", key, {"selected_step": best["step"]})
    selection = json.loads((out / "selection.json").read_text())
    return str(store.absolute(selection["selected"]["path"]))


def run_infer(cfg: Config, store: Store, key: str, model_dir: str) -> Path:
    """Generate every benchmark's outputs (resumable item by item) and, when configured, the critique-ability
    probe's critiques, with one engine load for all of them."""
    from cft_lab.eval.generation import make_generator

    with store.lock("infer", key):
        if store.done("infer", key):
            return store.path("infer", key)
        out = store.begin("infer", key, fresh=False)
        todo = [b for b in cfg.eval.benchmarks if not (out / f"{b}.jsonl").is_file()]  # resume: keep finished ones
        critique = cfg.eval.critique
        need_critique = critique.enabled and not (out / "critique.jsonl").is_file()
        revision = cfg.model.revision if model_dir == cfg.model.path else None  # a hub base row: pinned revision
        generator = make_generator(model_dir, cfg.model, cfg.inference, revision) if (todo or need_critique) else None
        try:
            if generator is not None:
                write_json(out / "generator.json", generator.describe())
            for name in todo:
                t0 = time.time()
                template = benchmarks.template_for(name, cfg.model.eval_template)
                evaluation.generate_benchmark(generator, name, template, out, limit=cfg.eval.limit,
                                              seed=cfg.inference.seed, n=cfg.inference.n, desc=f"infer {name}")
                log.info("infer %s %s: done in %.1f s", key, name, time.time() - t0)
            if need_critique:
                from cft_lab.eval import critique_probe as critique_eval

                critique_eval.generate(cfg, generator, out)
        finally:
            if generator is not None:
                generator.close()
        store.finish("infer", key)
    return out


def run_grade(cfg: Config, store: Store, key: str, infer_dir: Path) -> dict:
    """Grade every benchmark in every mode; write per-sample rows, ``scores.json`` and ``eval.json``."""
    with store.lock("grade", key):
        out = store.path("grade", key)
        if not store.done("grade", key):
            out = store.begin("grade", key, fresh=False)  # a finished benchmark's rows are kept on a rerun
            modes = list(cfg.eval.modes)
            scores = {}
            for name in cfg.eval.benchmarks:
                target = out / f"{name}.jsonl"
                if not target.is_file():
                    graded = evaluation.grade_benchmark(name, list(read_jsonl(infer_dir / f"{name}.jsonl")), modes,
                                                        timeout=cfg.eval.grade_timeout,
                                                        workers=cfg.eval.grade_workers)
                    write_jsonl(target, graded)
                graded = list(read_jsonl(target))
                scores[name] = evaluation.aggregate(name, graded, modes, n_boot=cfg.eval.n_boot)
                s = scores[name]
                log.info("grade %s: %.1f%% [%.1f, %.1f] (%s; %s); %d disagreements, quirks %s", name,
                         s["accuracy"], s["ci_low"], s["ci_high"], s["mode"],
                         ", ".join(f"{m} {a:.1f}" for m, a in s["modes"].items()), s["disagreements"], s["quirks"])
            if cfg.eval.critique.enabled:
                from cft_lab.eval import critique_probe as critique_eval

                write_json(out / "critique.json", critique_eval.score(infer_dir))
            gen_info = infer_dir / "generator.json"
            write_json(out / "eval.json", evaluation.provenance(
                list(cfg.eval.benchmarks), cfg.model.eval_template, as_dict(cfg.inference),
                json.loads(gen_info.read_text()) if gen_info.is_file() else None, modes, cfg.eval.grade_timeout))
            write_json(out / "scores.json", scores)
            store.finish("grade", key)
    return json.loads((out / "scores.json").read_text())
