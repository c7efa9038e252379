"""Checks that run before any stage of a cell, in the dry run as in the run: what the run would refuse later (after
buying data, after training, inside a GPU job) is refused here first, naming the option, the file or the variable and
what is allowed.

The config itself is already range-checked at compose time (``cft_lab.validate``); these checks need the machine:
files, installed libraries, environment variables, devices, free disk, the request cache and the run store (a stage
whose artefact is already built needs nothing more: a GPU job after ``make prepare`` needs no API key and no hub).
:func:`preflight` raises :class:`PreflightError` (a ``ValueError``) listing every problem on one line;
:func:`teacher_estimate` says what the data stage would buy.

Devices: a dry run (and the SLURM launcher, before it submits) checks what a cell asks for against a node of
``cluster`` (``cluster.gpus_per_node``); the run checks it against the devices it finds.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cft_lab.options import DataKind, Launcher, ModelSource, ResponseKind, SourceKind, Stage, TeacherKind
from cft_lab.train.objectives import spec, teacher_work

if TYPE_CHECKING:
    from cft_lab.config import Config
    from cft_lab.pipeline.store import Store
    from cft_lab.teachers.estimate import Estimate

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


class PreflightError(ValueError):
    """A cell that cannot run on this machine as configured: one line naming each option and what is allowed
    (``problems`` holds them one by one)."""

    def __init__(self, message: str, problems: Optional[list[str]] = None):
        super().__init__(message)
        self.problems = problems or [message]


def check_local_file(path: str, option: str) -> Path:
    """A readable, non-empty data file of a supported type at ``path`` (named by ``option`` in the error)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise PreflightError(f"{option}={path} is a directory; give a {'/'.join(LOCAL_SUFFIXES)} file")
    if not p.exists():
        raise PreflightError(f"{option}={path}: no such file")
    if p.suffix not in LOCAL_SUFFIXES:
        raise PreflightError(f"{option}={path}: unknown file type {p.suffix!r}; use {', '.join(LOCAL_SUFFIXES)}")
    if p.stat().st_size == 0:
        raise PreflightError(f"{option}={path}: the file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise PreflightError(f"{option}={path}: not readable")
    return p


def _check_source(cfg: Config) -> None:
    from cft_lab.config import as_dict
    from cft_lab.data.sources import SourceSpec, check_pinned

    src = cfg.data.source
    if cfg.data.kind != DataKind.source or src is None:
        return
    try:
        spec = SourceSpec(**as_dict(src))
    except ValueError as e:
        raise PreflightError(f"data={cfg.data.name}: {e}") from None
    if src.kind != SourceKind.hub:
        check_local_file(src.path, "data.source.path")
        from dataclasses import replace

        from cft_lab.data.sources import load_source

        try:  # the first row through the schema (and field map): a wrong column is named now, not after buying
            load_source(replace(spec, limit=1, sample=None, on_error="raise"))
        except ValueError as e:
            raise PreflightError(f"data={cfg.data.name}: {e}") from None
        return
    try:
        check_pinned(spec)
    except ValueError as e:
        raise PreflightError(f"data={cfg.data.name}: {e}") from None


def _check_endpoint(
    who: str,
    prefix: str,
    model: Optional[str],
    *,
    api_key_env: Optional[str],
    base_url: Optional[str],
    price_input: Optional[float] = None,
    price_output: Optional[float] = None,
    budget_usd: Optional[float] = None,
    no_key: str,
) -> None:
    """What every OpenAI-compatible endpoint's first request would otherwise find out (the teacher, an API model,
    MT-Bench's judge): its key variable is set, its base_url is http(s), its prices are set both or neither, and a
    budget has a price to be enforced with. ``who`` names the option (``teacher=gpt4o``), ``prefix`` its fields
    (``teacher.``; empty for the judge, whose fields live in its own option file), ``no_key`` what to do when the
    endpoint takes no key."""
    from cft_lab.teachers.pricing import configured

    if api_key_env and not os.environ.get(api_key_env):
        raise PreflightError(
            f"{who}: environment variable {api_key_env} ({prefix}api_key_env, the API key) is not set; export it, "
            f"or {no_key}"
        )
    if base_url and not base_url.startswith(("http://", "https://")):
        raise PreflightError(f"{who}: {prefix}base_url={base_url}: expected an http:// or https:// URL")
    try:
        priced = configured(model, price_input, price_output, option=who, prefix=prefix).known(model)
    except ValueError as e:
        raise PreflightError(str(e)) from None
    if budget_usd is not None and not priced:
        raise PreflightError(
            f"{who}: {prefix}budget_usd={budget_usd:g} but model {model!r} has no price; set {prefix}price_input and "
            f"{prefix}price_output so the budget can be enforced"
        )


def _check_teacher(cfg: Config) -> None:
    from cft_lab.teachers import replays_released

    t = cfg.teacher
    if not teacher_work(cfg.objective) or replays_released(cfg):
        return
    if t.kind == TeacherKind.openai:
        _check_endpoint(
            f"teacher={t.name}", "teacher.", t.model, api_key_env=t.api_key_env, base_url=t.base_url,
            price_input=t.price_input, price_output=t.price_output, budget_usd=t.budget_usd,
            no_key="set teacher.api_key_env=null for a server that checks no key",
        )  # fmt: skip
    elif t.kind in (TeacherKind.vllm, TeacherKind.hf):
        _check_model_path(t.model, "teacher.model")
        if t.kind == TeacherKind.vllm and importlib.util.find_spec("vllm") is None:
            raise PreflightError(f"teacher={t.name} (kind vllm) needs vLLM: pip install vllm (or teacher.kind=hf)")


def _check_api_model(cfg: Config) -> None:
    """An API model's endpoint, key and prices (what its first request would otherwise find out)."""
    m = cfg.model
    api = m.api
    assert api is not None  # compose time refuses source=api without an api block
    _check_endpoint(
        f"model={m.name}", "model.api.", m.path, api_key_env=api.api_key_env, base_url=api.base_url,
        price_input=api.price_input, price_output=api.price_output, budget_usd=api.budget_usd,
        no_key="set model.api.api_key_env=null for a server that checks no key",
    )  # fmt: skip


def _check_judge(cfg: Config) -> None:
    """MT-Bench's judge: an OpenAI-compatible option, its key set, its prices whole, and a server named when it takes
    no key."""
    from cft_lab.config import ConfigError
    from cft_lab.eval.instruct import judge_config

    try:
        judge = judge_config(cfg)
    except ConfigError as e:
        raise PreflightError(str(e)) from None
    who = f"eval.judge={judge.name}"
    _check_endpoint(
        who, "", judge.model, api_key_env=judge.api_key_env, base_url=judge.base_url,
        price_input=judge.price_input, price_output=judge.price_output, budget_usd=judge.budget_usd,
        no_key=f"set api_key_env: null in conf/teacher/{judge.name}.yaml for a server that checks no key",
    )  # fmt: skip
    if not judge.api_key_env and not judge.base_url:
        raise PreflightError(
            f"{who} takes no API key but names no server (base_url); for the loopback judge run "
            f"through `python -m cft_lab.testing.loopback_judge -- ...` (it sets CFT_LAB_JUDGE_URL)"
        )


def _check_model_path(path: Optional[str], option: str) -> None:
    """A path-like model name (``/``, ``./``, ``~``) must exist; a hub id (``org/name``) is left to the hub."""
    if path and path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().exists():
        raise PreflightError(f"{option}={path}: no such directory (a local model folder, or a hub id org/name)")


def preflight(cfg: Config, store: Optional[Store] = None, *, dry_run: bool = False) -> None:
    """Refuse, before any data is built or model trained, what this build cannot finish (see the module doc); every
    problem found is named, not only the first."""
    found = problems(cfg, store, dry_run=dry_run)
    if found:
        raise PreflightError("; ".join(found), found)


def problems(cfg: Config, store: Optional[Store] = None, *, dry_run: bool = False) -> list[str]:
    """Every reason the cell cannot run (empty: it can). ``store``: stages already built there are not checked
    again; ``dry_run``: devices are checked against ``cluster`` instead of this machine."""
    from cft_lab.pipeline.plan import plan_cell

    plan = plan_cell(cfg)

    def done(stage: str, role: Optional[str] = None) -> bool:
        if store is None:
            return False
        try:
            return store.done(stage, plan.key_of(stage, role))
        except KeyError:
            return False

    trains = spec(cfg.objective).trains
    stop = cfg.run.stop_after
    to_train = trains and not done("train") and stop != Stage.data
    to_generate = stop not in (Stage.data, Stage.train) and (
        store is None or any(not store.done("infer", k) for k in plan.infer_keys().values())
    )
    found: list[str] = []
    for check in (
        lambda: _check_eval(cfg),
        lambda: _check_model(cfg, (to_train or to_generate) and not dry_run),
        lambda: _check_packages(cfg, to_train, to_generate),
        lambda: _check_devices(cfg, to_train, to_generate, dry_run),
    ):
        try:
            check()
        except (PreflightError, ValueError, ImportError, KeyError) as e:
            found += e.problems if isinstance(e, PreflightError) else [str(e).strip("'\"")]
    if cfg.run.stop_after in (Stage.data, Stage.train, Stage.select) and not trains:
        found.append(
            f"run.stop_after={cfg.run.stop_after}: objective={cfg.objective.name} trains nothing, so it has no "
            f"{cfg.run.stop_after} stage (allowed for it: infer, grade)"
        )
    if trains:  # a base cell reads no training data and asks no teacher
        for role, part in data_configs_of(cfg):  # a chain's parent and a mixture's parts each build their own data
            if done("data", role):
                continue  # built (make prepare): nothing to read or buy
            for part_check in (_check_source, _check_teacher):
                try:
                    part_check(part)
                except PreflightError as e:
                    found.append(f"{role}: {e}" if role else str(e))
    if not found and store is not None:
        try:
            _check_disk(cfg, plan, store)
        except PreflightError as e:
            found.append(str(e))
    return found


def data_configs_of(cfg: Config):
    from cft_lab.config import data_configs

    return data_configs(cfg)


def _check_eval(cfg: Config) -> None:
    from cft_lab.eval import benchmarks
    from cft_lab.eval.generation import check_backend

    check_backend(cfg.inference, engine=cfg.model.source != ModelSource.api)  # an API model generates remotely
    for b in [*cfg.eval.benchmarks, cfg.eval.select.benchmark]:
        benchmarks.get(b)  # raises with the known names
    if cfg.eval.critique.enabled and cfg.eval.critique.benchmark not in benchmarks.TESTBED_SPECS:
        raise PreflightError(
            f"eval.critique.benchmark={cfg.eval.critique.benchmark}: the critique probe needs a testbed "
            f"benchmark ({', '.join(benchmarks.TESTBED_SPECS)}), whose responses' correctness is known"
        )
    if "math_verify" in cfg.eval.modes and importlib.util.find_spec("math_verify") is None:
        raise PreflightError(
            "eval.modes includes math_verify but the math-verify package is not installed: "
            "pip install 'math-verify[antlr4_9_3]' or drop the mode (eval.modes=[paper,strict])"
        )
    if cfg.model.source == ModelSource.api:
        _check_api_model(cfg)
    if "mt_bench" in cfg.eval.benchmarks:
        _check_judge(cfg)


def _is_local(path: Optional[str]) -> bool:
    return bool(path) and Path(str(path)).expanduser().exists()


def _check_model(cfg: Config, loads: bool) -> None:
    """Local folders exist; a hub model is pinned to a revision (or explicitly allowed not to be); a run that will
    load it (``loads``) without the hub (``HF_HUB_OFFLINE=1``) finds it in its local cache (``make prepare`` fills
    it; a dry run does not ask: it plans what prepare will fetch)."""
    m = cfg.model
    found = []
    for check in (
        lambda: _check_model_path(m.path, "model.path") if m.source == ModelSource.hub else None,
        lambda: (
            _check_model_path(cfg.response_source.model, "response_source.model")
            if cfg.response_source.kind == ResponseKind.self_generated
            else None
        ),
    ):
        try:
            check()
        except PreflightError as e:
            found.append(str(e))
    if m.source == ModelSource.testbed:  # the shipped (or `make bases`-built) folder the run will load
        from cft_lab.train.modeling import model_path

        try:
            model_path(m)
        except FileNotFoundError as e:
            found.append(str(e))
    hub = m.source == ModelSource.hub and not _is_local(m.path)
    if hub and m.revision is None and not m.allow_unpinned:
        found.append(
            f"model={m.name}: hub model {m.path} has no pinned revision (its weights could change under the same "
            f"cache key); set model.revision=<commit sha> (the hub's commit history of {m.path}, or "
            f"huggingface_hub.HfApi().model_info('{m.path}').sha), or model.allow_unpinned=true to load today's"
        )
    elif hub and loads and os.environ.get("HF_HUB_OFFLINE") == "1":
        missing = _missing_from_cache(m.path, m.revision)
        if missing:
            found.append(
                f"model={m.name}: {m.path}@{m.revision or 'main'} is not in the local Hugging Face cache and the hub "
                f"is offline (HF_HUB_OFFLINE=1): fill the cache first (make prepare TABLE=<table>, where the hub is "
                f"reachable) ({missing})"
            )
    if found:
        raise PreflightError("; ".join(found), found)


def _missing_from_cache(repo: str, revision: Optional[str]) -> Optional[str]:
    """None when ``repo@revision`` is in the local cache, else why not."""
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo, revision=revision, local_files_only=True, allow_patterns=["config.json"])
    except Exception as e:  # LocalEntryNotFoundError, a revision never fetched, ...
        return f"{type(e).__name__}"
    return None


