"""The data stage: one record set per (data, response source, teacher, what the objective needs from it).

Output (layout: ``cft_lab.pipeline.store``): ``records.jsonl`` (one :class:`cft_lab.data.records.Record` per question:
id, question, gold, noisy response and its source, critique and parsed verdict, the teacher's own solution, the
teacher's identity, token counts, cost, status and error), and beside it the dataset card ``card.json`` / ``card.md``
(``cft_lab.data.card``: counts per source and status, verdict ratio and unparsed forms, the teacher's agreement with
the truth, cost, token lengths, and what each training arm would truncate or drop at the cell's cutoff).

Steps:

1. **Questions and reference responses**: the testbed (``data.kind=testbed``: questions of the train split,
   responses from its noisy solver) or a real source (``data.kind=source``: WebInstruct-CFT, MetaMathQA,
   NuminaMath-CoT, a local file with a field mapping, or a hub dataset by pinned revision; ``cft_lab.data.sources``).
2. **Responses** (``response_source``): ``reference`` keeps the dataset's own; ``self_generated`` samples one
   response per question from a model (the cell's base model by default) through the generation backend, with a
   per-question seed, and grades it against the gold where one is known (Table 6).
3. **Teacher** (only when the objective needs one, ``cft_lab.train.objectives``; built from the registry
   ``cft_lab.teachers.TEACHER_KINDS``): critiques for ``cft`` and
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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from cft_lab.config import Config
from cft_lab.data.records import Record
from cft_lab.pipeline.store import Store
from cft_lab.testbed import noisy, problems

log = logging.getLogger(__name__)


class TeacherStageError(RuntimeError):
    """The teacher left too many rows failed, or the budget stopped it: the data artefact is not finished."""


# ---- 1. questions and reference responses -------------------------------------------------------------------------


def _phrasings(problem, k: int, rephrase) -> list:
    """``problem`` and ``k - 1`` rewordings of it, all different (a rewording that repeats another is skipped)."""
    out, seen, variant = [problem], {problem.question}, 1
    while len(out) < k and variant < 64 * k:
        q = rephrase(problem, variant)
        variant += 1
        if q.question not in seen:
            seen.add(q.question)
            out.append(q)
    return out


def _testbed_base(cfg: Config) -> tuple[list[Record], dict]:
    """Questions of the train split and the noisy solver's responses; with ``phrasings > 1`` each problem appears
    that many times, reworded (the same chain of steps, a record each)."""
    from cft_lab.testbed.rephrase import rephrase

    tb, rs = cfg.data.testbed, cfg.response_source
    assert tb is not None  # data.kind=testbed has a testbed block (cft_lab.config.check_combination)
    distinct = -(-tb.n_train // tb.phrasings)
    base = problems.generate("train", distinct, seed=tb.seed, min_steps=tb.min_steps, max_steps=tb.max_steps)
    items = [q for p in base for q in _phrasings(p, tb.phrasings, rephrase)][: tb.n_train]
    error_rate = rs.error_rate if tb.response_error_rate is None else tb.response_error_rate
    records = []
    for p in tqdm(items, desc="testbed records", leave=False, mininterval=2):
        resp = noisy.noisy_solve(p, seed=rs.seed, error_rate=error_rate)
        records.append(
            Record(
                id=p.id,
                question=p.question,
                gold=str(p.answer),
                response=resp.text,
                response_source="reference",
                response_correct=resp.correct,
                source={"name": "testbed", "split": "train", "seed": tb.seed},
            )
        )
    provenance = {
        "kind": "testbed",
        "split": "train",
        "n": len(records),
        "seed": tb.seed,
        "min_steps": tb.min_steps,
        "max_steps": tb.max_steps,
    }
    if tb.phrasings != 1 or tb.response_error_rate is not None:
        provenance.update(distinct_problems=len(base), phrasings=tb.phrasings, response_error_rate=error_rate)
    return records, {"provenance": provenance, "problems": {p.id: p for p in items}}


def _source_base(cfg: Config) -> tuple[list[Record], dict]:
    from cft_lab.config import as_dict
    from cft_lab.data.sources import SourceSpec, load_source

    spec = SourceSpec(**as_dict(cfg.data.source))
    res = load_source(spec)
    if res.skipped:
        log.warning("data %s: skipped %d rows: %s", cfg.data.name, sum(res.skipped.values()), res.skipped)
    return list(res.records), {"provenance": res.provenance, "skipped": dict(res.skipped), "problems": {}}


def run_teacher(cfg: Config, records: list[Record], extra: dict, cache_dir: Path) -> tuple[list[Record], dict]:
    """Ask the teacher for what the objective needs; every task ends as a row of its record."""
    from dataclasses import replace

    from cft_lab.teachers import TeacherTask, make_teacher, summarize
    from cft_lab.train.objectives import teacher_work

    kinds = teacher_work(cfg.objective)
    if not kinds:
        return records, {}
    from cft_lab.teachers.estimate import buys, check_estimate, estimate

    if buys(cfg):  # the dry run checked this estimate too; here the records are the ones the teacher will see
        est = estimate(cfg, records, cache_dir)
        log.info("data %s: %s", cfg.data.name, est.line())
        check_estimate(cfg, est)
    teacher = make_teacher(cfg, records, extra, cache_dir)
    tasks = [
        TeacherTask(r.id, kind, r.question, r.response if kind == "critique" else None, r.gold)
        for kind in kinds
        for r in records
    ]
    results = teacher.run(tasks, retry_failed=cfg.teacher.retry_failed, progress=True)
    by_id = {r.id: r for r in records}
    for res in results:
        rec = by_id[res.record_id]
        who = {
            "name": cfg.teacher.name,
            "model": res.model,
            "prompt_version": res.prompt_version,
            "sampling": res.sampling,
        }
        tokens = {"prompt": res.prompt_tokens, "completion": res.completion_tokens}
        if res.status == "ok" and res.text is not None and res.kind == "critique":
            rec = rec.with_critique(res.text, teacher=who, tokens=tokens, cost_usd=res.cost_usd)
        elif res.status == "ok" and res.text is not None:
            rec = rec.with_solution(res.text, teacher=who, tokens=tokens, cost_usd=res.cost_usd)
        else:
            rec = rec.with_failure(res.status, res.error or res.status, teacher=who)
        if res.finish_reason == "length":
            rec = replace(rec, meta={**rec.meta, "teacher_truncated": True})
        by_id[res.record_id] = rec
    summary = {"teacher": teacher.describe(), **summarize(results)}
    run = getattr(teacher, "last_run", None)  # openai: the achieved rate and the limit found, or the batches
    if run:
        summary["run"] = run
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
            f"{summary.get('cost_usd')} USD); raise the budget and rerun: answered requests are never asked again"
        )
    if failed > cfg.teacher.max_failed:
        raise TeacherStageError(
            f"teacher={cfg.teacher.name}: {failed} requests failed (teacher.max_failed={cfg.teacher.max_failed}); "
            f"rerun with teacher.retry_failed=true to re-ask only those, or raise teacher.max_failed to train "
            f"without them (they are recorded with their errors in the request cache)"
        )


# ---- the stage ----------------------------------------------------------------------------------------------------


def base_records(cfg: Config) -> tuple[list[Record], dict]:
    """Step 1 alone: the questions and the dataset's own responses (what the dry run sizes the teacher's work on)."""
    if cfg.data.kind == "testbed":
        return _testbed_base(cfg)
    if cfg.data.kind == "source":
        return _source_base(cfg)
    raise ValueError(f"data={cfg.data.name}: unknown kind {cfg.data.kind!r}")


def build_records(cfg: Config, cache_dir: Optional[Path] = None) -> tuple[list[Record], dict]:
    """All records of the cell's data, response source and teacher, and what the card needs to know."""
    records, extra = base_records(cfg)
    if cfg.response_source.kind == "self_generated":
        from cft_lab.data.responses import self_generate

        records = self_generate(cfg, records, extra["problems"])
    records, summary = run_teacher(cfg, records, extra, cache_dir or Path("."))
    info = {"provenance": extra["provenance"], "skipped": extra.get("skipped", {}), "teacher": summary}
    return records, info


