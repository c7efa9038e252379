"""``python -m cft_lab prepare TABLE [overrides] [--no-models]`` (``make prepare TABLE=table2``): everything a table
needs that a GPU is not needed for, done on a CPU machine before any GPU job is submitted, so the GPU jobs run
offline and meet no error that could have been found first.

For every cell of the table (its sweep expanded as the sweep would, ``cft_lab.report.tables.expand``):

1. the cell's preflight, as the dry run runs it (``cft_lab.pipeline.preflight``: pinned revisions, API keys, local
   files, packages, GPUs per node, disk); its refusals are printed, and the cell's data is still built when its own
   checks pass;
2. every data artefact the cell trains on (a chain's parent's and a mixture's parts' included), with the teacher's
   requests bought now (``cft_lab.data.stage.run_data``, the same code and keys as the cell's data stage; a built
   one is found in the store). Data that needs a GPU cannot be built here and is left to the cell's own job, said so:
   responses written by the base model (``response_source=self_generated``) and a local-model teacher
   (``teacher.kind=vllm|hf``);
3. the hub models the GPU job loads (the base model, a local-model teacher, a self-generated response source) are
   fetched into the local Hugging Face cache at their pinned revisions (``--no-models`` skips this); hub datasets are
   fetched by step 2. Then run the GPU jobs with ``HF_HUB_OFFLINE=1`` (the SLURM launcher's setup does).

Exit status 0 when every cell is ready for its GPU job, 1 otherwise (the reasons are printed per cell), 2 for a bad
command line. Prints one block per cell, then a summary line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from typing import Optional

from cft_lab.config import Config, data_configs
from cft_lab.options import ModelSource, ResponseKind, TeacherKind
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store
from cft_lab.train.objectives import spec, teacher_work

log = logging.getLogger(__name__)


@dataclass
class CellReport:
    name: str
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def needs_gpu(cfg: Config) -> Optional[str]:
    """Why the data of this (one-artefact) config can only be built by a GPU job, or None."""
    if cfg.response_source.kind == ResponseKind.self_generated:
        return "its responses are written by the base model (response_source=self_generated)"
    if teacher_work(cfg.objective) and cfg.teacher.kind in (TeacherKind.vllm, TeacherKind.hf):
        return f"its teacher is a local model (teacher.kind={cfg.teacher.kind})"
    return None


def hub_models(cfg: Config) -> list[tuple[str, Optional[str], str]]:
    """(repo, revision, option) of every hub model the cell's GPU job loads."""
    from pathlib import Path

    def hub(path: Optional[str]) -> bool:
        return bool(path) and not Path(str(path)).expanduser().exists() and "/" in str(path)

    out = []
    if cfg.model.source == ModelSource.hub and hub(cfg.model.path):
        out.append((cfg.model.path, cfg.model.revision, "model.path"))
    if cfg.response_source.kind == ResponseKind.self_generated and hub(cfg.response_source.model):
        out.append((str(cfg.response_source.model), None, "response_source.model"))
    if (
        teacher_work(cfg.objective)
        and cfg.teacher.kind in (TeacherKind.vllm, TeacherKind.hf)
        and hub(cfg.teacher.model)
    ):
        out.append((str(cfg.teacher.model), None, "teacher.model"))
    return out


def fetch_model(repo: str, revision: Optional[str]) -> str:
    """Download ``repo@revision`` into the local Hugging Face cache (weights, config, tokenizer); returns the
    folder. Raises with the reason (the hub offline, no access, an unknown revision)."""
    from huggingface_hub import snapshot_download

    return snapshot_download(
        repo,
        revision=revision,
        allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.tiktoken", "*.jinja"],
    )


def prepare_cell(cfg: Config, store: Store, fetched: dict, models: bool) -> CellReport:
    """Preflight, data and models of one cell (module doc)."""
    from cft_lab.data.stage import run_data
    from cft_lab.pipeline.preflight import problems

    plan = plan_cell(cfg)
    report = CellReport(plan.name)
    report.problems += problems(cfg, store, dry_run=True)
    if spec(cfg.objective).trains:
        for role, part in data_configs(cfg):
            key = plan.key_of("data", role)
            where = f"data ({role})" if role else "data"
            if store.done("data", key):
                report.lines.append(f"{where} {key}: found in the store")
                continue
            gpu = needs_gpu(part)
            if gpu:
                report.lines.append(f"{where} {key}: left to the cell's GPU job: {gpu}")
                continue
            try:
                result = run_data(part, store, key)
            except Exception as e:  # noqa: BLE001 (a refused or failed data stage is reported, the next cell goes on)
                report.problems.append(f"{where}: {type(e).__name__}: {e}")
                continue
            cost = (result.card.get("teacher") or {}).get("cost_usd")
            report.lines.append(
                f"{where} {key}: built, {result.card['records']} records" + (f", teacher ${cost:.2f}" if cost else "")
            )
    if models:
        for repo, revision, option in hub_models(cfg):
            ref = f"{repo}@{revision or 'main'}"
            if ref not in fetched:
                try:
                    fetched[ref] = ("fetched", fetch_model(repo, revision))
                except Exception as e:  # noqa: BLE001
                    fetched[ref] = ("failed", f"{type(e).__name__}: {e}".splitlines()[0][:300])
            status, detail = fetched[ref]
            if status == "failed":
                report.problems.append(f"{option}={ref}: cannot fetch it into the local cache here ({detail})")
            else:
                report.lines.append(f"{option}={ref}: in the local cache ({detail})")
    return report


def prepare(table: str, overrides: list[str], models: bool = True) -> int:
    from cft_lab.report.tables import expand

    configs = expand(table, overrides)
    fetched: dict = {}
    ready = 0
    for cfg in configs:
        report = prepare_cell(cfg, Store(cfg.paths.outputs), fetched, models)
        print(f"cell {report.name}", flush=True)
        for line in report.lines:
            print(f"  {line}", flush=True)
        for problem in report.problems:
            print(f"  refused: {problem}", flush=True)
        ready += not report.problems
    print(f"prepare {table}: {ready}/{len(configs)} cells ready for their GPU jobs", flush=True)
    return 0 if ready == len(configs) else 1


def main(argv: list[str] | None = None) -> int:
    from cft_lab import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cft_lab prepare",
        description="Build every data artefact of a table (teacher calls included) and fetch its hub models, on CPU, "
        "before any GPU job is submitted.",
    )
    parser.add_argument("table", help="an experiments/table option, e.g. table2")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every cell (as on the sweep)")
    parser.add_argument("--no-models", action="store_true", help="do not fetch hub models")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return prepare(args.table, args.overrides, models=not args.no_models)


if __name__ == "__main__":
    sys.exit(main())
