"""Command line: run the ``openai`` teacher over a JSONL file of tasks (resumable; safe to kill at any moment).

::

    python -m cft_lab.teachers.run --tasks tasks.jsonl --cache teacher.sqlite --out results.jsonl \\
        --model gpt-4o-2024-11-20 --api-key-env OPENAI_API_KEY [--base-url URL] [--budget-usd 50]

``tasks.jsonl``: one task a line, ``{"record_id", "kind": "critique"|"answer", "question", "response", "gold"}``.
``results.jsonl`` (written at the end, atomically): one :class:`TeacherResult` a line, in task order. Every
answer is stored in the cache as it arrives, so a killed run loses at most what was in flight: run the same
command again. The summary (counts, tokens, cost) is printed as JSON on stdout. Exit status 0 when the run
finished (failed rows are recorded, not fatal), 3 on a fatal teacher error (401/403/404, an unreachable server), 2 on
bad arguments or input (one line; ``--debug`` shows the traceback), 4 in batch mode (``--mode batch``) while its
batches are still running (their ids are in the cache: run the same command again to collect them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from cft_lab.prompts.teacher import default_sampling
from cft_lab.teachers.base import TeacherTask, summarize
from cft_lab.teachers.batch import BatchPending
from cft_lab.teachers.openai_teacher import OpenAITeacher
from cft_lab.teachers.pricing import PriceTable
from cft_lab.teachers.retry import TeacherFatalError

log = logging.getLogger("cft_lab.teachers.run")


def read_tasks(path: str | Path) -> list[TeacherTask]:
    tasks = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                tasks.append(
                    TeacherTask(str(d["record_id"]), d["kind"], d["question"], d.get("response"), d.get("gold"))
                )
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path} line {i}: not a task ({type(exc).__name__}: {exc})") from None
    return tasks


def write_results(path: str | Path, results) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _prices(items: list[str]) -> PriceTable:
    overrides = {}
    for item in items:
        model, sep, rest = item.partition("=")
        try:
            inp, out = (float(x) for x in rest.split(","))
        except ValueError:
            raise SystemExit(f"--price expects MODEL=INPUT,OUTPUT (USD per 1M tokens), got {item!r}") from None
        overrides[model] = {"input": inp, "output": out}
    return PriceTable().with_overrides(overrides)


def main(argv: list[str] | None = None) -> int:
    """The CLI, with one-line errors (``--debug`` keeps the traceback); exit status in the module doc."""
    from cft_lab import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m cft_lab.teachers.run", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--out", default=None, help="results JSONL (default: next to the cache)")
    p.add_argument("--model", required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--base-url", default=None)
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="name of the variable holding the key; '' for servers that check none",
    )
    p.add_argument("--prompt-version", default="v1")
    p.add_argument("--max-tokens", type=int, default=None, help="override the pinned max_tokens")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--max-attempts", type=int, default=6)
    p.add_argument("--backoff-initial", type=float, default=1.0)
    p.add_argument("--backoff-max", type=float, default=60.0)
    p.add_argument("--budget-usd", type=float, default=None)
    p.add_argument("--price", action="append", default=[], help="MODEL=INPUT,OUTPUT USD/1M tokens (repeatable)")
    p.add_argument("--retry-failed", action="store_true", help="re-ask stored failures (only those)")
    p.add_argument("--fsync", action="store_true", help="fsync every stored answer (survives power loss)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--mode", choices=("sync", "batch"), default="sync", help="chat completions, or the Batch API")
    p.add_argument("--batch-poll", type=float, default=30.0, help="batch mode: seconds between polls")
    p.add_argument("--batch-wait", type=float, default=86400.0, help="batch mode: seconds to wait, then exit 4")
    p.add_argument("--patience", type=float, default=900.0, help="seconds a request may stay rate-limited (429)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    a = p.parse_args(argv)
    logging.basicConfig(
        level=a.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sampling = default_sampling(a.prompt_version)
    if a.max_tokens is not None:
        sampling["max_tokens"] = a.max_tokens
    try:
        teacher = OpenAITeacher(
            a.name or a.model,
            a.model,
            cache_path=a.cache,
            base_url=a.base_url,
            api_key_env=a.api_key_env or None,
            prompt_version=a.prompt_version,
            sampling=sampling,
            concurrency=a.concurrency,
            timeout_s=a.timeout,
            max_attempts=a.max_attempts,
            backoff_initial_s=a.backoff_initial,
            backoff_max_s=a.backoff_max,
            budget_usd=a.budget_usd,
            prices=_prices(a.price),
            fsync=a.fsync,
            mode=a.mode,
            batch_poll_s=a.batch_poll,
            batch_wait_s=a.batch_wait,
            rate_limit_patience_s=a.patience,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tasks = read_tasks(a.tasks)
    try:
        results = teacher.run(tasks, retry_failed=a.retry_failed, progress=not a.no_progress)
    except TeacherFatalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except BatchPending as exc:  # batch mode: submitted and persisted; the same command collects the results
        print(f"pending: {exc}", file=sys.stderr)
        return 4
    write_results(a.out or Path(a.cache).with_suffix(".results.jsonl"), results)
    print(json.dumps({"summary": summarize(results), "run": teacher.last_run, "teacher": teacher.describe()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
