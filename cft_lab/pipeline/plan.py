"""Planning a cell: which stages run, and the cache key of each artefact.

A cell is one configuration (a row x column of a paper table). ``plan_cell(cfg)`` returns the stages it needs, in
order, each with the key of the artefact it reads or writes (see ``cft_lab.pipeline.store``). Keys depend only on the
config subtrees that change the artefact, never on run identity (``run.*``), logging or output paths; fields that only
say how something runs are marked where they are declared (``cft_lab.config.NOT_IN_KEY``) and left out by
``cft_lab.config.key_dict``:

* data   = data + response_source (+ teacher, only when the objective needs one) + version, + the content digests
  of the local files and folders it reads (``cft_lab.pipeline.fingerprint``: an edited file is a new key)
* train  = data key + model + objective + train recipe (minus how it is launched) + version
* select = train key + eval.select + inference settings + version
* infer  = one artefact per benchmark: the model to evaluate (select key, or the base model) + inference + that
  benchmark + limit + eval template + version, so a benchmark's generations are shared by every eval set that lists
  it (``eval=paper_suite`` after Table 2 generates only the four benchmarks Table 2 did not); the critique probe,
  when enabled, is one more infer artefact (``benchmark="critique"``)
* grade  = the infer keys + grading + version; the cell key is the grade key.

Bump a ``STAGE_VERSIONS`` entry when a stage's output changes for the same config: old artefacts are then ignored.

>>> from cft_lab.pipeline.plan import STAGE_VERSIONS
>>> sorted(STAGE_VERSIONS)
['data', 'grade', 'infer', 'select', 'train']
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

from cft_lab.config import (
    Config,
    as_dict,
    effective_tensor_parallel,
    key_dict,
    own_data_config,
    parent_config,
    part_config,
    selection_inference,
    uses_pool,
)
from cft_lab.options import ModelSource, MtBenchSampling, ResponseKind
from cft_lab.pipeline.store import digest
from cft_lab.train.objectives import spec, teacher_work

log = logging.getLogger(__name__)

STAGE_VERSIONS = {
    "data": "data-v2",
    "train": "train-v1",
    "select": "select-v2",
    "infer": "infer-v3",  # v3: one artefact per benchmark (v2: one per benchmark list)
    "grade": "grade-v3",  # v3: reads the per-benchmark infer artefacts
}


@dataclass
class StagePlan:
    stage: str  # the store folder: data | train | select | infer | grade
    key: str
    summary: str  # one line for the dry-run listing
    role: Optional[str] = None  # None: the cell's own; "part k": a mixture's part k; "parent": a chain's parent
    benchmark: Optional[str] = None  # infer stages: the benchmark (or "critique", the probe) this artefact holds


@dataclass
class CellPlan:
    name: str  # e.g. "tiny_math/cft"
    key: str  # = the grade key
    stages: list[StagePlan] = field(default_factory=list)

    def key_of(self, stage: str, role: Optional[str] = None, benchmark: Optional[str] = None) -> str:
        keys = [
            s.key
            for s in self.stages
            if s.stage == stage and s.role == role and (benchmark is None or s.benchmark == benchmark)
        ]
        if not keys:
            raise KeyError(
                f"cell {self.name} has no {stage} stage"
                + (f" ({role})" if role else "")
                + (f" for {benchmark}" if benchmark else "")
            )
        if len(keys) > 1:
            raise KeyError(f"cell {self.name} has {len(keys)} {stage} stages (one per benchmark): name the benchmark")
        return keys[0]

    def infer_keys(self) -> dict[str, str]:
        """The cell's infer artefacts: benchmark (or ``critique``, the probe) -> key, in the eval's order."""
        return {s.benchmark: s.key for s in self.stages if s.stage == "infer" and s.benchmark is not None}

    def part_keys(self) -> list[str]:
        """The data keys of a mixture's parts, in order (empty for other cells)."""
        return [s.key for s in self.stages if s.stage == "data" and (s.role or "").startswith("part ")]


def cell_name(cfg: Config) -> str:
    method = cfg.run.method or cfg.objective.name
    return f"{cfg.model.name}/{method}" + (f"/{cfg.run.variant}" if cfg.run.variant else "")


