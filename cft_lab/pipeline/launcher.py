"""The SLURM launcher of cft-lab sweeps (``hydra/launcher=slurm``; ``slurm_local`` is its twin that runs the jobs as
local processes through submitit's local executor, the same code path, for machines without SLURM and the tests).

Hydra's submitit launcher submits every job of a sweep with one set of resources, submits even when the sweep is a
dry run, and its ``results()`` raise at the first job that timed out, so a table with one hole is never rendered.
This launcher keeps its executor and its requeue (``max_num_timeout``: a timed-out or pre-empted job is checkpointed
and requeued; the run store resumes it) and changes what those defaults get wrong:

* **resources per cell**: each job's config is composed and estimated (``cft_lab.pipeline.estimate``): a trained
  cell asks for ``train.num_devices`` GPUs, an evaluation-only cell for its engine's (``tensor_parallel_size``), CPUs
  and memory per GPU from ``cluster``, and a time limit from the estimate (x ``cluster.timeout_factor`` + margin,
  at most ``cluster.max_timeout_min``); jobs with the same resources go in one job array;
* **refusals before submitting**: a cell the dry run would refuse (``cft_lab.pipeline.preflight`` against a node of
  ``cluster``) is not submitted; its refusal is written as the job's outcome and the table shows the hole;
  ``nodes > 1`` is refused (one cell runs on one node: several would run the cell several times);
* **a dry run submits nothing**: its jobs run here, one after the other, as the basic launcher runs them;
* **a failed job is a hole, not a crash**: a job that timed out for good, died or raised becomes a failed outcome
  (``cell.json`` in its folder, as the jobs write it themselves), the sweep returns, and the table is rendered.

The per-job resources are why :meth:`launch` is written here rather than inherited: the plugin's own ``launch``
calls ``update_parameters`` once for every job.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

#: Keys of the launcher config that are cft-lab's own (never passed to submitit).
OWN_KEYS = ("per_cell_resources",)


def job_resources(cfg: Any) -> dict:
    """The submitit parameters of one cell (a typed ``cft_lab.config.Config``): GPUs, CPUs, memory, time limit."""
    from cft_lab.options import ModelSource
    from cft_lab.pipeline.estimate import estimate_cell
    from cft_lab.pipeline.plan import plan_cell
    from cft_lab.pipeline.store import Store
    from cft_lab.train.objectives import spec

    cl = cfg.cluster
    est = estimate_cell(cfg, plan_cell(cfg), Store(cfg.paths.outputs))
    # an API model's evaluation-only cell generates remotely: no GPU (None: submitit asks SLURM for none), one
    # GPU's share of CPUs and memory for its requests and grading
    api = cfg.model.source == ModelSource.api and not spec(cfg.objective).trains
    gpus = None if api else max(1, est.gpus)
    minutes = est.wall_hours * 60 * cl.timeout_factor + cl.timeout_margin_min
    return {
        "gpus_per_node": gpus,
        "cpus_per_task": (gpus or 1) * cl.cpus_per_gpu,
        "mem_gb": (gpus or 1) * cl.mem_gb_per_gpu,
        "timeout_min": int(min(cl.max_timeout_min, max(cl.timeout_margin_min, math.ceil(minutes)))),
    }


def _outcome_file(sweep_dir: Path, idx: int) -> Path:
    return sweep_dir / str(idx) / "cell.json"


class CellAware:
    """What cft-lab's launchers add to submitit's (module doc). Hydra loads launcher plugins only from the
    ``hydra_plugins`` package: the classes are ``hydra_plugins.cft_lab_slurm.CftLabSlurmLauncher`` (this mixin and
    the plugin's ``SlurmLauncher``) and ``CftLabLocalLauncher`` (its ``LocalLauncher``)."""

    _EXECUTOR = "abstract"
    params: dict
    config: Any
    hydra_context: Any
    task_function: Any

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and self.hydra_context is not None
        if int(self.params.get("nodes") or 1) != 1 or int(self.params.get("tasks_per_node") or 1) != 1:
            raise ValueError(
                f"hydra.launcher.nodes={self.params.get('nodes')}, tasks_per_node={self.params.get('tasks_per_node')}: "
                f"cft-lab runs one cell per job on one node with one task (several would run the cell several times, "
                f"and a cell trains on one node: train.num_nodes=1); set hydra.launcher.nodes=1 tasks_per_node=1"
            )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        cfgs = [self._cell_config(list(o)) for o in job_overrides]
        if any(c.dry_run for c in cfgs):
            return self._dry_run(job_overrides, initial_job_idx, cfgs)
        base = {k: v for k, v in self.params.items() if k not in OWN_KEYS}
        groups: dict[str, list[tuple[int, list[str], dict]]] = defaultdict(list)
        returns: dict[int, JobReturn] = {}
        for k, (overrides, cfg) in enumerate(zip(job_overrides, cfgs)):
            idx = initial_job_idx + k
            refused = self._refusal(cfg)
            if refused:
                returns[idx] = self._failed(sweep_dir, idx, cfg, list(overrides), f"not submitted: {refused}")
                continue
            resources = job_resources(cfg) if self.params.get("per_cell_resources", True) else {}
            groups[json.dumps(resources, sort_keys=True)].append((idx, list(overrides), resources))
        submitted: list[tuple[int, list[str], Any, Any]] = []
        for members in groups.values():
            params = {**base, **members[0][2]}
            executor = self._executor(submitit, params)
            log.info("submitting %d job(s) with %s", len(members), members[0][2] or "the launcher's resources")
            for idx, overrides, _ in members:
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            args = [(o, "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()) for idx, o, _ in members]
            jobs = executor.map_array(self, *zip(*args))
            submitted += [(idx, o, job, cfgs[idx - initial_job_idx]) for (idx, o, _), job in zip(members, jobs)]
        for idx, overrides, job, cfg in submitted:
            returns[idx] = self._collect(sweep_dir, idx, overrides, job, cfg)
        return [returns[initial_job_idx + k] for k in range(len(job_overrides))]

    def _cell_config(self, overrides: list[str]) -> Any:
        """The typed config of the job with these overrides, as the job will compose it (its hydra node left out:
        it holds values only a running job has)."""
        from cft_lab.config import to_config

        composed = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        return to_config(OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"]))

    def _executor(self, submitit: Any, params: dict) -> Any:
        """submitit's executor with ``params`` (the plugin's own split of executor-specific keys)."""
        init_keys = {"max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params["submitit_folder"],
            **{f"{self._EXECUTOR}_{k}": v for k, v in params.items() if k in init_keys},
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                (k if k in shared else f"{self._EXECUTOR}_{k}"): v
                for k, v in params.items()
                if k not in init_keys | {"submitit_folder"}
            }
        )
        return executor

    def _refusal(self, cfg: Any) -> Optional[str]:
        from cft_lab.pipeline.preflight import problems
        from cft_lab.pipeline.store import Store

        found = problems(cfg, Store(cfg.paths.outputs), dry_run=True)
        return "; ".join(found) if found else None

    def _failed(self, sweep_dir: Path, idx: int, cfg: Any, overrides: list[str], error: str) -> JobReturn:
        """Record a job that produced no outcome of its own as a failed cell (``cell.json``, read by the callback)."""
        from cft_lab.pipeline.plan import plan_cell

        plan = plan_cell(cfg)
        path = _outcome_file(sweep_dir, idx)
        if not path.is_file() or json.loads(path.read_text()).get("status") != "failed":
            path.parent.mkdir(parents=True, exist_ok=True)
            outcome = {"status": "failed", "cell": plan.name, "key": plan.key, "error": error}
            path.write_text(json.dumps(outcome), encoding="utf-8")
        log.error("job #%d (%s) failed: %s", idx, plan.name, error)
        # a completed sweep step whose failure lives in cell.json: Hydra's sweeper would re-raise a FAILED return
        # before the table is rendered (the callback turns the outcome into exit status 1 after rendering)
        ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
        ret.return_value = None
        return ret

    def _collect(self, sweep_dir: Path, idx: int, overrides: list[str], job: Any, cfg: Any) -> JobReturn:
        try:
            ret = job.results()[0]
        except Exception as e:  # noqa: BLE001 (timed out for good, killed, node failure: a hole, not a crash)
            return self._failed(sweep_dir, idx, cfg, overrides, f"job {job.job_id} did not finish: {type(e).__name__}: "
                                f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}")  # fmt: skip
        if ret.status == JobStatus.FAILED:
            error = ret._return_value
            return self._failed(sweep_dir, idx, cfg, overrides, f"{type(error).__name__}: {error}")
        return ret

    def _dry_run(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, cfgs: list) -> Sequence[JobReturn]:
        """Submit nothing: print what each job would ask for, then run the jobs (dry runs) here, in order."""
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        for k, cfg in enumerate(cfgs):
            r = job_resources(cfg)
            gpus = r["gpus_per_node"] or 0
            print(f"[{self._EXECUTOR} dry run: not submitted] job #{initial_job_idx + k}: {gpus} GPU(s), "
                  f"{r['cpus_per_task']} CPUs, {r['mem_gb']} GB, time limit {r['timeout_min']} min, requeued up to "
                  f"{self.params.get('max_num_timeout', 0)} time(s)", flush=True)  # fmt: skip
        basic = BasicLauncher()
        basic.setup(hydra_context=self.hydra_context, task_function=self.task_function, config=self.config)
        return basic.launch(job_overrides, initial_job_idx)


@dataclass
class CftLabSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.cft_lab_slurm.CftLabSlurmLauncher"
    # the GPUs, CPUs, memory and time limit of each job from its cell (False: the values below for every job)
    per_cell_resources: bool = True
    max_num_timeout: int = 3  # requeue a timed-out or pre-empted job up to 3 times (the run store resumes it)
    signal_delay_s: int = 300  # USR2 five minutes before the limit: training saves its full state and stops
    # GPU jobs read only what `make prepare` fetched: no hub access from compute nodes
    setup: Optional[list] = field(
        default_factory=lambda: ["export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1"]
    )


@dataclass
class CftLabLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.cft_lab_slurm.CftLabLocalLauncher"
    per_cell_resources: bool = True
    max_num_timeout: int = 3


ConfigStore.instance().store(group="hydra/launcher", name="cft_lab_slurm", node=CftLabSlurmConf(), provider="cft_lab")
ConfigStore.instance().store(group="hydra/launcher", name="cft_lab_local", node=CftLabLocalConf(), provider="cft_lab")
