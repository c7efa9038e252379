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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from cft_lab.config import Config, as_dict, selection_inference
from cft_lab.eval import benchmarks, engine
from cft_lab.eval.instruct import category_temperatures as instruct_temperatures
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
    best (the first on ties, as the paper's script did, docs/protocol.md §3.5). Checkpoints are spread over the job's
    devices (``cft_lab.eval.select_pool``) and each is graded while the others generate. Each checkpoint's graded
    outputs are kept, so an interrupted selection resumes; ``selection.json`` reports the selected and the last
    checkpoint side by side, and how many validation questions also appear in each test benchmark. Then, with
    ``train.keep_checkpoints=selected_last``, every other checkpoint of the train artefact is deleted (``pruned.json``
    in it says which stayed and which selection pruned it). The cell logs the curve from ``selection.json`` (also when
    this artefact was found in the store)."""
    from cft_lab.eval.generation import make_generator
    from cft_lab.eval.select_pool import select_generations
    from cft_lab.options import KeepCheckpoints
    from cft_lab.train.trainer import checkpoints

    decoding = selection_inference(cfg.inference)  # greedy direct, whatever the test-time mode
    with store.claim("select", key, resume=True) as art:
        if not art.done:
            out = art.path
            sel = cfg.eval.select
            template = benchmarks.template_for(sel.benchmark, cfg.model.eval_template)
            modes = list(cfg.eval.modes)
            if _check_not_pruned(store, train_dir, key) and (out / "selection.json").is_file():
                # pruned by this very selection, which then stopped before its DONE: its report is complete
                art.meta["selected_step"] = json.loads((out / "selection.json").read_text())["selected"]["step"]
                return SelectResult.read(store, art.path)
            ckpts = [(int(c.name.split("-")[1]), c) for c in checkpoints(train_dir)]
            if not ckpts:
                raise RuntimeError(f"train artefact {train_dir} holds no complete checkpoint")

            def target(step: int) -> Path:
                return out / "scores" / f"{step}.jsonl"

            def generate_here(step: int, ckpt: Path) -> None:
                generator = make_generator(str(ckpt), cfg.model, decoding)  # one load per checkpoint
                try:
                    engine.generate_benchmark(generator, sel.benchmark, template, out / "generations" / str(step),
                                              limit=sel.limit, seed=cfg.inference.seed, n=1,
                                              desc=f"select {ckpt.name}",
                                              prompt_format=str(cfg.model.prompt_format))  # fmt: skip
                finally:
                    generator.close()

            def grade(step: int) -> None:
                rows = list(read_jsonl(out / "generations" / str(step) / f"{sel.benchmark}.jsonl"))
                graded = engine.grade_benchmark(
                    sel.benchmark, rows, modes, timeout=cfg.eval.grade_timeout, workers=cfg.eval.grade_workers
                )
                write_jsonl(target(step), graded)

            slots_used = 1
            if sel.strategy != SelectStrategy.last:
                for step, _ in ckpts:
                    (out / "generations" / str(step)).mkdir(parents=True, exist_ok=True)
                todo = [(step, c) for step, c in ckpts if not target(step).is_file()]
                slots_used = select_generations(cfg, todo, out, generate_here, grade)
            scored: list[dict[str, Any]] = []
            for step, ckpt in ckpts:
                acc = None
                if sel.strategy != SelectStrategy.last:
                    graded = list(read_jsonl(target(step)))
                    acc = score(sum(bool(g["correct"]) for g in graded), len(graded))["accuracy"]
                scored.append({"step": step, "path": store.relative(ckpt), "accuracy": acc})
            last = sel.strategy == SelectStrategy.last
            best = scored[-1] if last else max(scored, key=lambda s: (s["accuracy"], -s["step"]))
            # a tuning trial reads no test set, not even to count shared questions; a cell recounts for its own
            overlap = {} if cfg.run.tune else {b: benchmarks.overlap(sel.benchmark, b) for b in cfg.eval.benchmarks}
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
            if cfg.train.keep_checkpoints == KeepCheckpoints.selected_last:
                art.meta["pruned"] = prune_checkpoints(train_dir, {best["step"], scored[-1]["step"]}, key)
            devices = _devices(cfg)
            devices["devices"] *= slots_used  # several engines at once (eval.select.devices slots)
            art.meta.update(devices)
    return SelectResult.read(store, art.path)


PRUNED = "pruned.json"


def prune_checkpoints(train_dir: Path, keep: set[int], select_key: str) -> list[int]:
    """Delete every checkpoint of ``train_dir`` whose step is not in ``keep``; record what stayed in ``pruned.json``
    (written first, so an interrupted deletion is still known). Returns the deleted steps."""
    import shutil

    from cft_lab.train.trainer import checkpoints

    gone = [int(c.name.split("-")[1]) for c in checkpoints(train_dir) if int(c.name.split("-")[1]) not in keep]
    write_json(train_dir / PRUNED, {"kept": sorted(keep), "deleted": gone, "by_select": select_key})
    for step in gone:
        shutil.rmtree(train_dir / f"checkpoint-{step}", ignore_errors=True)
    if gone:
        log.info("pruned %s: kept checkpoints %s, deleted %d others", train_dir.name, sorted(keep), len(gone))
    return gone


def _check_not_pruned(store: Store, train_dir: Path, key: str) -> bool:
    """A train artefact that another selection pruned cannot be selected from again: its checkpoints are gone.
    Returns whether this selection (``key``) pruned it."""
    record = train_dir / PRUNED
    if not record.is_file():
        return False
    pruned = json.loads(record.read_text(encoding="utf-8"))
    if pruned["by_select"] == key:
        return True
    raise RuntimeError(
        f"train artefact {store.relative(train_dir)} kept only checkpoints {pruned['kept']} after selection "
        f"{pruned['by_select']} (train.keep_checkpoints=selected_last); this selection ({key}: another "
        f"eval.select or grading setting) needs every checkpoint: retrain it (delete {store.relative(train_dir)}) "
        f"with train.keep_checkpoints=all, or keep the first selection's settings"
    )


def run_infer(
    cfg: Config, store: Store, keys: dict[str, str], model_dir: str, on_done: Optional[Callable[[str], None]] = None
) -> dict[str, Path]:
    """Generate each benchmark's outputs into its own artefact (``keys``: benchmark -> infer key, from the plan; the
    critique probe is the entry ``critique``), resumable item by item, with one engine load for every benchmark that
    still needs generating; a benchmark another eval set already generated is found in the store. ``on_done(name)``
    is called as each benchmark's artefact is complete (the cell grades it while the next one generates)."""
    from cft_lab.eval.generation import make_generator
    from cft_lab.pipeline.plan import CRITIQUE_PROBE
    from cft_lab.train.modeling import model_path

    generator = None
    paths: dict[str, Path] = {}
    try:
        for name, key in keys.items():
            with store.claim("infer", key, resume=True) as art:
                if not art.done:
                    if generator is None:
                        # a hub base row is loaded at its pinned revision; a trained checkpoint is a local folder
                        revision = cfg.model.hub_revision() if model_dir == model_path(cfg.model) else None
                        generator = make_generator(model_dir, cfg.model, cfg.inference, revision, cache_dir=store.root)
                    before = _describe(generator, cfg)
                    write_json(art.path / "generator.json", before)
                    t0 = time.time()
                    if name == CRITIQUE_PROBE:
                        from cft_lab.eval import critique_probe

                        critique_probe.generate(cfg, generator, art.path)
                    else:
                        engine.generate_benchmark(
                            generator,
                            name,
                            benchmarks.template_for(name, cfg.model.eval_template),
                            art.path,
                            limit=cfg.eval.limit,
                            seed=cfg.inference.seed,
                            n=cfg.inference.n,
                            desc=f"infer {name}",
                            inference=cfg.inference,
                            prompt_format=str(cfg.model.prompt_format),
                            category_temperatures=instruct_temperatures(cfg) if name == "mt_bench" else None,
                        )
                    # again, now with what this benchmark used (an API model's requests and cost)
                    write_json(art.path / "generator.json", _usage_of_this_benchmark(before, _describe(generator, cfg)))
                    art.meta.update(benchmark=name, generate_s=round(time.time() - t0, 2), **_devices(cfg))
                    log.info("infer %s %s: done in %.1f s", key, name, time.time() - t0)
            paths[name] = art.path
            if on_done is not None:
                on_done(name)
    finally:
        if generator is not None:
            generator.close()
    return paths


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