#: model.attn_implementation values that need the flash-attn package.
FLASH = ("flash_attention_2", "flash_attention_3")


def _check_packages(cfg: Config, to_train: bool, to_generate: bool) -> None:
    """The libraries the cell's remaining stages import on its devices: deepspeed, flash-attn, liger-kernel (vLLM is
    checked with the inference settings)."""
    from cft_lab.paths import resolve_repo_path

    t, found = cfg.train, []
    uses_hf = to_train or (to_generate and cfg.inference.backend == "hf")
    if to_train and t.launcher != Launcher.inprocess and t.deepspeed:
        if not resolve_repo_path(t.deepspeed).is_file():
            found.append(f"train.deepspeed={t.deepspeed}: no such file")
        if importlib.util.find_spec("deepspeed") is None:
            found.append(
                f"train.deepspeed={t.deepspeed} needs DeepSpeed, which is not installed: `make install-gpu` "
                f"(or pip install deepspeed), or train.deepspeed=null"
            )
    if t.launcher == Launcher.deepspeed and to_train and importlib.util.find_spec("deepspeed") is None:
        found.append("train.launcher=deepspeed needs DeepSpeed, which is not installed: `make install-gpu`")
    if uses_hf and cfg.model.attn_implementation in FLASH and importlib.util.find_spec("flash_attn") is None:
        found.append(
            f"model.attn_implementation={cfg.model.attn_implementation} needs flash-attn, which is not installed: "
            f"`make install-gpu` on a CUDA machine, or model.attn_implementation=sdpa"
        )
    if to_train and t.use_liger_kernel and importlib.util.find_spec("liger_kernel") is None:
        found.append("train.use_liger_kernel=true needs Liger: pip install liger-kernel (GPU), or set it false")
    found = list(dict.fromkeys(found))
    if found:
        raise PreflightError("; ".join(found), found)