def data_card(
    records: list,
    info: Optional[dict] = None,
    tokenizer=None,
    cutoff_len: Optional[int] = None,
    truncation: str = "paper",
) -> dict:
    """The dataset card (``cft_lab.data.card.build_card``) with the stage's provenance and teacher summary."""
    from cft_lab.data.card import build_card

    info = info or {}
    card = build_card(
        records, tokenizer=tokenizer, cutoff_len=cutoff_len, truncation=truncation, provenance=info.get("provenance")
    )
    if info.get("teacher"):
        card["teacher_run"] = info["teacher"]
    if info.get("skipped"):
        card["source_rows_skipped"] = info["skipped"]
    return card


def describe_records(records: list[Record]) -> dict:
    """A few counts for the log."""
    out: dict = {"records": len(records)}
    for r in records:
        out[r.status] = out.get(r.status, 0) + 1
    return out


@dataclass(frozen=True)
class DataResult:
    """What the data stage hands on: where the records are, how many, and the dataset card."""

    path: Path
    records: int
    card: dict

    @classmethod
    def read(cls, path: Path) -> DataResult:
        import json

        card = json.loads((path / "card.json").read_text(encoding="utf-8"))
        return cls(path=path, records=card["records"], card=card)


def run_data(cfg: Config, store: Store, key: str) -> DataResult:
    """Build (or find) the cell's record set and its dataset card."""
    from cft_lab.data.card import write_card
    from cft_lab.data.records import write_records
    from cft_lab.train.modeling import load_tokenizer, model_path

    with store.claim("data", key) as art:
        if not art.done:
            records, info = build_records(cfg, cache_dir=store.root)
            write_records(art.path / "records.jsonl", records)
            tokenizer = load_tokenizer(model_path(cfg.model), cfg.model.hub_revision(), cfg.model.trust_remote_code)
            card = data_card(
                records, info, tokenizer=tokenizer, cutoff_len=cfg.train.cutoff_len, truncation=cfg.train.truncation
            )
            write_card(card, art.path)
            check_teacher(cfg, info.get("teacher") or {})  # after the files: a refused dataset can be inspected
            art.meta["records"] = len(records)
            log.info("data %s: %s", key, describe_records(records))
    return DataResult.read(art.path)
