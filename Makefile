# The two README commands:  `make reproduce` (set up + run everything, default tier)  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TIER ?= default
# extra training seeds of notebooks 03-04 that `make reproduce` trains in the CPU tiers default and full (seed 0 is the
# main run). TIER=full adds the one-seed ablations and ours' longer SFT (params/full.yaml), about 90 min
SEEDS ?= 1 2
# parallel lanes of the CPU tiers (ivt_lib.reproduction.lanes): independent notebooks and seeds side by side, sharing the cores;
# JOBS=1 runs them one after another. The GPU tiers always run one at a time. Every notebook task gets 1 thread in the
# CPU tiers whatever JOBS is, so the numbers do not depend on the schedule (ivt_lib.reproduction.executor).
JOBS ?= 2
# extra flags for reproduce and seeds: --wait (queue behind a run of the same tier instead of refusing), --allow-dirty
# (write a committed tier's results from a tree with uncommitted changes; they are marked +dirty), --force
ARGS ?=

.PHONY: setup reproduce test smoke bench base-model splits clean-runs lab screenshot seeds zoom probe-trained

setup: $(VENV)/.installed

# torch is installed first and pinned (2.13.0). This project's machines resolve it from a local CPU wheel index; elsewhere
# PyPI's Linux wheel is the multi-GB CUDA build, and a CPU-only user gets the small one with
# `PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make setup`.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

reproduce: setup
	$(PY) -m ivt_lib.reproduction.reproduce --tier $(TIER) \
		$(if $(filter default full,$(TIER)),--seeds $(SEEDS) --jobs $(JOBS)) $(ARGS)

# pytest's exit code 5 ("no tests collected") must fail, not pass silently.
test: setup
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

smoke: setup
	$(PY) -m ivt_lib.reproduction.reproduce --tier smoke $(ARGS)

# Training seeds 1 and 2 of notebooks 03-04 (with ours: keep data, refine credit) after a reproduction (seed 0);
# mean ± sd in results/seeds.json. `make reproduce` already runs them in the default and full tiers.
seeds: setup
	$(PY) -m ivt_lib.reproduction.seeds --tier $(TIER) --seeds $(SEEDS) --extra-rows $(ARGS)

# Ours, a labelled extra (after `make reproduce`, which it needs for notebook 00's base answers): the box-perception
# probes of the bases on validation (results/box_probe.json), then the IVT chain in the zoom feedback view: teacher
# traces, SFT and GRPO, seeds 0-2, and the paper's jittered-GT SFT ablation at every seed (results/feedback_view.json).
# About 45 min on 2 CPU cores beside nothing else, plus 18 min for the jittered-GT arm.
zoom: setup
	$(PY) -m ivt_lib.analysis.box_probe --model data/base_model --n 200 --view overlay --view zoom:0.5:128 \
		--view zoom:0.25:128 --view zoom:0.5:256 --window-at box --places vision merged lm_2 lm_4 --out results/box_probe.json
	$(PY) -m ivt_lib.analysis.box_probe --model data/base_model_refine_mix --n 200 --view overlay --view zoom:0.5:128 \
		--window-at box --places vision merged lm_2 lm_4 --out results/box_probe.json --add
	$(PY) -m ivt_lib.reproduction.feedback_view --tier $(TIER) --seeds 0 $(SEEDS) --jobs $(JOBS) $(ARGS)
	$(PY) -m ivt_lib.analysis.view_ablation --model runs/$(TIER)/view_zoom/seed_0/grpo/merged \
		--model runs/$(TIER)/view_zoom/seed_1/grpo/merged --model runs/$(TIER)/view_zoom/seed_2/grpo/merged \
		--out results/view_ablation.json

# Ours: the box-perception probes and keep signal of every trained model, each in the view it was trained on
# (validation; results/box_probe_trained.json), after `make reproduce` (overlay rows) and `make zoom` (zoom rows); then
# the sizes of the corrections each trace set teaches (results/trace_corrections.json, seconds).
# About 3 min per model on one core; JOBS models side by side.
probe-trained: setup
	$(PY) -m ivt_lib.reproduction.probe_trained --tier $(TIER) --feedback overlay zoom --seeds 0 $(SEEDS) --jobs $(JOBS)
	$(PY) -m ivt_lib.analysis.trace_corrections --out results/trace_corrections.json \
		--traces "paper recipe (own errors)=runs/$(TIER)/traces/student" "ours: keep data=runs/$(TIER)/traces/student_ours" \
		"paper ablation: jittered ground truth=runs/$(TIER)/traces/jittered_gt" \
		"paper recipe (own errors), zoom view=runs/$(TIER)/view_zoom/traces/student" \
		"ours: keep data, zoom view=runs/$(TIER)/view_zoom/traces/student_ours" \
		"paper ablation: jittered ground truth, zoom view=runs/$(TIER)/view_zoom/traces/jittered_gt"

# JupyterLab on the project, on loopback only (open the URL it prints; notebooks/06_explore.ipynb is the explorer)
lab: setup
	$(PY) -m jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=.

# The browser test on the default tier's executed notebooks and models (after `make reproduce`), keeping its final
# screenshot as the README's figure (needs Debian's chromium)
screenshot: setup
	IVT_BROWSER_TIER=default IVT_BROWSER_SCREENSHOT=figures/explorer_jupyterlab.png $(PY) -m pytest -q -s tests/test_browser.py

bench: setup
	$(PY) benchmarks/loop_throughput.py

splits: setup
	$(PY) -m ivt_lib.corpora.splits

# Retrain the shipped pure base grounder from scratch in its two stages (data/BASE_MODEL_RUN.md): 7,200 steps of the
# pure grounding stream, then 6,500 steps warm-started from them on the binding-heavy stream (more refcocog-like and
# colour/shape contrast scenes). 5,671 s + 3,924 s as run on 2 CPU cores; each stage resumes after a kill.
BINDING_STAGE := --total-steps 6500 --warmup-steps 200 --eval-n 300 --curriculum-frac 0 --blend-frac 0 \
	--contrast-frac 0.4 --contrast-axes colour,colour,shape,shape,size,position --family-weights 2,1,1 --lr 1e-3
base-model: setup
	$(PY) -m ivt_lib.embedded.train_base --total-steps 7200 --out-dir runs/base_stage1 --ckpt-dir runs/base_stage1_ckpt
	$(PY) -m ivt_lib.embedded.train_base --init-from runs/base_stage1 --out-dir data/base_model --ckpt-dir runs/base_stage2_ckpt $(BINDING_STAGE)

clean-runs:
	rm -rf runs; [ ! -d notebooks/executed ] || find notebooks/executed -mindepth 1 -maxdepth 1 ! -name default -exec rm -rf {} +  # the default tier's executed notebooks are committed