def _usage_of_this_benchmark(before: dict, after: dict) -> dict:
    """``after`` with ``usage`` (an API model's requests, tokens and cost: the engine's running total over the
    benchmarks it generated) split into this benchmark's share (``usage``) and the total (``usage_engine_total``)."""
    if "usage" not in after:
        return after
    total, start = after["usage"], before.get("usage", {})
    share = {k: round(v - start.get(k, 0), 6) if isinstance(v, (int, float)) else v for k, v in total.items()}
    return {**after, "usage": share, "usage_engine_total": total}


def _describe(generator, cfg: Config) -> dict:
    """What to store next to the outputs: the generator's settings, and the prompt format (with the tokenizer's
    chat template's hash when the model's own chat template renders the prompts)."""
    info = generator.describe()
    info["prompt_format"] = "messages" if getattr(generator, "takes_messages", False) else str(cfg.model.prompt_format)
    if info["prompt_format"] == "chat":
        info["chat_template"] = generator.chat_template_info()
    return info


def run_grade(
    cfg: Config, store: Store, key: str, infer_dirs: dict[str, Path], ready: Optional[Iterable[str]] = None
) -> GradeResult:
    """Grade every benchmark in every mode; write per-sample rows, ``scores.json`` and ``eval.json``.

    ``infer_dirs``: benchmark (and ``critique``) -> its infer artefact. ``ready`` yields the names in the order their
    generations are complete (the cell feeds it while generation goes on); None: all are complete. A stream that
    ends before every benchmark was generated leaves the artefact unfinished (the graded benchmarks are kept)."""
    from cft_lab.pipeline.plan import CRITIQUE_PROBE

    with store.claim("grade", key, resume=True) as art:  # a finished benchmark's rows are kept on a rerun
        if not art.done:
            out = art.path
            modes = list(cfg.eval.modes)
            names = list(cfg.eval.benchmarks)
            judge = None
            for name in ready if ready is not None else names:
                target = out / f"{name}.jsonl"
                if name == CRITIQUE_PROBE or target.is_file():
                    continue
                if name == "mt_bench" and judge is None:
                    from cft_lab.eval.instruct import judge_identity, make_judge

                    judge = make_judge(cfg, store.root)
                t0 = time.time()
                graded = engine.grade_benchmark(
                    name,
                    list(read_jsonl(infer_dirs[name] / f"{name}.jsonl")),
                    modes,
                    timeout=cfg.eval.grade_timeout,
                    workers=cfg.eval.grade_workers,
                    judge=judge,
                )
                if name == "mt_bench" and judge is not None:
                    for g in graded:  # the judge's identity travels with its ratings
                        g["judge"] = {**judge_identity(judge[0]), "name": judge[0].name}
                write_jsonl(target, graded)
                log.info("grade %s: %d items in %.1f s", name, len(graded), time.time() - t0)
            missing = [b for b in names if not (out / f"{b}.jsonl").is_file()]
            if missing:
                raise RuntimeError(f"grade {key}: no generations for {', '.join(missing)} (generation stopped early)")
            scores = {}
            for name in names:
                graded = list(read_jsonl(out / f"{name}.jsonl"))
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

                write_json(out / "critique.json", critique_probe.score(infer_dirs[CRITIQUE_PROBE]))
            generators = {
                name: json.loads((d / "generator.json").read_text())
                for name, d in infer_dirs.items()
                if (d / "generator.json").is_file()
            }
            provenance = engine.provenance(
                names,
                cfg.model.eval_template,
                as_dict(cfg.inference),
                next(iter(generators.values()), None),
                modes,
                cfg.eval.grade_timeout,
            )
            provenance["generators"] = generators  # per benchmark: each may come from an earlier eval set's run
            provenance["infer"] = {name: store.relative(d) for name, d in infer_dirs.items()}
            write_json(out / "eval.json", provenance)
            write_json(out / "scores.json", scores)
    return GradeResult.read(art.path)
