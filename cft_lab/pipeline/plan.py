"""Planning a cell: which stages run, and the cache key of each artefact.

A cell is one configuration (a row x column of a paper table). ``plan_cell(cfg)`` returns the stages it needs, in
order, each with the key of the artefact it reads or writes (see ``cft_lab.pipeline.store``). Keys depend only on the config
subtrees that change the artefact, never on run identity (``run.*``), logging or output paths:

* data   = data + response_source (+ teacher, only when the objective needs one) + version
* train  = data key + model + objective + train recipe (minus how it is launched) + version
* select = train key + eval.select + inference settings + version
* infer  = the model to evaluate (select key, or the base model) + inference + benchmarks + eval template + version
* grade  = infer key + version; the cell key is the grade key.

Bump a ``STAGE_VERSIONS`` entry when a stage's output changes for the same config: old artefacts are then ignored.

>>> from cft_lab.pipeline.plan import STAGE_VERSIONS
>>> sorted(STAGE_VERSIONS)
['data', 'grade', 'infer', 'select', 'train']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cft_lab.config import NEEDS_TEACHER, Config, as_dict
from cft_lab.pipeline.store import digest

log = logging.getLogger(__name__)

STAGE_VERSIONS = {"data": "data-v2", "train": "train-v1", "select": "select-v2", "infer": "infer-v2",
                  "grade": "grade-v2"}

# Fields that decide how a run is launched, not what it computes: excluded from the train key. (The DeepSpeed
# config stays in: it decides master-weight precision and the optimizer's numerics.)
_LAUNCH_ONLY = ("launcher", "logging_steps", "gradient_checkpointing")


@dataclass
class StagePlan:
    stage: str
    key: str
    summary: str  # one line for the dry-run listing


@dataclass
class CellPlan:
    name: str  # e.g. "tiny_math/cft"
    key: str  # = the grade key
    stages: list[StagePlan] = field(default_factory=list)

    def key_of(self, stage: str) -> str | None:
        return next((s.key for s in self.stages if s.stage == stage), None)


def cell_name(cfg: Config) -> str:
    method = cfg.run.method or cfg.objective.name
    return f"{cfg.model.name}/{method}"


def _model_identity(cfg: Config) -> dict:
    """What the base weights are: hub id + revision, or a testbed base + its recipe digest (so `make bases`
    after a recipe change does not reuse cells of the old bases)."""
    m = as_dict(cfg.model)
    ident = {k: m[k] for k in ("source", "path", "revision", "dtype")}
    if cfg.model.source == "testbed":
        from cft_lab.testbed.bases import RECIPES, recipe_digest

        ident["recipe"] = recipe_digest(cfg.model.path) if cfg.model.path in RECIPES else None
    return ident


#: Teacher fields that decide how requests are made, not what the teacher writes: excluded from the data key.
_TEACHER_TRANSPORT = ("label", "api_key_env", "base_url", "concurrency", "timeout_s", "max_attempts", "budget_usd",
                      "retry_failed", "max_failed", "cache", "price_input", "price_output")


def data_key(cfg: Config) -> str:
    from cft_lab.data.stage import teacher_kinds

    teacher = as_dict(cfg.teacher) if cfg.objective.name in NEEDS_TEACHER else None
    if teacher is not None:
        for k in _TEACHER_TRANSPORT:
            teacher.pop(k, None)
        teacher["kinds"] = teacher_kinds(cfg)  # critiques (cft, sft_verified) or answers (sft_teacher)
    data = as_dict(cfg.data)
    data.pop("label", None)
    responses = as_dict(cfg.response_source)
    if cfg.response_source.kind == "self_generated":
        responses["from"] = responses["model"] or _model_identity(cfg)  # the cell's base model writes them
        responses["inference"] = {k: as_dict(cfg.inference)[k] for k in ("backend", "max_new_tokens")}
        responses["template"] = responses["template"] or cfg.model.eval_template
    return digest({"v": STAGE_VERSIONS["data"], "data": data, "responses": responses, "teacher": teacher})


def _teacher_summary(cfg: Config) -> str:
    """How the teacher will be asked, for the dry run: model, prompt, sampling, or that released critiques replay."""
    from cft_lab.data.stage import replays_released, teacher_kinds

    t = cfg.teacher
    kinds = "+".join(teacher_kinds(cfg))
    if t.kind in ("openai", "vllm", "hf"):
        how = (f"{t.kind} {t.model}, prompt {t.prompt_version}, T={t.temperature:g} top_p={t.top_p:g} "
               f"max_tokens={t.max_tokens}")
        if replays_released(cfg):
            how = f"replays the released critiques of {t.model} (prompt {t.prompt_version}), no request"
        elif t.kind == "openai":
            how += f", {t.concurrency} in flight" + (f", budget ${t.budget_usd:g}" if t.budget_usd else "")
    else:
        how = t.kind
    return f"teacher {t.name} ({kinds}: {how})"


def _grading(cfg: Config) -> dict:
    """What decides a verdict: the modes (the first scores the table), the timeout and the graders' version."""
    from cft_lab.eval.grading import VERSION

    return {"modes": list(cfg.eval.modes), "timeout": cfg.eval.grade_timeout, "version": VERSION}