def _model_identity(cfg: Config) -> dict:
    """What the base weights are: hub id + revision, or a testbed base + its recipe digest (so `make bases`
    after a recipe change does not reuse cells of the old bases), or a local folder's content digest."""
    from cft_lab.pipeline.fingerprint import model_fingerprint

    ident = key_dict(cfg.model)
    local = model_fingerprint(cfg)
    if local:
        ident["content"] = local
    if cfg.model.source == ModelSource.testbed:
        from cft_lab.testbed.bases import RECIPES, recipe_digest

        ident["recipe"] = recipe_digest(cfg.model.path) if cfg.model.path in RECIPES else None
    return ident


def data_key(cfg: Config) -> str:
    work = teacher_work(cfg.objective)
    teacher = None
    if work:
        teacher = key_dict(cfg.teacher)
        teacher["kinds"] = work  # critiques (cft, sft_verified) or answers (sft_teacher)
    responses = as_dict(cfg.response_source)
    if cfg.response_source.kind == ResponseKind.self_generated:
        responses["from"] = responses["model"] or _model_identity(cfg)  # the cell's base model writes them
        responses["inference"] = {k: as_dict(cfg.inference)[k] for k in ("backend", "max_new_tokens")}
        responses["template"] = responses["template"] or cfg.model.eval_template
    from cft_lab.pipeline.fingerprint import data_inputs

    data = key_dict(cfg.data)
    if data.get("source") is not None:
        # the field map is a dataclass of nullable fields; unmapped (all null) it is keyed as before it was one
        assert cfg.data.source is not None
        data["source"]["field_map"] = cfg.data.source.field_map.as_map()
    body = {"v": STAGE_VERSIONS["data"], "data": data, "responses": responses, "teacher": teacher}
    local = data_inputs(cfg, teacher_used=bool(work))
    if local:
        body["local_inputs"] = local  # absent when nothing local is read: hub and testbed keys are unchanged
    return digest(body)


def _grading(cfg: Config) -> dict:
    """What decides a verdict: the modes (the first scores the table), the timeout and the graders' version."""
    from cft_lab.eval.grading import VERSION

    return {"modes": [str(m) for m in cfg.eval.modes], "timeout": cfg.eval.grade_timeout, "version": VERSION}


def _data_stage(cfg: Config, role: Optional[str] = None) -> StagePlan:
    from cft_lab import teachers

    summary = f"{cfg.data.name} x {cfg.response_source.name} responses"
    if teacher_work(cfg.objective):
        summary += f", {teachers.describe(cfg)}"
    return StagePlan("data", data_key(cfg), summary, role)


def _train_summary(cfg: Config) -> str:
    t = cfg.train
    batch = t.per_device_train_batch_size * t.gradient_accumulation_steps * t.num_devices
    return (
        f"{cfg.objective.name} on {cfg.model.name}"
        + (" (from the parent's selected checkpoint)" if cfg.chain is not None else "")
        + f": lr {t.learning_rate:g} {t.lr_scheduler_type}, warm-up {t.warmup_ratio:g}, batch "
        f"{t.per_device_train_batch_size}x{t.gradient_accumulation_steps}x{t.num_devices}={batch}, "
        f"{t.num_train_epochs:g} epoch, cutoff {t.cutoff_len}"
        + (", bf16" if t.bf16 else "")
        + (f", {t.launcher}+{t.deepspeed}" if t.deepspeed else f", {t.launcher}")
    )


def template_key(cfg: Config) -> Any:
    """How prompts reach the model: the eval template's name (its pinned text, as every key before
    ``model.prompt_format`` existed), or the template with the format when the messages go through the model's own chat
    template or an API (the chat template's text comes with the model's weights, pinned by its revision)."""
    from cft_lab.options import PromptFormat

    if cfg.model.source == ModelSource.api:
        return {"template": cfg.model.eval_template, "format": "messages"}
    if cfg.model.prompt_format != PromptFormat.harness:
        return {"template": cfg.model.eval_template, "format": str(cfg.model.prompt_format)}
    return cfg.model.eval_template


