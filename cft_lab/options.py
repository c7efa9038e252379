"""Option kinds: the closed sets of values a config field may take, as ``StrEnum`` (as OLMo-core does).

A field typed with one of these fails at compose time, naming the file, the key and the allowed values, so no code
below the entrypoint checks these values by hand. Member names equal their values, so YAML and the command line
spell them as written here (``inference.backend=vllm``), and a member compares equal to its string
(``Backend.vllm == "vllm"``). Cache keys hash the strings (``cft_lab.config.as_dict``), so turning a ``str`` field into
one of these keeps every key.
"""

from __future__ import annotations

from enum import Enum

try:  # Python 3.11+
    from enum import StrEnum
except ImportError:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):  # type: ignore[no-redef]
        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)


# ---- option kinds: member name == value, so YAML and the command line spell them as written here ------------------


class ModelSource(StrEnum):
    hub = "hub"  # a hub id, loaded with transformers / vLLM
    testbed = "testbed"  # a tiny base shipped in cft_lab/assets/testbed/models (built by `make bases`)
    api = "api"  # a model behind an OpenAI-compatible API (GPT-4o, o1-mini, a served model): evaluated only


class PromptFormat(StrEnum):
    """How an evaluation prompt reaches a local model (cft_lab.prompts.EVAL_MESSAGES)."""

    harness = "harness"  # the pinned text of the eval template (the paper's harness: ChatML built by hand)
    chat = "chat"  # the same messages through the tokenizer's own chat template (instruct models; its hash recorded)


class DType(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class DataKind(StrEnum):
    testbed = "testbed"  # the embedded synthetic world
    source = "source"  # a released, local or hub dataset (cft_lab.data.sources)


class SourceKind(StrEnum):
    webinstruct_cft = "webinstruct_cft"
    webinstruct_raw = "webinstruct_raw"
    metamathqa = "metamathqa"
    numinamath_cot = "numinamath_cot"
    chat_messages = "chat_messages"  # {"messages": [{role, content}, ...]}: AceMath's SFT data and most chat SFT sets
    local = "local"
    hub = "hub"


class ResponseKind(StrEnum):
    reference = "reference"  # the dataset's own noisy responses
    self_generated = "self_generated"  # sampled from a model (Table 6)


class TeacherKind(StrEnum):
    none = "none"
    testbed = "testbed"  # the testbed's rule teacher
    replay = "replay"  # critiques shipped with a released dataset
    openai = "openai"  # any OpenAI-compatible server
    vllm = "vllm"  # a local model through the generation backend
    hf = "hf"


class CritiqueStyle(StrEnum):
    """How the testbed's rule teacher words a critique (cft_lab.testbed.teacher.STYLES); the facts are the same."""

    checklist = "checklist"  # one "Step k: a op b = r is correct." line per step (the first release)
    review = "review"  # GPT-4o-like prose: an opening, a sentence per step, the kind of error (testbed.review)


class TeacherMode(StrEnum):
    """How an ``openai`` teacher sends its requests (not part of any key: the same request, the same answer)."""

    sync = "sync"  # chat completions, adaptive concurrency
    batch = "batch"  # the Batch API: one JSONL upload, polled, half the price (cft_lab.teachers.batch)


class Stage(StrEnum):
    """The stages of a cell, in order (``run.stop_after``)."""

    data = "data"
    train = "train"
    select = "select"
    infer = "infer"
    grade = "grade"


class Truncation(StrEnum):
    paper = "paper"  # LLaMA-Factory's infer_seqlen (docs/protocol.md §3.1)
    drop = "drop"  # drop pairs over the cutoff


class Launcher(StrEnum):
    inprocess = "inprocess"
    torchrun = "torchrun"
    deepspeed = "deepspeed"


class LossNormalization(StrEnum):
    """How the training loss is averaged over loss tokens when a step spans devices (``train.loss_normalization``).

    Both weigh every loss token of a device's micro-batches alike across gradient accumulation; they differ across
    devices when devices hold different numbers of loss tokens (SFT and CFT arms differ a lot in that)."""

    global_batch = "global_batch"  # sum over every loss token of the global batch / their number (transformers >= 4.56)
    per_device = "per_device"  # each device's tokens / its own count, then the mean over devices: LLaMA-Factory 0.9.2
    # with transformers 4.46 (the paper's runs, docs/protocol.md §3.6), before `average_tokens_across_devices`


class KeepCheckpoints(StrEnum):
    """Which checkpoints a train artefact keeps once its selection is done (``train.keep_checkpoints``)."""

    selected_last = "selected_last"  # the selected one and the last one (the table's and the "last" comparison)
    all = "all"  # every checkpoint (another selection rule can run later on the same training)


class SelectStrategy(StrEnum):
    best = "best"  # the strictly best validation score, first on ties (docs/protocol.md §3.5)
    last = "last"  # the last checkpoint, no scoring


class InferenceMode(StrEnum):
    """How an answer is produced at test time (docs/protocol.md §4.7, §10; cft_lab.eval.modes)."""

    direct = "direct"  # one generation, the harness prompt (the paper's main results)
    single_pass = "single_pass"  # one generation: solve, critique, correct if wrong; the last box is the answer
    two_stage = "two_stage"  # solve, critique in a separate call, re-solve while judged wrong (up to max_rounds)
    self_verify = "self_verify"  # sample candidates, critique each, vote among those judged right (beyond the paper)


class VerdictRule(StrEnum):
    """What an unparsed self-critique verdict counts as (the paper's loop exits only on "Correct")."""

    wrong = "wrong"
    right = "right"


class Backend(StrEnum):
    hf = "hf"
    vllm = "vllm"


class GradingMode(StrEnum):
    paper = "paper"  # the CFT harness's grader, leniencies included
    strict = "strict"  # upstream Qwen2.5-Math, gold mangling fixed
    math_verify = "math_verify"


class MtBenchSampling(StrEnum):
    cell = "cell"  # the cell's own inference settings for every question (greedy in the shipped configs)
    fastchat = "fastchat"  # FastChat's per-category temperatures (gen_model_answer.py's temperature_config)


class LoggerName(StrEnum):
    none = "none"
    wandb = "wandb"


class LoggerMode(StrEnum):
    offline = "offline"
    online = "online"
    disabled = "disabled"