def plan_cell(cfg: Config) -> CellPlan:
    """The stages of one cell with their keys. Pure: reads the config, touches no file."""
    stages: list[StagePlan] = []
    inf = as_dict(cfg.inference)
    inf.pop("name", None)  # batch_size stays: batched decoding is not batch-invariant (PITFALLS)
    if cfg.objective.name == "base":
        evaluated = {"base": _model_identity(cfg)}
    else:
        dkey = data_key(cfg)
        stages.append(StagePlan("data", dkey, f"{cfg.data.name} x {cfg.response_source.name} responses"
                                + (f", {_teacher_summary(cfg)}" if cfg.objective.name in NEEDS_TEACHER else "")))
        train = as_dict(cfg.train)
        for k in _LAUNCH_ONLY + ("name",):
            train.pop(k, None)
        objective = as_dict(cfg.objective)
        objective.pop("label", None)
        tkey = digest({"v": STAGE_VERSIONS["train"], "data": dkey, "model": _model_identity(cfg),
                       "objective": objective, "train": train})
        t = cfg.train
        if cfg.model.source == "hub" and cfg.model.revision is None:
            log.warning("model=%s has no pinned revision: its cache keys cannot see hub updates", cfg.model.name)
        stages.append(StagePlan("train", tkey, (
            f"{cfg.objective.name} on {cfg.model.name}: lr {t.learning_rate:g} {t.lr_scheduler_type}, warm-up "
            f"{t.warmup_ratio:g}, batch {t.per_device_train_batch_size}x{t.gradient_accumulation_steps}x"
            f"{t.num_devices}={t.per_device_train_batch_size * t.gradient_accumulation_steps * t.num_devices}, "
            f"{t.num_train_epochs:g} epoch, cutoff {t.cutoff_len}" + (", bf16" if t.bf16 else "")
            + (f", {t.launcher}+{t.deepspeed}" if t.deepspeed else f", {t.launcher}"))))
        skey = digest({"v": STAGE_VERSIONS["select"], "train": tkey, "select": as_dict(cfg.eval.select),
                       "inference": inf, "template": cfg.model.eval_template, "grading": _grading(cfg)})
        stages.append(StagePlan("select", skey,
                                f"{cfg.eval.select.strategy} checkpoint on {cfg.eval.select.benchmark}"))
        evaluated = {"select": skey}
    ikey = digest({"v": STAGE_VERSIONS["infer"], "model": evaluated, "inference": inf,
                   "benchmarks": list(cfg.eval.benchmarks), "limit": cfg.eval.limit,
                   "template": cfg.model.eval_template,
                   "critique": as_dict(cfg.eval.critique) if cfg.eval.critique.enabled else None})
    from cft_lab.eval import benchmarks

    counts = {b: min(benchmarks.size(b), cfg.eval.limit or benchmarks.size(b)) for b in cfg.eval.benchmarks}
    stages.append(StagePlan("infer", ikey, (
        f"{cfg.inference.backend} {cfg.inference.mode}, T={cfg.inference.temperature:g}, n={cfg.inference.n}, "
        f"max {cfg.inference.max_new_tokens} new tokens, template {cfg.model.eval_template}; "
        f"{sum(counts.values())} prompts (" + ", ".join(f"{b} {n}" for b, n in counts.items()) + ")")))
    gkey = digest({"v": STAGE_VERSIONS["grade"], "infer": ikey, "grading": _grading(cfg),
                   "n_boot": cfg.eval.n_boot})
    stages.append(StagePlan("grade", gkey, f"{', '.join(cfg.eval.benchmarks)}"
                            + (f" (limit {cfg.eval.limit})" if cfg.eval.limit else "")))
    return CellPlan(name=cell_name(cfg), key=gkey, stages=stages)


def format_plan(plan: CellPlan) -> str:
    lines = [f"cell {plan.name}  [{plan.key}]"]
    lines += [f"  {s.stage:<7}{s.key}  {s.summary}" for s in plan.stages]
    return "\n".join(lines)