def _inference_key(cfg: Config, inference: Any) -> dict:
    """The decoding settings in a key: the inference config, and the tensor-parallel size the engine will really use
    when the model asks for more than the inference config (greedy outputs depend on it)."""
    body = key_dict(inference)
    tp = effective_tensor_parallel(cfg.model, inference)
    if tp != inference.tensor_parallel_size:
        body["tensor_parallel_size"] = tp
    return body


def _select_key(cfg: Config, tkey: str) -> str:
    return digest(
        {
            "v": STAGE_VERSIONS["select"],
            "train": tkey,
            "select": key_dict(cfg.eval.select),  # what is scored and how; not on how many devices
            "inference": _inference_key(cfg, selection_inference(cfg.inference)),
            "template": template_key(cfg),
            "grading": _grading(cfg),
        }
    )


def _training_stages(cfg: Config, role: Optional[str] = None) -> tuple[list[StagePlan], str]:
    """The data, train and select stages of a cell that trains (a chain's parent first), and its select key."""
    stages: list[StagePlan] = []
    model = _model_identity(cfg)
    if cfg.chain is not None:  # the parent's stages, then this cell's keys include the parent's selection
        parent_stages, parent_select = _training_stages(parent_config(cfg), role="parent")
        stages += parent_stages
        model = {"parent": parent_select, "base": model}
    if spec(cfg.objective).family == "mix":
        parts = [_data_stage(part_config(cfg, p), role=f"part {k}") for k, p in enumerate(cfg.objective.parts or [])]
        stages += [dataclasses.replace(p, role=p.role if role is None else f"{role} {p.role}") for p in parts]
        data: Any = [p.key for p in parts]
    else:
        stages.append(_data_stage(own_data_config(cfg), role))
        data = stages[-1].key
    from cft_lab.pipeline.fingerprint import deepspeed_fingerprint

    train_body = {
        "v": STAGE_VERSIONS["train"],
        "data": data,
        "model": model,
        "objective": key_dict(cfg.objective),
        "train": key_dict(cfg.train),
    }
    if uses_pool(cfg):  # the pool's data key is `data`; how many of its pairs are sampled is keyed here
        train_body["pool_sample"] = cfg.data.pool_sample
    ds = deepspeed_fingerprint(cfg)  # a DeepSpeed JSON outside conf/: its content, not only its path
    if ds:
        train_body["deepspeed_content"] = ds
    tkey = digest(train_body)
    if cfg.model.source == ModelSource.hub and cfg.model.revision is None and role is None:
        log.warning("model=%s has no pinned revision: its cache keys cannot see hub updates", cfg.model.name)
    stages.append(StagePlan("train", tkey, _train_summary(cfg), role))
    skey = _select_key(cfg, tkey)
    summary = f"{cfg.eval.select.strategy} checkpoint on {cfg.eval.select.benchmark}"
    stages.append(StagePlan("select", skey, summary, role))
    return stages, skey


def infer_key(cfg: Config, evaluated: dict, benchmark: str) -> str:
    """The key of one benchmark's generations (``benchmark="critique"``: the critique probe's) by the model
    ``evaluated`` (``{"select": key}`` or ``{"base": identity}``)."""
    body: dict[str, Any] = {
        "v": STAGE_VERSIONS["infer"],
        "model": evaluated,
        "inference": _inference_key(cfg, cfg.inference),
        "template": template_key(cfg),
    }
    if benchmark == CRITIQUE_PROBE:
        body["critique"] = as_dict(cfg.eval.critique)
    else:
        body.update(benchmark=benchmark, limit=cfg.eval.limit)
    if benchmark == "mt_bench" and cfg.eval.mt_bench_sampling != MtBenchSampling.cell:
        body["mt_bench_sampling"] = str(cfg.eval.mt_bench_sampling)  # FastChat's temperatures: other answers
    return digest(body)


#: The infer artefact of the critique probe (``eval.critique``), beside the benchmarks'.
CRITIQUE_PROBE = "critique"


