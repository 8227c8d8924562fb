# cradle-jax: `make demo` and `make test` work on a fresh machine with Python 3.11 and pip.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export JAX_PLATFORMS ?= cpu
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache

.PHONY: venv cell-eval demo sweep-models accuracy test test-slow lint bench clean

venv: $(STAMP)

# Exact versions from the lock files; the package itself is installed editable without deps
# so that the lock stays the single source of truth for what runs.
$(STAMP): pyproject.toml requirements-lock.txt requirements-dev-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-lock.txt -r requirements-dev-lock.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

# Arc Institute's cell-eval in its own venv (its pins clash with ours); the slow tests run
# `cell-eval run` on the files `cradle-jax predict` writes.
CELLEVAL_VENV ?= .venv-celleval
CELLEVAL_STAMP := $(CELLEVAL_VENV)/.installed
cell-eval: $(CELLEVAL_STAMP)

$(CELLEVAL_STAMP): requirements-celleval-lock.txt
	$(PYTHON) -m venv $(CELLEVAL_VENV)
	$(CELLEVAL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CELLEVAL_VENV)/bin/python -m pip install --quiet -r requirements-celleval-lock.txt
	touch $(CELLEVAL_STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO_DIR)
	$(VENV)/bin/cradle-jax simulate --n_cells 6000 --n_genes 500 --n_perturbations 12 \
	  --n_pairs 8 --artifact_fraction 0.15 --seed 0 --out $(DEMO_DIR)/simulated.h5ad
	$(VENV)/bin/cradle-jax inspect --data $(DEMO_DIR)/simulated.h5ad --split combinations --seed 0
	$(VENV)/bin/cradle-jax train --config experiments/configs/synthetic.py \
	  --config.data.path=$(DEMO_DIR)/simulated.h5ad --workdir $(DEMO_DIR)/train --seed 0
	$(VENV)/bin/cradle-jax evaluate --workdir $(DEMO_DIR)/train

# The four models (docs/method.md#families) x 3 seeds on simulated single perturbations; about an hour on 2
# cores. Re-running finishes only the missing runs.
MODELS_DIR ?= runs/models
sweep-models: $(STAMP)
	mkdir -p $(MODELS_DIR)
	test -f $(MODELS_DIR)/simulated.h5ad || $(VENV)/bin/cradle-jax simulate --n_cells 6000 \
	  --n_genes 500 --n_perturbations 12 --n_pairs 0 --artifact_fraction 0.15 --seed 0 \
	  --out $(MODELS_DIR)/simulated.h5ad
	$(VENV)/bin/cradle-jax sweep --sweep experiments/sweeps/simulator_models.py \
	  --set data.path=$(MODELS_DIR)/simulated.h5ad --workdir $(MODELS_DIR)/sweep --noplots
	$(VENV)/bin/cradle-jax aggregate $(MODELS_DIR)/sweep

# Planted-truth accuracy: cradle, sams_vae, cvae and svae_plus x 3 seeds on one simulated screen
# (20,000 cells x 1,000 genes, 30 singles, 20 unseen pairs), beside the additive and control-mean
# baselines and the data's own ceiling (benchmarks/accuracy.py). Finished runs are reused.
ACCURACY_DIR ?= runs/accuracy
accuracy: $(STAMP)
	$(PY) benchmarks/accuracy.py --workdir $(ACCURACY_DIR)

# Tests run in TEST_WORKERS processes (pytest-xdist), one per core of a CI machine.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --durations=25

test-slow: $(STAMP) $(CELLEVAL_STAMP)
	CELL_EVAL=$(CURDIR)/$(CELLEVAL_VENV)/bin/cell-eval $(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Speed, measured (issue 9): the train step at both published configs (fp32, and bf16 products),
# evaluation, and one epoch over backed files of 100k and 1M cells (peak memory must stay flat).
# About 15 minutes on 2 cores; the 1M-cell file (1 GB) is written once into BENCH_DIR. The model
# ATE runs at the evaluation's full size (2,500 particles x 101 labels, twice).
BENCH_DIR ?= runs/bench
bench: $(STAMP)
	mkdir -p $(BENCH_DIR)
	$(PY) benchmarks/bench_train_step.py --config adamson
	$(PY) benchmarks/bench_train_step.py --config norman
	$(PY) benchmarks/bench_train_step.py --config adamson --compute_dtype bfloat16
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_pipeline.py --workdir $(BENCH_DIR)/pipeline

clean:
	rm -rf $(VENV) $(CELLEVAL_VENV) .jax_cache .pytest_cache .ruff_cache runs
