"""Checks that run before any stage of a cell, in the dry run as in the run: what the run would refuse later (after
buying data, after training) is refused here first, naming the option, the file or the variable and what is allowed.

The config itself is already range-checked at compose time (``cft_lab.validate``); these checks need the machine:
files, installed libraries, environment variables, the request cache. :func:`preflight` raises
:class:`PreflightError` (a ``ValueError``) with one line; :func:`teacher_estimate` says what the data stage would buy.
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
    from cft_lab.teachers.estimate import Estimate

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


class PreflightError(ValueError):
    """A cell that cannot run on this machine as configured (one line, naming the option and what is allowed)."""


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


def _check_teacher(cfg: Config) -> None:
    from cft_lab.teachers import replays_released
    from cft_lab.teachers.pricing import PriceTable

    t = cfg.teacher
    if not teacher_work(cfg.objective) or replays_released(cfg):
        return
    if t.kind == TeacherKind.openai:
        if t.api_key_env and not os.environ.get(t.api_key_env):
            raise PreflightError(
                f"teacher={t.name}: environment variable {t.api_key_env} (teacher.api_key_env, the API key) is not "
                f"set; export it, or set teacher.api_key_env=null for a server that checks no key"
            )
        if t.base_url and not t.base_url.startswith(("http://", "https://")):
            raise PreflightError(f"teacher.base_url={t.base_url}: expected an http:// or https:// URL")
        if (t.price_input is None) != (t.price_output is None):
            raise PreflightError(f"teacher={t.name}: set both teacher.price_input and teacher.price_output (USD/1M)")
        priced = PriceTable().known(t.model) or t.price_input is not None
        if t.budget_usd is not None and not priced:
            raise PreflightError(
                f"teacher={t.name}: teacher.budget_usd={t.budget_usd:g} but model {t.model!r} has no price; set "
                f"teacher.price_input and teacher.price_output so the budget can be enforced"
            )
    elif t.kind in (TeacherKind.vllm, TeacherKind.hf):
        _check_model_path(t.model, "teacher.model")
        if t.kind == TeacherKind.vllm and importlib.util.find_spec("vllm") is None:
            raise PreflightError(f"teacher={t.name} (kind vllm) needs vLLM: pip install vllm (or teacher.kind=hf)")


def _check_api_model(cfg: Config) -> None:
    """An API model's endpoint, key and prices (what its first request would otherwise find out)."""
    from cft_lab.eval.api import prices_for

    m = cfg.model
    api = m.api
    assert api is not None  # compose time refuses source=api without an api block
    if api.api_key_env and not os.environ.get(api.api_key_env):
        raise PreflightError(
            f"model={m.name}: environment variable {api.api_key_env} (model.api.api_key_env, the API key) is not "
            f"set; export it, or set model.api.api_key_env=null for a server that checks no key"
        )
    if api.base_url and not api.base_url.startswith(("http://", "https://")):
        raise PreflightError(f"model.api.base_url={api.base_url}: expected an http:// or https:// URL")
    if (api.price_input is None) != (api.price_output is None):
        raise PreflightError(f"model={m.name}: set both model.api.price_input and model.api.price_output (USD/1M)")
    if api.budget_usd is not None and not prices_for(api, m.path).known(m.path):
        raise PreflightError(
            f"model={m.name}: model.api.budget_usd={api.budget_usd:g} but {m.path!r} has no price; set "
            f"model.api.price_input and model.api.price_output so the budget can be enforced"
        )


def _check_judge(cfg: Config) -> None:
    """MT-Bench's judge: an OpenAI-compatible option, its key set, and a server named when it takes no key."""
    from cft_lab.config import ConfigError
    from cft_lab.eval.instruct import judge_config

    try:
        judge = judge_config(cfg)
    except ConfigError as e:
        raise PreflightError(str(e)) from None
    if judge.api_key_env and not os.environ.get(judge.api_key_env):
        raise PreflightError(
            f"eval.judge={judge.name}: environment variable {judge.api_key_env} (the judge's API key) is not set"
        )
    if not judge.api_key_env and not judge.base_url:
        raise PreflightError(
            f"eval.judge={judge.name} takes no API key but names no server (base_url); for the loopback judge run "
            f"through `python -m cft_lab.testing.loopback_judge -- ...` (it sets CFT_LAB_JUDGE_URL)"
        )
    if judge.base_url and not judge.base_url.startswith(("http://", "https://")):
        raise PreflightError(f"eval.judge={judge.name}: base_url {judge.base_url} is not an http(s) URL")


def _check_model_path(path: Optional[str], option: str) -> None:
    """A path-like model name (``/``, ``./``, ``~``) must exist; a hub id (``org/name``) is left to the hub."""
    if path and path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().exists():
        raise PreflightError(f"{option}={path}: no such directory (a local model folder, or a hub id org/name)")


def preflight(cfg: Config) -> None:
    """Refuse, before any data is built or model trained, what this build cannot finish (see the module doc)."""
    from cft_lab.config import data_configs
    from cft_lab.eval import benchmarks
    from cft_lab.eval.generation import check_backend
    from cft_lab.paths import resolve_repo_path

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
    if cfg.model.source == ModelSource.hub:
        _check_model_path(cfg.model.path, "model.path")
    if cfg.model.source == ModelSource.api:
        _check_api_model(cfg)
    if "mt_bench" in cfg.eval.benchmarks:
        _check_judge(cfg)
    if cfg.response_source.kind == ResponseKind.self_generated:
        _check_model_path(cfg.response_source.model, "response_source.model")
    if cfg.train.launcher != Launcher.inprocess and cfg.train.deepspeed:
        if not resolve_repo_path(cfg.train.deepspeed).is_file():
            raise PreflightError(f"train.deepspeed={cfg.train.deepspeed}: no such file")
    trains = spec(cfg.objective).trains
    if cfg.run.stop_after in (Stage.data, Stage.train, Stage.select) and not trains:
        raise PreflightError(
            f"run.stop_after={cfg.run.stop_after}: objective={cfg.objective.name} trains nothing, so it has no "
            f"{cfg.run.stop_after} stage (allowed for it: infer, grade)"
        )
    if not trains:  # a base cell reads no training data and asks no teacher
        return
    for role, part in data_configs(cfg):  # a chain's parent and a mixture's parts each build their own data
        try:
            _check_source(part)
            _check_teacher(part)
        except PreflightError as e:
            raise PreflightError(f"{role}: {e}" if role else str(e)) from None


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