def _check_devices(cfg: Config, to_train: bool, to_generate: bool, dry_run: bool) -> None:
    """GPUs asked for versus a node of ``cluster`` (dry run, launcher) or the devices found here (run)."""
    from cft_lab.config import effective_tensor_parallel

    t, inf = cfg.train, cfg.inference
    tp = effective_tensor_parallel(cfg.model, inf) if inf.backend == "vllm" else 1
    slots = cfg.eval.select.devices
    if dry_run:
        have, where = cfg.cluster.gpus_per_node, f"a node of cluster={cfg.cluster.name} has"
    else:
        from cft_lab.eval.select_pool import visible_gpus

        gpus = visible_gpus()
        have, where = len(gpus), "this job sees"
        if not gpus:  # CPU: processes stand in for devices (gloo training, vLLM-CPU, select slots)
            have, where = os.cpu_count() or 1, "no GPU here; CPU cores for stand-in processes:"
    found = []
    if to_train and t.num_devices > have:
        found.append(
            f"train.num_devices={t.num_devices} but {where} {have}; a cell trains on one node (train.num_nodes=1): "
            f"set train.num_devices<={have} and keep the global batch with per_device_train_batch_size x "
            f"gradient_accumulation_steps"
        )
    if to_generate and tp > have:
        found.append(f"inference.tensor_parallel_size={tp} but {where} {have}")
    if slots is not None and slots * tp > have and spec(cfg.objective).trains:
        found.append(f"eval.select.devices={slots} x tensor_parallel_size {tp} = {slots * tp} but {where} {have}")
    if found:
        raise PreflightError("; ".join(found), found)


