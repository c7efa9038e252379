"""The data stage: one record set per (data, response source, teacher, what the objective needs from it).

Output ``store/data/<key>/records.jsonl`` (one :class:`cft_lab.data.records.Record` per question: id, question, gold,
noisy response and its source, critique and parsed verdict, the teacher's own solution, the teacher's identity,
token counts, cost, status and error), and beside it the dataset card ``card.json`` / ``card.md``
(``cft_lab.data.card``: counts per source and status, verdict ratio and unparsed forms, the teacher's agreement with
the truth, cost, token lengths, and what each training arm would truncate or drop at the cell's cutoff).

Steps:

1. **Questions and reference responses**: the testbed (``data.kind=testbed``: questions of the train split,
   responses from its noisy solver) or a real source (``data.kind=source``: WebInstruct-CFT, MetaMathQA,
   NuminaMath-CoT, a local file with a field mapping, or a hub dataset by pinned revision; ``cft_lab.data.sources``).
2. **Responses** (``response_source``): ``reference`` keeps the dataset's own; ``self_generated`` samples one
   response per question from a model (the cell's base model by default) through the generation backend, with a
   per-question seed, and grades it against the gold where one is known (Table 6).
3. **Teacher** (only when the objective needs one; ``cft_lab.teachers``): critiques for ``cft`` and
   ``sft_verified`` (whose filter is the critique's verdict), the teacher's own answers for ``sft_teacher``.
   Kinds: ``testbed``, ``replay`` (critiques shipped with the data), ``openai`` (any OpenAI-compatible server,
   through a durable request cache shared by every data artefact: a crash never costs a request twice), ``vllm``
   and ``hf`` (a local model). When the source ships critiques written by the very model and prompt version the
   teacher config names (``data.released_critiques_by``, e.g. WebInstruct-CFT: gpt-4o-2024-11-20 / v1), they are
   replayed instead of bought again, and the records say so.

Every request ends as a row: ``ok``, ``failed`` (with its error) or ``budget_exhausted``. The stage finishes only
when failures are within ``teacher.max_failed`` and no task was cut by the budget; otherwise it stops with the
counts, and a rerun resumes from the request cache (``teacher.retry_failed=true`` re-asks only the failures,
``teacher.budget_usd`` raises the cap).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from cft_lab.config import NEEDS_TEACHER, Config, TeacherConfig
from cft_lab.data.records import Record
from cft_lab.testbed import noisy, problems, teacher as tb_teacher

log = logging.getLogger(__name__)


class TeacherStageError(RuntimeError):
    """The teacher left too many rows failed, or the budget stopped it: the data artefact is not finished."""


def strength_of(t: TeacherConfig) -> tb_teacher.TeacherStrength:
    return tb_teacher.TeacherStrength(miss_rate=t.miss_rate, false_alarm_rate=t.false_alarm_rate,
                                      vague_rate=t.vague_rate, solution_error_rate=t.solution_error_rate)


def teacher_kinds(cfg: Config) -> list[str]:
    """What the objective needs from the teacher: ``critique`` (cft, sft_verified) or ``answer`` (sft_teacher)."""
    need = NEEDS_TEACHER.get(cfg.objective.name)
    if need is None:
        return []
    return ["answer"] if need == "solutions" else ["critique"]


# ---- 1. questions and reference responses -------------------------------------------------------------------------

def _testbed_base(cfg: Config) -> tuple[list[Record], dict]:
    tb, rs = cfg.data.testbed, cfg.response_source
    items = problems.generate("train", tb.n_train, seed=tb.seed, min_steps=tb.min_steps, max_steps=tb.max_steps)
    records = []
    for p in tqdm(items, desc="testbed records", leave=False, mininterval=2):
        resp = noisy.noisy_solve(p, seed=rs.seed, error_rate=rs.error_rate)
        records.append(Record(id=p.id, question=p.question, gold=str(p.answer), response=resp.text,
                              response_source="reference", response_correct=resp.correct,
                              source={"name": "testbed", "split": "train", "seed": tb.seed}))
    provenance = {"kind": "testbed", "split": "train", "n": len(records), "seed": tb.seed,
                  "min_steps": tb.min_steps, "max_steps": tb.max_steps}
    return records, {"provenance": provenance, "problems": {p.id: p for p in items}}


def _source_base(cfg: Config) -> tuple[list[Record], dict]:
    from cft_lab.config import as_dict
    from cft_lab.data.sources import SourceSpec, load_source

    spec = SourceSpec(**as_dict(cfg.data.source))
    res = load_source(spec)
    if res.skipped:
        log.warning("data %s: skipped %d rows: %s", cfg.data.name, sum(res.skipped.values()), res.skipped)
    return list(res.records), {"provenance": res.provenance, "skipped": dict(res.skipped), "problems": {}}


# ---- 2. responses -------------------------------------------------------------------------------------------------

def self_generate(cfg: Config, records: list[Record], problems_by_id: dict) -> list[Record]:
    """One sampled response per question from ``response_source.model`` (default: the cell's base model)."""
    from dataclasses import replace

    from cft_lab.eval import grading
    from cft_lab.eval.generation import make_generator
    from cft_lab.train.modeling import model_path
    from cft_lab.prompts import MATH_STOP_STRINGS, render_eval_prompt
    from cft_lab.testbed import answers as tb_answers

    rs = cfg.response_source
    model_dir = rs.model or model_path(cfg.model)
    inference = replace(cfg.inference, temperature=rs.temperature, top_p=rs.top_p, n=1,
                        max_new_tokens=rs.max_new_tokens or cfg.inference.max_new_tokens)
    template = rs.template or cfg.model.eval_template
    prompts = [render_eval_prompt(template, r.question) for r in records]
    revision = cfg.model.revision if rs.model is None and cfg.model.source == "hub" else None
    generator = make_generator(model_dir, cfg.model, inference, revision)
    try:  # sample j of question i uses seed + i*n + j: a question's responses do not depend on its batch
        outs = generator.generate(prompts, MATH_STOP_STRINGS, seeds=[rs.seed + i * rs.n for i in range(len(records))],
                                  n=rs.n, desc="self-generated responses")
    finally:
        generator.close()
    label = f"self_generated:{rs.model or cfg.model.name}"
    out, truncated = [], 0
    for r, samples in zip(records, outs):
        for j, o in enumerate(samples):
            text = o.text
            truncated += o.finish_reason == "length"
            if r.id in problems_by_id:  # testbed: the answer is an integer
                correct: Optional[bool] = tb_answers.grade(text, problems_by_id[r.id].answer)
            elif r.gold:
                correct = grading.grade(text, r.gold, "math", mode="paper")
            else:
                correct = None
            meta = {**r.meta, "response_tokens": o.tokens, "response_finish_reason": o.finish_reason,
                    "reference_response": r.response, "question_id": r.id, "sample": j}
            out.append(replace(r, id=r.id if rs.n == 1 else f"{r.id}#{j}", response=text, response_source=label,
                               response_correct=correct, meta=meta))
    if rs.n > 1:  # the testbed teacher finds each sample's problem under its new id
        problems_by_id.update({r.id: problems_by_id[r.meta["question_id"]] for r in out
                               if r.meta["question_id"] in problems_by_id})
    log.info("self-generated %d responses (%d cut at the token limit); %d of %d graded right", len(out), truncated,
             sum(r.response_correct is True for r in out), sum(r.response_correct is not None for r in out))
    return out


# ---- 3. teacher ---------------------------------------------------------------------------------------------------

def _released_matches(cfg: Config) -> bool:
    """The released critiques are this teacher's work on these very responses (never on self-generated ones)."""
    t, by = cfg.teacher, cfg.data.released_critiques_by
    return (bool(by) and t.kind == "openai" and by == f"{t.model}/{t.prompt_version}"
            and cfg.response_source.kind == "reference")


def replays_released(cfg: Config) -> bool:
    """True when this cell's teacher work is the source's released critiques (no request is made)."""
    return cfg.teacher.kind == "replay" or (_released_matches(cfg) and teacher_kinds(cfg) == ["critique"])


def make_teacher(cfg: Config, records: list[Record], extra: dict, cache_dir: Path):
    """The teacher of this cell (see the module doc for the kinds)."""
    from cft_lab.teachers import OpenAITeacher, PriceTable, ReplayTeacher, TestbedTeacher

    t = cfg.teacher
    released = {r.id: r.meta["released_critique"] for r in records if r.meta.get("released_critique")}
    if t.kind == "testbed":
        return TestbedTeacher(extra["problems"], name=t.name, strength=strength_of(t), seed=t.seed)
    if replays_released(cfg):
        if not released:
            raise ValueError(f"teacher={t.name} replays released critiques, but data={cfg.data.name} has none")
        return ReplayTeacher(released, name=t.name, model=t.model or "unknown", prompt_version=t.prompt_version,
                             source=str(extra["provenance"].get("path", cfg.data.name)))
    sampling = {"temperature": t.temperature, "top_p": t.top_p, "max_tokens": t.max_tokens, "n": 1}
    if t.kind == "openai":
        prices = PriceTable()
        if t.price_input is not None or t.price_output is not None:
            if t.price_input is None or t.price_output is None:
                raise ValueError(f"teacher={t.name}: set both price_input and price_output (USD per 1M tokens)")
            prices = prices.with_overrides({t.model: {"input": t.price_input, "output": t.price_output}})
        return OpenAITeacher(t.name, t.model, cache_path=cache_dir / "teacher_cache.sqlite" if not t.cache else t.cache,
                             base_url=t.base_url, api_key_env=t.api_key_env, prompt_version=t.prompt_version,
                             sampling=sampling, concurrency=t.concurrency, timeout_s=t.timeout_s,
                             max_attempts=t.max_attempts, budget_usd=t.budget_usd, prices=prices)
    if t.kind in ("vllm", "hf"):
        from cft_lab.teachers.local import LocalTeacher

        return LocalTeacher(cfg, sampling)
    raise ValueError(f"teacher={t.name}: kind {t.kind!r} cannot write critiques")


def run_teacher(cfg: Config, records: list[Record], extra: dict, cache_dir: Path) -> tuple[list[Record], dict]:
    """Ask the teacher for what the objective needs; every task ends as a row of its record."""
    from dataclasses import replace

    from cft_lab.teachers import TeacherTask, summarize

    kinds = teacher_kinds(cfg)
    if not kinds:
        return records, {}
    teacher = make_teacher(cfg, records, extra, cache_dir)
    tasks = [TeacherTask(r.id, kind, r.question, r.response if kind == "critique" else None, r.gold)
             for kind in kinds for r in records]
    results = teacher.run(tasks, retry_failed=cfg.teacher.retry_failed, progress=True)
    by_id = {r.id: r for r in records}
    for res in results:
        rec = by_id[res.record_id]
        who = {"name": cfg.teacher.name, "model": res.model, "prompt_version": res.prompt_version,
               "sampling": res.sampling}
        tokens = {"prompt": res.prompt_tokens, "completion": res.completion_tokens}
        if res.status == "ok" and res.kind == "critique":
            rec = rec.with_critique(res.text, teacher=who, tokens=tokens, cost_usd=res.cost_usd)
        elif res.status == "ok":
            rec = rec.with_solution(res.text, teacher=who, tokens=tokens, cost_usd=res.cost_usd)
        else:
            rec = rec.with_failure(res.status, res.error or res.status, teacher=who)
        if res.finish_reason == "length":
            rec = replace(rec, meta={**rec.meta, "teacher_truncated": True})
        by_id[res.record_id] = rec
    summary = {"teacher": teacher.describe(), **summarize(results)}
    return [by_id[r.id] for r in records], summary


def check_teacher(cfg: Config, summary: dict) -> None:
    """Refuse to finish a dataset with more failures than allowed, or one the budget cut short."""
    if not summary:
        return
    failed, cut = summary.get("failed", 0), summary.get("budget_exhausted", 0)
    if cut:
        raise TeacherStageError(
            f"teacher={cfg.teacher.name}: the budget (teacher.budget_usd={cfg.teacher.budget_usd}) stopped the stage "
            f"with {cut} tasks not asked ({summary.get('ok', 0)} ok, {failed} failed, cost so far "
            f"{summary.get('cost_usd')} USD); raise the budget and rerun: answered requests are never asked again")
    if failed > cfg.teacher.max_failed:
        raise TeacherStageError(
            f"teacher={cfg.teacher.name}: {failed} requests failed (teacher.max_failed={cfg.teacher.max_failed}); "
            f"rerun with teacher.retry_failed=true to re-ask only those, or raise teacher.max_failed to train "
            f"without them (they are recorded with their errors in the request cache)")


# ---- the stage ----------------------------------------------------------------------------------------------------

def build_records(cfg: Config, cache_dir: Optional[Path] = None) -> tuple[list[Record], dict]:
    """All records of the cell's data, response source and teacher, and what the card needs to know."""
    if cfg.data.kind == "testbed":
        records, extra = _testbed_base(cfg)
    elif cfg.data.kind == "source":
        records, extra = _source_base(cfg)
    else:
        raise ValueError(f"data={cfg.data.name}: unknown kind {cfg.data.kind!r}")
    if cfg.response_source.kind == "self_generated":
        records = self_generate(cfg, records, extra["problems"])
    records, summary = run_teacher(cfg, records, extra, cache_dir or Path("."))
    info = {"provenance": extra["provenance"], "skipped": extra.get("skipped", {}), "teacher": summary}
    return records, info


def data_card(records: list, info: Optional[dict] = None, tokenizer=None, cutoff_len: Optional[int] = None,
              truncation: str = "paper") -> dict:
    """The dataset card (``cft_lab.data.card.build_card``) with the stage's provenance and teacher summary."""
    from cft_lab.data.card import build_card

    info = info or {}
    card = build_card(records, tokenizer=tokenizer, cutoff_len=cutoff_len, truncation=truncation,
                      provenance=info.get("provenance"))
    if info.get("teacher"):
        card["teacher_run"] = info["teacher"]
    if info.get("skipped"):
        card["source_rows_skipped"] = info["skipped"]
    return card


def as_dicts(records: list[Record]) -> list[dict]:
    return [r.to_dict() if isinstance(r, Record) else dict(r) for r in records]


def describe_records(records: list[Record]) -> dict:
    """A few counts for the log."""
    out: dict = {"records": len(records)}
    for r in records:
        out[r.status] = out.get(r.status, 0) + 1
    return out

