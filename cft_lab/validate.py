"""Value checks of a composed config: every number a stage would choke on (or silently misuse) is refused at compose
time, before any data is bought or model trained, naming the option, the value and what is allowed.

The schema (``cft_lab.config``) already refuses a value of the wrong type or outside an option kind's choices; these
are the range checks a type cannot say (``train.learning_rate=-1``, ``eval.limit=0``, ``inference.n=0``). They run in
:func:`cft_lab.config.check_combination`, so a dry run refuses exactly what the run would refuse.

>>> problems_of([("train.learning_rate", -1.0, "> 0", lambda v: v > 0)])
['train.learning_rate=-1.0 (allowed: > 0)']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cft_lab.config import Config, InferenceConfig

Rule = tuple[str, Any, str, Callable[[Any], bool]]

_pos = ("> 0", lambda v: v > 0)
_ge1 = ("an integer >= 1", lambda v: v >= 1)
_ge0 = (">= 0", lambda v: v >= 0)
_unit = ("between 0 and 1", lambda v: 0 <= v <= 1)
_top_p = ("in (0, 1]", lambda v: 0 < v <= 1)
_opt_ge1 = ("a positive integer, or null for all", lambda v: v is None or v >= 1)


def problems_of(rules: list[Rule]) -> list[str]:
    """``option=value (allowed: ...)`` for every rule its value breaks."""
    return [f"{name}={value!r} (allowed: {allowed})" for name, value, allowed, ok in rules if not ok(value)]


def inference_rules(inf: InferenceConfig) -> list[Rule]:
    """The sampling and engine values of an ``inference`` option (also checked by
    :func:`cft_lab.eval.generation.check_backend` for a generator built outside a composed config)."""
    return [
        ("inference.temperature", inf.temperature, ">= 0 (0 = greedy)", lambda v: v >= 0),
        ("inference.top_p", inf.top_p, *_top_p),
        ("inference.n", inf.n, *_ge1),
        ("inference.max_new_tokens", inf.max_new_tokens, *_ge1),
        ("inference.batch_size", inf.batch_size, *_ge1),
        ("inference.tensor_parallel_size", inf.tensor_parallel_size, *_ge1),
        ("inference.gpu_memory_utilization", inf.gpu_memory_utilization, "in (0, 1]", lambda v: 0 < v <= 1),
    ]


def _rules(cfg: Config) -> list[Rule]:
    t, inf, ev, te, rs = cfg.train, cfg.inference, cfg.eval, cfg.teacher, cfg.response_source
    rules: list[Rule] = [
        ("train.learning_rate", t.learning_rate, *_pos),
        ("train.warmup_ratio", t.warmup_ratio, "in [0, 1)", lambda v: 0 <= v < 1),
        ("train.weight_decay", t.weight_decay, *_ge0),
        ("train.max_grad_norm", t.max_grad_norm, *_ge0),
        ("train.max_steps", t.max_steps, "-1 (use num_train_epochs) or a positive integer", lambda v: v == -1 or v > 0),
        ("train.per_device_train_batch_size", t.per_device_train_batch_size, *_ge1),
        ("train.gradient_accumulation_steps", t.gradient_accumulation_steps, *_ge1),
        ("train.num_devices", t.num_devices, *_ge1),
        ("train.cutoff_len", t.cutoff_len, "an integer >= 2 (prompt + completion tokens)", lambda v: v >= 2),
        ("train.num_checkpoints", t.num_checkpoints, *_ge1),
        ("train.save_steps", t.save_steps, *_opt_ge1),
        ("train.full_state_steps", t.full_state_steps, *_opt_ge1),
        ("train.stop_grace_s", t.stop_grace_s, *_pos),
        *inference_rules(inf),
        ("eval.limit", ev.limit, *_opt_ge1),
        ("eval.select.limit", ev.select.limit, *_opt_ge1),
        ("eval.select.devices", ev.select.devices, *_opt_ge1),
        ("eval.grade_timeout", ev.grade_timeout, *_pos),
        ("eval.grade_workers", ev.grade_workers, *_opt_ge1),
        ("eval.n_boot", ev.n_boot, *_ge1),
        ("eval.critique.limit", ev.critique.limit, *_opt_ge1),
        ("eval.critique.error_rate", ev.critique.error_rate, *_unit),
        ("teacher.temperature", te.temperature, "between 0 and 2", lambda v: 0 <= v <= 2),
        ("teacher.top_p", te.top_p, *_top_p),
        ("teacher.max_tokens", te.max_tokens, *_ge1),
        ("teacher.concurrency", te.concurrency, *_ge1),
        ("teacher.timeout_s", te.timeout_s, *_pos),
        ("teacher.max_attempts", te.max_attempts, *_ge1),
        ("teacher.rate_limit_patience_s", te.rate_limit_patience_s, *_pos),
        ("teacher.budget_usd", te.budget_usd, "> 0, or null for no cap", lambda v: v is None or v > 0),
        ("teacher.max_failed", te.max_failed, *_ge0),
        ("teacher.batch_poll_s", te.batch_poll_s, *_pos),
        ("teacher.batch_wait_s", te.batch_wait_s, *_ge0),
        ("teacher.expected_completion_tokens", te.expected_completion_tokens, *_ge1),
        *[(f"teacher.{k}", getattr(te, k), *_unit) for k in _RATES],
        ("response_source.error_rate", rs.error_rate, *_unit),
        ("response_source.temperature", rs.temperature, ">= 0 (0 = greedy)", lambda v: v >= 0),
        ("response_source.top_p", rs.top_p, *_top_p),
        ("response_source.n", rs.n, *_ge1),
        ("response_source.max_new_tokens", rs.max_new_tokens, *_opt_ge1),
    ]
    if t.max_steps == -1:
        rules.append(("train.num_train_epochs", t.num_train_epochs, "> 0 (or train.max_steps > 0)", lambda v: v > 0))
    if t.lora is not None:
        rules.append(("train.lora.r", t.lora.r, *_ge1))
    tb, src = cfg.data.testbed, cfg.data.source
    if tb is not None:
        rules += [
            ("data.testbed.n_train", tb.n_train, *_ge1),
            ("data.testbed.min_steps", tb.min_steps, *_ge1),
            ("data.testbed.max_steps", tb.max_steps, f">= min_steps ({tb.min_steps})", lambda v: v >= tb.min_steps),
        ]
    if src is not None:
        rules += [
            ("data.source.on_error", src.on_error, "raise or skip", lambda v: v in ("raise", "skip")),
            ("data.source.limit", src.limit, *_opt_ge1),
            ("data.source.sample", src.sample, *_opt_ge1),
        ]
    return rules


_RATES = ("miss_rate", "false_alarm_rate", "vague_rate", "solution_error_rate")


def check_names(cfg: Config) -> None:
    """What a name in the config must point at: the benchmarks exist, a source names its file."""
    from cft_lab.config import ConfigError
    from cft_lab.eval.benchmarks import REGISTRY
    from cft_lab.options import DataKind

    data = cfg.data
    if data.kind == DataKind.source and data.source is not None and not data.source.path:
        raise ConfigError(
            f"data={data.name} needs data.source.path=FILE: a .jsonl, .json or .parquet file (the released "
            f"WebInstruct-CFT schema, instruction/input/output, unless data.source.kind says otherwise)"
        )
    for option, names in (
        ("eval.benchmarks", cfg.eval.benchmarks),
        ("eval.select.benchmark", [cfg.eval.select.benchmark]),
    ):
        unknown = [b for b in names if b not in REGISTRY]
        if unknown:
            raise ConfigError(f"{option}: unknown benchmark {unknown[0]!r}; known: {', '.join(sorted(REGISTRY))}")


def check_values(cfg: Config) -> None:
    """Raise :class:`cft_lab.config.ConfigError` naming every out-of-range value of ``cfg`` (all at once)."""
    from cft_lab.config import ConfigError

    check_names(cfg)
    problems = problems_of(_rules(cfg))
    if problems:
        raise ConfigError("invalid value" + ("s" if len(problems) > 1 else "") + ": " + "; ".join(problems))
