"""SLURM done right (issue 13, item 5): resources per cell, a time limit from the estimate, requeue, a dry run that
submits nothing, refusals before submitting, and a table rendered when jobs fail. SLURM itself cannot run here: a
fake ``sbatch`` (a script that records its calls) stands in to show that nothing is submitted, and the launcher's
local twin (``hydra/launcher=slurm_local``: the same launcher code, each job a local process under submitit's local
executor) runs the sweeps."""

from __future__ import annotations

import os

import pytest
from hydra import compose as hcompose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from cft_lab.config import register
from cft_lab.paths import CONF_DIR
from cft_lab.pipeline.launcher import job_resources
from cft_lab.report.tables import expand
from cft_lab.train.objectives import spec
from conftest import SMOKE, run_cli

FAKE_SBATCH = '#!/bin/sh\necho "$@" >> "$(dirname "$0")/sbatch.calls"\necho \'Submitted batch job 1\'\n'


def _launcher_config(overrides: list[str]):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hcompose("config", overrides=overrides, return_hydra_config=True)


def test_a_slurm_dry_run_submits_nothing_and_says_what_each_job_would_ask_for(outputs, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun"):  # fakes that record any call (there is no SLURM here)
        (bin_dir / tool).write_text(FAKE_SBATCH.replace("sbatch.calls", f"{tool}.calls"))
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = run_cli(["cft_lab", "table=demo", "hydra/launcher=slurm", "dry_run=true", "logger=none"], outputs)
    assert not list(bin_dir.glob("*.calls")), [p.read_text() for p in bin_dir.glob("*.calls")]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[slurm dry run: not submitted]")]
    assert len(lines) == 5 and all("1 GPU(s), 8 CPUs, 60 GB, time limit" in line for line in lines), lines
    assert "requeued up to 3 time(s)" in lines[0]
    assert "demo: 5 cells" in proc.stdout and not (outputs / "store").exists()


def test_each_cell_asks_for_what_it_needs_and_its_time_limit_follows_its_estimate():
    cells = expand("table2", ["model.allow_unpinned=true"])
    resources = [(spec(c.objective).trains, job_resources(c)) for c in cells]
    for trains, r in resources:
        gpus = 8 if trains else 1  # a trained cell: train.num_devices; evaluation only: its engine's GPUs
        assert (r["gpus_per_node"], r["cpus_per_task"], r["mem_gb"]) == (gpus, 8 * gpus, 60 * gpus)
        assert 30 <= r["timeout_min"] <= 2880
    base = max(r["timeout_min"] for t, r in resources if not t)
    assert min(r["timeout_min"] for t, r in resources if t) > base  # training and selection take longer
    tp2 = job_resources(expand("table2", ["model.allow_unpinned=true", "method=base",
                                          "inference.tensor_parallel_size=4"])[0])  # fmt: skip
    assert tp2["gpus_per_node"] == 4  # the paper's harness ran vLLM on 4 GPUs
    # Table 3: a 70B asks for the 4 GPUs its weights need whatever the inference config says; an API model for none
    table3 = {c.model.name: job_resources(c) for c in expand("table3", ["model.allow_unpinned=true"])
              if not spec(c.objective).trains}  # fmt: skip
    assert table3["llama3_1_70b_instruct"]["gpus_per_node"] == 4
    assert table3["gpt4o_0806"]["gpus_per_node"] is None and table3["gpt4o_0806"]["cpus_per_task"] == 8


def test_requeue_signal_and_offline_settings_are_in_the_sbatch_script(tmp_path, monkeypatch):
    """The sbatch script submitit would submit for Table 2's CFT cell, built by the launcher's own executor from the
    launcher config plus the cell's resources (written, never submitted; submitit only checks that an ``srun`` is on
    the PATH: a fake one stands in, never called)."""
    import submitit

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    from omegaconf import OmegaConf

    from hydra_plugins.cft_lab_slurm import CftLabSlurmLauncher

    launcher = _launcher_config(["hydra/launcher=slurm", "table=table2", "method=cft"]).hydra.launcher
    assert launcher.max_num_timeout == 3 and launcher.signal_delay_s == 300
    cfg = expand("table2", ["model.allow_unpinned=true", "method=cft", "model=qwen2_5_math_7b"])[0]
    assert cfg.train.stop_grace_s < launcher.signal_delay_s  # the save fits between the signal and the kill
    params = {k: v for k, v in OmegaConf.to_container(launcher).items() if k != "_target_"}
    params["submitit_folder"] = str(tmp_path / "submitit")
    plugin = CftLabSlurmLauncher(**params)
    r = job_resources(cfg)
    params = {k: v for k, v in {**plugin.params, **r}.items() if k != "per_cell_resources"}
    executor = plugin._executor(submitit, params)
    script = executor._executor._make_submission_file_text("python -m x", "uid")
    assert f"#SBATCH --time={r['timeout_min']}" in script and "#SBATCH --gpus-per-node=8" in script
    assert f"#SBATCH --mem={r['mem_gb']}GB" in script and "#SBATCH --cpus-per-task=64" in script
    assert executor._executor.max_num_timeout == 3  # requeued up to 3 times
    assert "#SBATCH --signal=USR2@300" in script
    assert "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1" in script
    # an API model's evaluation-only cell (Table 3's GPT-4o) asks SLURM for no GPU at all
    api = [c for c in expand("table3", ["model.allow_unpinned=true"]) if c.model.name == "gpt4o_0806"][0]
    params = {k: v for k, v in {**plugin.params, **job_resources(api)}.items() if k != "per_cell_resources"}
    script = plugin._executor(submitit, params)._executor._make_submission_file_text("python -m x", "uid")
    assert "#SBATCH --cpus-per-task=8" in script and "gpus" not in script.lower() and "--gres" not in script


def test_more_than_one_node_is_refused_before_anything_runs(outputs):
    proc = run_cli(["cft_lab", "table=demo", "method=base", "hydra/launcher=slurm_local", "hydra.launcher.nodes=2",
                    *SMOKE], outputs, check=False)  # fmt: skip
    assert proc.returncode == 1
    assert "hydra.launcher.nodes=2" in proc.stderr and "one cell per job on one node" in proc.stderr
    assert not (outputs / "store").exists()


def test_a_cell_the_dry_run_would_refuse_is_not_submitted_and_the_table_shows_why(outputs):
    """tiny_math/sft asks for 16 GPUs on 8-GPU nodes: refused before submitting; tiny_math/base runs in its job."""
    args = ["cft_lab", "table=demo", "method=base,sft", "hydra/launcher=slurm_local", *SMOKE,
            "train.launcher=torchrun", "train.num_devices=16"]  # fmt: skip
    proc = run_cli(args, outputs, check=False, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "not submitted: train.num_devices=16 but a node of cluster=h100 has 8" in proc.stdout + proc.stderr
    md = (outputs / "tables" / "demo.md").read_text()
    assert "1/2 cells done" in md
    assert not (outputs / "store" / "train").exists()  # the refused cell never ran
    assert list((outputs / "hydra" / "multirun").glob("*/.submitit"))  # base went through submitit


def test_a_job_that_fails_is_a_hole_and_the_table_is_still_rendered(outputs):
    """The job itself fails (run.strict re-raises: every pair is over the cutoff); Hydra's sweeper would re-raise it
    before the table; here the sweep returns, the table is rendered, and the exit status is 1."""
    args = ["cft_lab", "table=demo", "method=sft", "hydra/launcher=slurm_local", *SMOKE, "run.strict=true",
            "train.truncation=drop", "train.cutoff_len=2"]  # fmt: skip
    proc = run_cli(args, outputs, check=False, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (outputs / "tables" / "demo.md").is_file()
    assert "0/1 cells done" in (outputs / "tables" / "demo.md").read_text()
    said = proc.stdout + proc.stderr
    assert "MaskError: all 48 pairs were dropped" in said and "error: 1 cell(s) failed: tiny_math/sft" in said


@pytest.mark.slow
def test_a_preempted_training_job_saves_is_requeued_and_resumes(outputs):
    """submitit's pre-emption signal (USR2, what SLURM sends before a time limit or a pre-emption; sent here by the
    test to the local job's process): the training saves its full state, submitit requeues the job, the requeued job
    resumes from that save and the cell finishes."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from conftest import REPO

    args = ["table=demo", "method=sft", "hydra/launcher=slurm_local", *SMOKE, "train.max_steps=120",
            "train.num_checkpoints=4", "data.testbed.n_train=960"]  # fmt: skip
    env = {**os.environ, "CFT_LAB_OUTPUTS": str(outputs), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cft_lab", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and not list(outputs.glob("store/train/*/checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else ""
        time.sleep(0.05)
    tasks = [p for p in psutil.Process(proc.pid).children(recursive=True) if "submitit.core._submit" in " ".join(
        p.cmdline())]  # fmt: skip
    assert tasks, "no submitit job process"
    for t in tasks:
        t.send_signal(signal.SIGUSR2)
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, out[-3000:]
    logs = "\n".join(p.read_text(errors="replace") for p in outputs.rglob(".submitit/*/*_log.*"))
    assert "Requeued" in logs and "training stopped on SIGUSR2" in logs, logs[-3000:]
    (train_dir,) = (outputs / "store" / "train").iterdir()
    metrics = __import__("json").loads((train_dir / "metrics.json").read_text())
    assert metrics["resumed"] and metrics["global_step"] == 120
    # the save made on the signal (off the selection interval of 30 steps) is gone once training is done
    assert metrics["checkpoint_steps"] == [30, 60, 90, 120], metrics["checkpoint_steps"]
    assert "select checkpoint-30 " in logs and "select checkpoint-31 " not in logs
    assert "1/1 cells done" in (outputs / "tables" / "demo.md").read_text()