def _check_disk(cfg: Config, plan, store: Store) -> None:
    """The cell's peak disk (its estimate: checkpoints while training) must fit in the store's free space."""
    from cft_lab.pipeline.estimate import estimate_cell, free_gb

    est = estimate_cell(cfg, plan, store)
    need = est.disk_peak_gb if est.gpu_hours.get("train") else 0.0
    if not need:
        return
    free = free_gb(store.root)
    if need > free:
        raise PreflightError(
            f"the cell needs ~{need:.0f} GB of disk while training (its checkpoints; estimate: "
            f"{'; '.join(est.assumptions)}) but {store.root} has {free:.0f} GB free: free space, point paths.outputs "
            f"elsewhere, or save fewer checkpoints (train.save_steps / train.num_checkpoints)"
        )


class EstimateUnavailable(Exception):
    """A hub source that cannot be read from here (offline, no access): the dry run says so and cannot estimate; the
    run estimates again from the records it loads, before its first request."""


def teacher_estimates(cfg: Config, cache_dir: Path) -> list[tuple[Optional[str], Estimate]]:
    """What each of the cell's data stages would buy (a chain's parent, a mixture's parts), with its stage role, or
    what an API model's evaluation would buy (role "infer"), and MT-Bench's judge (role "grade") unless the cell is
    finished; empty when nothing costs anything. Each is refused when over its budget."""
    judged: list[tuple[Optional[str], Estimate]] = []
    if "mt_bench" in cfg.eval.benchmarks:
        from cft_lab.eval.instruct import judge_estimate
        from cft_lab.pipeline.plan import plan_cell
        from cft_lab.pipeline.store import Store

        done = Store(Path(cache_dir).parent).cell_result(plan_cell(cfg).key) or {}
        if done.get("status") != "ok":
            judged.append(("grade", judge_estimate(cfg, cache_dir)))
    try:
        return _stage_estimates(cfg, cache_dir) + judged
    except EstimateUnavailable as e:  # the judge's estimate is still said
        raise EstimateUnavailable("; ".join([str(e), *(f"({role}) {est.line()}" for role, est in judged)])) from None