def plan_cell(cfg: Config) -> CellPlan:
    """The stages of one cell with their keys. Pure: reads the config, touches no file."""
    stages: list[StagePlan] = []
    if not spec(cfg.objective).trains:
        evaluated: dict[str, Any] = {"base": _model_identity(cfg)}
    else:
        stages, skey = _training_stages(cfg)
        evaluated = {"select": skey}
    from cft_lab.eval import benchmarks

    counts = {b: min(benchmarks.size(b), cfg.eval.limit or benchmarks.size(b)) for b in cfg.eval.benchmarks}
    names = list(cfg.eval.benchmarks) + ([CRITIQUE_PROBE] if cfg.eval.critique.enabled else [])
    for k, name in enumerate(names):
        if k == 0:
            summary = f"{name} | {_infer_summary(cfg, counts)}"
        elif name == CRITIQUE_PROBE:
            summary = f"critique probe on {cfg.eval.critique.benchmark}"
        else:
            summary = f"{name}: {counts[name]} prompts"
        stages.append(StagePlan("infer", infer_key(cfg, evaluated, name), summary, benchmark=name))
    infer = {s.benchmark: s.key for s in stages if s.stage == "infer"}
    gbody: dict[str, Any] = {"v": STAGE_VERSIONS["grade"], "infer": infer, "grading": _grading(cfg)}
    gbody["n_boot"] = cfg.eval.n_boot
    if "mt_bench" in cfg.eval.benchmarks:  # judged: the judge's model, prompts and sampling decide the scores
        from cft_lab.eval.instruct import judge_config, judge_identity

        gbody["judge"] = judge_identity(judge_config(cfg))
    gkey = digest(gbody)
    summary = f"{', '.join(cfg.eval.benchmarks)}" + (f" (limit {cfg.eval.limit})" if cfg.eval.limit else "")
    stages.append(StagePlan("grade", gkey, summary))
    return CellPlan(name=cell_name(cfg), key=gkey, stages=stages)


def _infer_summary(cfg: Config, counts: dict[str, int]) -> str:
    """One line for the dry run: decoding, prompts, and how many generations the mode will ask for."""
    from cft_lab.eval.modes import calls_per_item
    from cft_lab.options import InferenceMode

    inf, sc = cfg.inference, cfg.inference.self_critique
    items = sum(counts.values())
    m = cfg.model
    if m.source == ModelSource.api:
        api = m.api
        host = (api.base_url if api and api.base_url else "api.openai.com").split("//")[-1].split("/")[0]
        backend = f"openai API ({host}{', reasoning model' if api and api.reasoning else ''})"
        how = f"template {m.eval_template} as chat messages"
    else:
        tp = effective_tensor_parallel(m, inf)
        backend = str(inf.backend) + (f" TP={tp}" if tp > 1 and inf.backend == "vllm" else "")
        how = f"template {m.eval_template}" + (
            " through the model's chat template" if m.prompt_format == "chat" else ""
        )
    line = (
        f"{backend} {inf.mode}, T={inf.temperature:g}, n={inf.n}, max {inf.max_new_tokens} new tokens, "
        f"{how}; {items} prompts (" + ", ".join(f"{b} {n}" for b, n in counts.items()) + ")"
    )
    if inf.mode == InferenceMode.direct:
        return line
    lo, hi = calls_per_item(inf.mode, sc)
    how = {
        InferenceMode.single_pass: f"single-pass prompt {sc.single_pass_template}",
        InferenceMode.two_stage: f"solve then critique ({sc.critique_template}), up to {sc.max_rounds} rounds, "
        f"unparsed verdict = {sc.unparsed_verdict}",
        InferenceMode.self_verify: f"{sc.candidates} candidates, each critiqued ({sc.critique_template}), vote among "
        f"those judged right",
    }[inf.mode]
    span = f"{lo * items * inf.n}" if lo == hi else f"{lo * items * inf.n}-{hi * items * inf.n}"
    return f"{line}; {how}: {span} generations"


def stage_label(s: StagePlan) -> str:
    """``stage``, ``infer/<benchmark>``, ``<role>:stage``: how a cell result and W&B name a stage's key."""
    return (f"{s.role}:" if s.role else "") + s.stage + (f"/{s.benchmark}" if s.benchmark else "")


def format_plan(plan: CellPlan) -> str:
    lines = [f"cell {plan.name}  [{plan.key}]"]
    lines += [f"  {s.stage:<7}{s.key}  " + (f"({s.role}) " if s.role else "") + s.summary for s in plan.stages]
    return "\n".join(lines)
