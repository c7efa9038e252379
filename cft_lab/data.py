"""The data stage: one record set per (data, response source, teacher), shared by every objective.

Output ``store/data/<key>/records.jsonl``, one record per training question::

    {"id": "tb-3f2a9c01", "question": "...", "gold": "28", "response": "Step 1: ...",
     "response_source": "reference", "response_correct": false,
     "critique": "Step 1: ... Conclusion: wrong [END]", "verdict": "wrong", "teacher_solution": "Step 1: ...",
     "teacher": "testbed_strong"}

``critique``, ``verdict`` and ``teacher_solution`` are null when the cell's objective needs no teacher.
``card.json`` beside it counts records, verdicts (and unparsed ones), the teacher's agreement with the truth where
the truth is known, and the response error ratio.

Sources:
* ``testbed``: questions from ``cft_lab.testbed.problems`` (train split), responses from its noisy solver,
  critiques and solutions from its rule teacher.
* ``webinstruct_cft``: the released WebInstruct-CFT rows (instruction / input / output), from the hub by name and
  pinned revision or from a local file in the same schema. ``input`` is split on ``"\\n\\nSolution:\\n"`` as the
  authors' own scripts do; ``output`` is the GPT-4o-1120 critique, reused when the cell's teacher is that model
  with the paper's prompt (v1). Teachers that must be called (new critiques, the teacher's own answers for
  ``sft_teacher``) belong to the teacher stage and are refused here with a clear error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from cft_lab.config import NEEDS_TEACHER, Config, TeacherConfig
from cft_lab.testbed import noisy, problems, teacher as tb_teacher
from cft_lab.testbed.teacher import parse_verdict

log = logging.getLogger(__name__)

RELEASED_TEACHER = "gpt-4o-2024-11-20"  # the model that wrote WebInstruct-CFT's critiques (PROTOCOL §1.2)
SOLUTION_MARK = "\n\nSolution:\n"


def strength_of(t: TeacherConfig) -> tb_teacher.TeacherStrength:
    return tb_teacher.TeacherStrength(miss_rate=t.miss_rate, false_alarm_rate=t.false_alarm_rate,
                                      vague_rate=t.vague_rate, solution_error_rate=t.solution_error_rate)


def build_records(cfg: Config) -> list[dict]:
    """All training records for the cell's data, response source and (if its objective needs one) teacher."""
    use_teacher = cfg.objective.name in NEEDS_TEACHER
    if cfg.data.kind == "testbed":
        return _testbed_records(cfg, use_teacher)
    if cfg.data.kind == "webinstruct_cft":
        return _webinstruct_records(cfg, use_teacher)
    raise ValueError(f"data={cfg.data.name}: unknown kind {cfg.data.kind!r}")


def _testbed_records(cfg: Config, use_teacher: bool) -> list[dict]:
    tb, rs = cfg.data.testbed, cfg.response_source
    if rs.kind != "reference":
        raise NotImplementedError(
            f"response_source={rs.name} (kind {rs.kind}) needs the teacher stage's self-generation; "
            "the testbed's reference responses come from its noisy solver")
    items = problems.generate("train", tb.n_train, seed=tb.seed, min_steps=tb.min_steps, max_steps=tb.max_steps)
    strength = strength_of(cfg.teacher) if use_teacher else None
    records = []
    for p in tqdm(items, desc="testbed records", leave=False, mininterval=2):
        resp = noisy.noisy_solve(p, seed=rs.seed, error_rate=rs.error_rate)
        rec = {"id": p.id, "question": p.question, "gold": str(p.answer), "response": resp.text,
               "response_source": rs.name, "response_correct": resp.correct,
               "critique": None, "verdict": None, "teacher_solution": None, "teacher": None}
        if strength is not None:
            c = tb_teacher.critique(p, resp.text, strength, seed=cfg.teacher.seed)
            rec.update(critique=c.text, verdict=parse_verdict(c.text), teacher=cfg.teacher.name,
                       teacher_solution=tb_teacher.teacher_solution(p, strength, seed=cfg.teacher.seed))
        records.append(rec)
    return records