def _stage_estimates(cfg: Config, cache_dir: Path) -> list[tuple[Optional[str], Estimate]]:
    from cft_lab.config import data_configs

    if cfg.model.source == ModelSource.api:  # an API model's evaluation is bought too
        from cft_lab.eval import api

        return [("infer", api.estimate(cfg, cache_dir))]
    if not spec(cfg.objective).trains:
        return []
    out = []
    for role, part in data_configs(cfg):
        try:
            est = teacher_estimate(part, cache_dir)
        except EstimateUnavailable as e:
            raise EstimateUnavailable(f"{role}: {e}" if role else str(e)) from None
        except ValueError as e:
            raise ValueError(f"{role}: {e}" if role else str(e)) from None
        if est is not None:
            out.append((role, est))
    return out


def teacher_estimate(cfg: Config, cache_dir: Path) -> Optional[Estimate]:
    """What one data stage would buy (None when its teacher costs nothing), refused when over budget. ``cfg`` builds
    one data artefact (no mixture, no chain: see :func:`teacher_estimates`)."""
    from cft_lab.data.stage import base_records
    from cft_lab.teachers.estimate import buys, check_estimate, estimate

    if not buys(cfg):
        return None
    try:
        records, _ = base_records(cfg)
    except (ConnectionError, OSError) as e:
        if cfg.data.source is None or cfg.data.source.kind != SourceKind.hub:
            raise
        n = cfg.data.source.sample or cfg.data.source.limit
        raise EstimateUnavailable(
            f"cannot estimate here: {type(e).__name__}: {e}"
            + (f" ({n} records from data.source.{'sample' if cfg.data.source.sample else 'limit'})" if n else "")
        ) from None
    est = estimate(cfg, records, cache_dir)
    if cfg.response_source.kind == ResponseKind.self_generated:
        est.note = (est.note + "; " if est.note else "") + "prompts sized with the dataset's own responses"
    check_estimate(cfg, est)
    return est
