"""The evaluation stages of a cell: **select** (score every checkpoint on a validation set, keep the best), **infer**
(generate every benchmark's outputs) and **grade** (grade them in every mode and aggregate). Layout of their
artefacts: ``cft_lab.pipeline.store``. The engine they share is ``cft_lab.eval.engine``.

Each stage claims its artefact through ``Store.claim`` (a per-artefact lock; a DONE artefact is only read), keeps its
partial work on an interruption (selection per checkpoint, generation per item, grading per benchmark) and returns a
small typed result.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from cft_lab.config import Config, as_dict, selection_inference
from cft_lab.eval import benchmarks, engine
from cft_lab.eval.metrics import score
from cft_lab.options import SelectStrategy
from cft_lab.pipeline.store import Store, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectResult:
    """The checkpoint that goes on to the test benchmarks, and the selection report (``selection.json``)."""

    path: Path
    model_dir: Path  # the selected checkpoint
    selection: dict

    @classmethod
    def read(cls, store: Store, path: Path) -> SelectResult:
        selection = json.loads((path / "selection.json").read_text(encoding="utf-8"))
        return cls(path=path, model_dir=store.absolute(selection["selected"]["path"]), selection=selection)

    def summary(self) -> dict:
        """The part of the selection a cell result and W&B keep."""
        return {k: self.selection[k] for k in ("benchmark", "selected", "last", "validation_test_overlap")}


@dataclass(frozen=True)
class GradeResult:
    """Every benchmark's scores (``scores.json``) and, when the probe ran, the critique-ability scores."""

    path: Path
    scores: dict
    critique: Optional[dict] = None

    @classmethod
    def read(cls, path: Path) -> GradeResult:
        critique = path / "critique.json"
        return cls(
            path=path,
            scores=json.loads((path / "scores.json").read_text(encoding="utf-8")),
            critique=json.loads(critique.read_text(encoding="utf-8")) if critique.is_file() else None,
        )


def run_select(cfg: Config, store: Store, key: str, train_dir: Path) -> SelectResult:
    """Score every checkpoint on the validation benchmark with one engine load per checkpoint; keep the strictly
    best (the first on ties, as the paper's script did, docs/protocol.md §3.5). Each checkpoint's graded outputs are
    kept, so an interrupted selection resumes; ``selection.json`` reports the selected and the last checkpoint side by
    side, and how many validation questions also appear in each test benchmark. The cell logs the curve from
    ``selection.json`` (also when this artefact was found in the store)."""
    from cft_lab.eval.generation import make_generator
    from cft_lab.train.trainer import checkpoints

    decoding = selection_inference(cfg.inference)  # greedy direct, whatever the test-time mode
    with store.claim("select", key, resume=True) as art:
        if not art.done:
            out = art.path
            sel = cfg.eval.select
            template = benchmarks.template_for(sel.benchmark, cfg.model.eval_template)
            modes = list(cfg.eval.modes)
            scored: list[dict[str, Any]] = []
            for ckpt in checkpoints(train_dir):
                step = int(ckpt.name.split("-")[1])
                acc = None
                if sel.strategy != SelectStrategy.last:
                    target = out / "scores" / f"{step}.jsonl"
                    if not target.is_file():
                        gen_dir = out / "generations" / str(step)
                        gen_dir.mkdir(parents=True, exist_ok=True)
                        generator = make_generator(str(ckpt), cfg.model, decoding)  # one load per checkpoint
                        try:
                            path = engine.generate_benchmark(
                                generator,
                                sel.benchmark,
                                template,
                                gen_dir,
                                limit=sel.limit,
                                seed=cfg.inference.seed,
                                n=1,
                                desc=f"select {ckpt.name}",
                                prompt_format=str(cfg.model.prompt_format),
                            )
                        finally:
                            generator.close()
                        graded = engine.grade_benchmark(
                            sel.benchmark,
                            list(read_jsonl(path)),
                            modes,
                            timeout=cfg.eval.grade_timeout,
                            workers=cfg.eval.grade_workers,
                        )
                        write_jsonl(target, graded)
                    graded = list(read_jsonl(target))
                    acc = score(sum(bool(g["correct"]) for g in graded), len(graded))["accuracy"]
                scored.append({"step": step, "path": store.relative(ckpt), "accuracy": acc})
            if not scored:
                raise RuntimeError(f"train artefact {train_dir} holds no complete checkpoint")
            last = sel.strategy == SelectStrategy.last
            best = scored[-1] if last else max(scored, key=lambda s: (s["accuracy"], -s["step"]))
            overlap = {b: benchmarks.overlap(sel.benchmark, b) for b in cfg.eval.benchmarks}
            write_json(
                out / "selection.json",
                {
                    "benchmark": sel.benchmark,
                    "strategy": str(sel.strategy),
                    "mode": str(modes[0]),
                    "checkpoints": scored,
                    "selected": best,
                    "last": scored[-1],
                    "validation_test_overlap": overlap,
                },
            )
            if any(overlap.values()):
                log.warning(
                    "selection set %s shares questions with test sets: %s (the paper's MATH-500 lies inside "
                    "MATH; eval.select.benchmark=math_val500 is disjoint)",
                    sel.benchmark,
                    {b: n for b, n in overlap.items() if n},
                )
            art.meta["selected_step"] = best["step"]
            art.meta.update(_devices(cfg))
    return SelectResult.read(store, art.path)


