"""Teachers: who writes the critiques (and the teacher's own answers) for the data stage.

One interface (:mod:`cft_lab.teachers.base`): ``Teacher.run(tasks) -> results``, one result per task, in order.
One registry, :data:`TEACHER_KINDS`: a literal dict from ``teacher.kind`` (``cft_lab.options.TeacherKind``) to the
function that builds that teacher for a cell. Kinds:

* ``openai`` (:mod:`.openai_teacher`): any OpenAI-compatible server, with a durable request cache, retries,
  cost and a USD budget;
* ``replay`` (:mod:`.replay`): the released critiques of a dataset, by record id;
* ``testbed`` (:mod:`.testbed`): the CPU testbed's rule teacher;
* ``vllm`` / ``hf`` (:mod:`.local`): a local model through the generation backend;
* ``none``: no teacher (only objectives that need nothing from one can run).

A cell whose dataset ships critiques written by the very model and prompt version an ``openai`` teacher names
(``data.released_critiques_by``) replays them instead of buying them again (:func:`replays_released`).

This module imports no teacher implementation at import time (the plan computes keys and dry-run summaries from it
without loading the OpenAI SDK). Prompts are pinned in :mod:`cft_lab.prompts.teacher`; prices in :mod:`.pricing`;
``python -m cft_lab.teachers.run`` runs the ``openai`` teacher over a JSONL file of tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cft_lab.options import ResponseKind, TeacherKind
from cft_lab.teachers.base import Teacher, TeacherResult, TeacherTask, summarize

if TYPE_CHECKING:
    from cft_lab.config import Config
    from cft_lab.data.records import Record

#: Builds the teacher of a cell: (config, records, what the data step found (provenance, testbed problems), folder
#: for the request cache) -> Teacher.
Builder = Callable[["Config", list, dict, Path], Teacher]


def _testbed(cfg: Config, records: list[Record], extra: dict, cache_dir: Path) -> Teacher:
    from cft_lab.teachers.testbed import TestbedTeacher
    from cft_lab.testbed.teacher import TeacherStrength

    t = cfg.teacher
    strength = TeacherStrength(
        miss_rate=t.miss_rate,
        false_alarm_rate=t.false_alarm_rate,
        vague_rate=t.vague_rate,
        solution_error_rate=t.solution_error_rate,
    )
    return TestbedTeacher(extra["problems"], name=t.name, strength=strength, seed=t.seed, style=t.critique_style)


def _replay(cfg: Config, records: list[Record], extra: dict, cache_dir: Path) -> Teacher:
    from cft_lab.teachers.replay import ReplayTeacher

    t = cfg.teacher
    released = {r.id: r.meta["released_critique"] for r in records if r.meta.get("released_critique")}
    if not released:
        raise ValueError(f"teacher={t.name} replays released critiques, but data={cfg.data.name} has none")
    return ReplayTeacher(
        released,
        name=t.name,
        model=t.model or "unknown",
        prompt_version=t.prompt_version,
        source=str(extra["provenance"].get("path", cfg.data.name)),
    )


def sampling_of(cfg: Config) -> dict:
    """The request's sampling fields (part of every request's cache key)."""
    t = cfg.teacher
    return {"temperature": t.temperature, "top_p": t.top_p, "max_tokens": t.max_tokens, "n": 1}


def _openai(cfg: Config, records: list[Record], extra: dict, cache_dir: Path) -> Teacher:
    from cft_lab.teachers.estimate import budget_of, teacher_prices
    from cft_lab.teachers.openai_teacher import OpenAITeacher

    t = cfg.teacher
    assert t.model, "an openai teacher names its model (cft_lab.config.check_combination)"
    prices = teacher_prices(t)
    return OpenAITeacher(
        t.name,
        t.model,
        cache_path=t.cache or cache_dir / "teacher_cache.sqlite",
        base_url=t.base_url,
        api_key_env=t.api_key_env,
        prompt_version=t.prompt_version,
        sampling=sampling_of(cfg),
        concurrency=t.concurrency,
        timeout_s=t.timeout_s,
        max_attempts=t.max_attempts,
        budget_usd=budget_of(cfg),
        prices=prices,
        rate_limit_patience_s=t.rate_limit_patience_s,
        mode=str(t.mode),
        batch_poll_s=t.batch_poll_s,
        batch_wait_s=t.batch_wait_s,
    )


def _local(cfg: Config, records: list[Record], extra: dict, cache_dir: Path) -> Teacher:
    from cft_lab.teachers.local import LocalTeacher

    return LocalTeacher(cfg, sampling_of(cfg))


#: The one registry of teacher kinds. ``none`` builds nothing: an objective that needs a teacher is refused at
#: compose time (``cft_lab.config.check_combination``).
TEACHER_KINDS: dict[TeacherKind, Optional[Builder]] = {
    TeacherKind.none: None,
    TeacherKind.testbed: _testbed,
    TeacherKind.replay: _replay,
    TeacherKind.openai: _openai,
    TeacherKind.vllm: _local,
    TeacherKind.hf: _local,
}


def replays_released(cfg: Config) -> bool:
    """True when this cell's teacher work is the source's released critiques (no request is made): a replay teacher,
    or an openai teacher of the model and prompt that wrote the critiques the data ships, asked for critiques of the
    dataset's own responses (never of self-generated ones)."""
    from cft_lab.train.objectives import teacher_work

    t, by = cfg.teacher, cfg.data.released_critiques_by
    if t.kind == TeacherKind.replay:
        return True
    return (
        bool(by)
        and t.kind == TeacherKind.openai
        and by == f"{t.model}/{t.prompt_version}"
        and cfg.response_source.kind == ResponseKind.reference
        and teacher_work(cfg.objective) == ["critique"]
    )


def make_teacher(cfg: Config, records: list[Record], extra: dict, cache_dir: Path) -> Teacher:
    """The teacher of this cell, from :data:`TEACHER_KINDS` (or the replay of released critiques)."""
    builder = _replay if replays_released(cfg) else TEACHER_KINDS[cfg.teacher.kind]
    if builder is None:
        raise ValueError(f"teacher={cfg.teacher.name}: kind {cfg.teacher.kind} cannot write critiques")
    return builder(cfg, records, extra, cache_dir)


def describe(cfg: Config) -> str:
    """How the teacher will be asked, for the dry run: model, prompt, sampling, or that released critiques replay."""
    from cft_lab.train.objectives import teacher_work

    t = cfg.teacher
    kinds = "+".join(teacher_work(cfg.objective))
    if t.kind in (TeacherKind.openai, TeacherKind.vllm, TeacherKind.hf):
        how = (
            f"{t.kind} {t.model}, prompt {t.prompt_version}, T={t.temperature:g} top_p={t.top_p:g} "
            f"max_tokens={t.max_tokens}"
        )
        if replays_released(cfg):
            how = f"replays the released critiques of {t.model} (prompt {t.prompt_version}), no request"
        elif t.kind == TeacherKind.openai:
            from cft_lab.teachers.estimate import budget_of

            budget = budget_of(cfg)
            how += (
                (", Batch API" if t.mode == "batch" else f", up to {t.concurrency} in flight")
                + (f", budget ${budget:g}" if budget is not None else ", no budget cap")
                + (" (default)" if t.budget_usd is None and budget is not None else "")
            )
    else:
        how = str(t.kind)
    return f"teacher {t.name} ({kinds}: {how})"


__all__ = [
    "TEACHER_KINDS",
    "Builder",
    "Teacher",
    "TeacherResult",
    "TeacherTask",
    "describe",
    "make_teacher",
    "replays_released",
    "sampling_of",
    "summarize",
]
