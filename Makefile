# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

MMSRAREC := $(VENV)/bin/mmsrarec
DATASET ?= movielens-100k
SEEDS ?= 3

.PHONY: demo test test-fast test-slow venv bench clean eval airflow airflow-stop maintain

venv: $(STAMP)

# torch==2.13.0 first, from the CPU index (an unpinned or PyPI torch is a CUDA build of several GB), then the pinned
# runtime and test requirements, then this package. Where the CPU index is unreachable (machines that only see a
# PyPI mirror), pip's configured sources are tried instead, and the build is checked: a CUDA build is reported.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
$(STAMP): requirements.txt requirements-dev.txt constraints.txt setup.cfg
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --timeout 15 --retries 1 torch==2.13.0 --index-url $(TORCH_INDEX_URL) \
	  || { echo "CPU torch index $(TORCH_INDEX_URL) unreachable: trying pip's configured sources"; \
	       $(PY) -m pip install -q torch==2.13.0; }
	$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA' if torch.version.cuda else 'CPU build')"
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The whole chain through Airflow (item tables -> train -> one nightly date), then the evaluation table and
# explained top-5s (see docs/airflow.md). One seed, no ablations, sized for a 2-core machine.
demo: venv
	$(PY) -m mmsrarec_lib.testing.airflow_demo

# The full comparison on real data, one run: Pop, SASRec, MMSRARec (minilm-effnet), the MLLM alone, the id-token
# variant and the three ablations, $(SEEDS) seeds, protocols paper / full / sampled, into evaluation_runs (+ per-user
# ranks); then the report (tables, paired intervals against SASRec, PNGs). Builds its prerequisites first, image
# features included (the candidates' image tokens). COMPARE_ARGS passes extra flags (e.g. --steps 200).
eval: venv
	$(MMSRAREC) ingest --source $(DATASET)
	$(MMSRAREC) encode-images --dataset $(DATASET) --backfill
	$(MMSRAREC) index-content --dataset $(DATASET)
	$(MMSRAREC) train-summarizer --dataset $(DATASET) --backend extractive --steps 30
	$(MMSRAREC) summarize --dataset $(DATASET) --summarizer-version extractive-v1 --backend extractive --backfill
	$(MMSRAREC) train-baseline --dataset $(DATASET) --model sasrec --protocol paper
	$(MMSRAREC) build-collab --dataset $(DATASET)
	$(MMSRAREC) compare --dataset $(DATASET) --seeds $(SEEDS) --jobs $(SEEDS) --no-progress $(COMPARE_ARGS)
	$(MMSRAREC) report --dataset $(DATASET)

# A local Airflow UI on 127.0.0.1:8080 with these DAGs (stop it with `make airflow-stop`).
airflow: venv
	$(PY) -m mmsrarec_lib.testing.airflow_demo --standalone

airflow-stop:
	$(PY) -m mmsrarec_lib.testing.airflow_demo --stop

# Delta upkeep of the local warehouse (what the weekly mmsrarec_maintenance DAG runs): compact, z-order, vacuum.
maintain: venv
	$(MMSRAREC) maintain --dataset $(DATASET)

# Lint first (ruff, config in pyproject.toml; the import-layer check is tests/test_layers.py), then every test.
test: venv
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

test-fast: venv
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow" tests

test-slow: venv
	$(PY) -m pytest -q -m slow tests

bench: venv
	for f in bench/*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf warehouse airflow_home .pytest_cache