def run_infer(cfg: Config, store: Store, key: str, model_dir: str) -> Path:
    """Generate every benchmark's outputs (resumable item by item) and, when configured, the critique-ability
    probe's critiques, with one engine load for all of them."""
    from cft_lab.eval.generation import make_generator
    from cft_lab.train.modeling import model_path

    with store.claim("infer", key, resume=True) as art:
        if not art.done:
            out = art.path
            todo = [b for b in cfg.eval.benchmarks if not (out / f"{b}.jsonl").is_file()]  # resume: keep finished
            need_critique = cfg.eval.critique.enabled and not (out / "critique.jsonl").is_file()
            # a hub base row is loaded at its pinned revision; a trained checkpoint is a local folder
            revision = cfg.model.hub_revision() if model_dir == model_path(cfg.model) else None
            generator = (
                make_generator(model_dir, cfg.model, cfg.inference, revision, cache_dir=store.root)
                if (todo or need_critique)
                else None
            )
            try:
                if generator is not None:
                    write_json(out / "generator.json", _describe(generator, cfg))
                for name in todo:
                    t0 = time.time()
                    template = benchmarks.template_for(name, cfg.model.eval_template)
                    engine.generate_benchmark(
                        generator,
                        name,
                        template,
                        out,
                        limit=cfg.eval.limit,
                        seed=cfg.inference.seed,
                        n=cfg.inference.n,
                        desc=f"infer {name}",
                        inference=cfg.inference,
                        prompt_format=str(cfg.model.prompt_format),
                    )
                    log.info("infer %s %s: done in %.1f s", key, name, time.time() - t0)
                if need_critique:
                    from cft_lab.eval import critique_probe

                    critique_probe.generate(cfg, generator, out)
                if generator is not None:  # again, now with what the run used (an API model's requests and cost)
                    write_json(out / "generator.json", _describe(generator, cfg))
                art.meta.update(_devices(cfg))
            finally:
                if generator is not None:
                    generator.close()
    return art.path


def _devices(cfg: Config) -> dict:
    """The devices a generation stage ran on, for the compute ledger: an API model's are not ours (0, "api");
    vLLM shards over its tensor-parallel size; hf runs on one."""
    from cft_lab.config import effective_tensor_parallel
    from cft_lab.options import Backend, ModelSource

    if cfg.model.source == ModelSource.api:
        return {"devices": 0, "device_type": "api"}
    if cfg.inference.backend == Backend.vllm:
        return {"devices": effective_tensor_parallel(cfg.model, cfg.inference)}
    return {"devices": 1}


def _describe(generator, cfg: Config) -> dict:
    """What to store next to the outputs: the generator's settings, and the prompt format (with the tokenizer's
    chat template's hash when the model's own chat template renders the prompts)."""
    info = generator.describe()
    info["prompt_format"] = "messages" if getattr(generator, "takes_messages", False) else str(cfg.model.prompt_format)
    if info["prompt_format"] == "chat":
        info["chat_template"] = generator.chat_template_info()
    return info


def run_grade(cfg: Config, store: Store, key: str, infer_dir: Path) -> GradeResult:
    """Grade every benchmark in every mode; write per-sample rows, ``scores.json`` and ``eval.json``."""
    with store.claim("grade", key, resume=True) as art:  # a finished benchmark's rows are kept on a rerun
        if not art.done:
            out = art.path
            modes = list(cfg.eval.modes)
            scores = {}
            judge = None
            for name in cfg.eval.benchmarks:
                target = out / f"{name}.jsonl"
                if not target.is_file():
                    if name == "mt_bench" and judge is None:
                        from cft_lab.eval.instruct import judge_identity, make_judge

                        judge = make_judge(cfg, store.root)
                    graded = engine.grade_benchmark(
                        name,
                        list(read_jsonl(infer_dir / f"{name}.jsonl")),
                        modes,
                        timeout=cfg.eval.grade_timeout,
                        workers=cfg.eval.grade_workers,
                        judge=judge,
                    )
                    if name == "mt_bench" and judge is not None:
                        for g in graded:  # the judge's identity travels with its ratings
                            g["judge"] = {**judge_identity(judge[0]), "name": judge[0].name}
                    write_jsonl(target, graded)
                graded = list(read_jsonl(target))
                scores[name] = s = engine.aggregate(name, graded, modes, n_boot=cfg.eval.n_boot)
                log.info(
                    "grade %s: %.1f%s [%.1f, %.1f] (%s; %s); %d disagreements, quirks %s",
                    name,
                    s["accuracy"],
                    f" (scale {s['scale']})" if "scale" in s else "%",
                    s["ci_low"],
                    s["ci_high"],
                    s["mode"],
                    ", ".join(f"{m} {a:.1f}" for m, a in s["modes"].items()),
                    s["disagreements"],
                    s["quirks"],
                )
            if cfg.eval.critique.enabled:
                from cft_lab.eval import critique_probe

                write_json(out / "critique.json", critique_probe.score(infer_dir))
            gen_info = infer_dir / "generator.json"
            write_json(
                out / "eval.json",
                engine.provenance(
                    list(cfg.eval.benchmarks),
                    cfg.model.eval_template,
                    as_dict(cfg.inference),
                    json.loads(gen_info.read_text()) if gen_info.is_file() else None,
                    modes,
                    cfg.eval.grade_timeout,
                ),
            )
            write_json(out / "scores.json", scores)
    return GradeResult.read(art.path)