def load_released_rows(hub) -> list[dict]:
    """Rows of a WebInstruct-CFT-format dataset, from a local file or the hub (real ``datasets`` loading)."""
    import datasets

    local = Path(hub.path)
    if local.suffix in (".jsonl", ".json", ".parquet"):
        if not local.is_file():
            raise FileNotFoundError(f"data.hub.path={hub.path}: no such file")
        builder = "parquet" if local.suffix == ".parquet" else "json"
        ds = datasets.load_dataset(builder, data_files=str(local), split="train")
    else:
        ds = datasets.load_dataset(hub.path, hub.config_name, revision=hub.revision, split=hub.split)
    if hub.limit is not None:
        ds = ds.select(range(min(hub.limit, len(ds))))
    return list(ds)


def parse_released_row(row: dict, where: str) -> tuple[str, str, str]:
    """(question, response, critique) of one released row; a malformed row fails naming its place and field."""
    for fld in ("instruction", "input", "output"):
        if not isinstance(row.get(fld), str):
            raise ValueError(f"{where}: field {fld!r} is missing or not a string")
    head, sep, response = row["input"].partition(SOLUTION_MARK)
    if not sep or not head.startswith("Question:\n"):
        raise ValueError(f"{where}: field 'input' is not 'Question:\\n...\\n\\nSolution:\\n...'")
    return head[len("Question:\n"):], response, row["output"]


def _webinstruct_records(cfg: Config, use_teacher: bool) -> list[dict]:
    t = cfg.teacher
    if use_teacher and not (t.kind == "openai" and t.model == RELEASED_TEACHER and t.prompt_version == "v1"):
        raise NotImplementedError(
            f"teacher={t.name} must be called to critique data={cfg.data.name}; only the released critiques "
            f"({RELEASED_TEACHER}, prompt v1) can be reused here. Calling teachers is the teacher stage's job.")
    if use_teacher and cfg.objective.name == "sft_teacher":
        raise NotImplementedError(
            f"objective=sft_teacher needs teacher={t.name}'s own answers, which the released data does not hold; "
            "they come from the teacher stage.")
    if cfg.response_source.kind != "reference":
        raise NotImplementedError(
            f"response_source={cfg.response_source.name} needs responses sampled from a model (the teacher stage's "
            f"self-generation); data={cfg.data.name} only holds its reference responses")
    rows = load_released_rows(cfg.data.hub)
    records = []
    for i, row in enumerate(rows):
        q, y, c = parse_released_row(row, f"{cfg.data.hub.path} row {i}")
        rec = {"id": f"wi-{i:06d}", "question": q, "gold": None, "response": y,
               "response_source": cfg.response_source.name, "response_correct": None,
               "critique": None, "verdict": None, "teacher_solution": None, "teacher": None}
        if use_teacher:
            rec.update(critique=c, verdict=parse_verdict(c), teacher=t.name)
        records.append(rec)
    return records


def data_card(records: list[dict]) -> dict:
    """Counts that say what the record set holds."""
    n = len(records)
    verdicts = [r["verdict"] for r in records if r["critique"] is not None]
    known = [r for r in records if r["response_correct"] is not None]
    agree = [r for r in known if r["verdict"] is not None]
    card = {
        "records": n,
        "responses_wrong": sum(1 for r in known if not r["response_correct"]),
        "responses_with_known_truth": len(known),
        "critiques": len(verdicts),
        "verdict_right": verdicts.count("right"),
        "verdict_wrong": verdicts.count("wrong"),
        "verdict_unparsed": verdicts.count(None),
        "teacher_solutions": sum(1 for r in records if r["teacher_solution"]),
    }
    if agree:
        card["teacher_agreement_with_truth"] = round(
            sum((r["verdict"] == "right") == r["response_correct"] for r in agree) / len(agree), 4)
    return card
