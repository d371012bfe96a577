# `make demo` and `make test` do everything on a fresh machine: create .venv, install, run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast docs lint format bench baselines baselines-tfdv clean browser requirements wheel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installed within the pinned versions Dataflow's workers get (docs/dataflow/requirements.txt):
# what the tests run on is what ships.
REQUIREMENTS := docs/dataflow/requirements.txt

$(STAMP): $(BIN)/python setup.py $(REQUIREMENTS)
	$(BIN)/python -m pip install --quiet -c $(REQUIREMENTS) -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/skewless run --output out/demo
	@echo "Demo outputs are in $(CURDIR)/out/demo (run.json summarises the run)."

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The report test renders report.html in Debian's headless Chromium; install it when missing (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "chromium could not be installed: the browser test will be skipped"

test: lint browser
	$(BIN)/python -m pytest

# Unit and pipeline tests only: no whole command, no browser.
test-fast: lint
	$(BIN)/python -m pytest -m "not e2e and not browser"

# The command reference is generated from the parser (a test fails when it drifts).
docs: $(STAMP)
	$(BIN)/python -m pipelines.cli.reference docs/reference/commands.md

# The pinned dependencies of Dataflow's workers, from this environment (a test fails when they drift).
requirements: $(STAMP)
	$(BIN)/python .ci/pin_requirements.py $(REQUIREMENTS)

# The wheel the worker container installs (docs/dataflow/Dockerfile; docs/runners.md).
wheel: $(STAMP)
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

# recordlinkage (the dedup benchmark's baseline) brings scikit-learn, which Keras imports on every
# `import tensorflow` when present (+1.3 s a start): it gets its own environment.
baselines:
	test -x .venv-baselines/bin/python || $(PYTHON) -m venv .venv-baselines
	.venv-baselines/bin/python -m pip install --quiet -e '.[baselines]'

# TFDV 1.16.1 (the newest that installs here) cannot live beside tf.Transform 1.21: its own
# environment, its own TensorFlow, for benchmarks/tfdv_compare.py only. Unpinned, pip backtracks
# for over ten minutes; these pins install in a few.
TFDV_PINS := tensorflow-data-validation==1.16.1 tfx-bsl==1.16.1 tensorflow-metadata==1.16.1 \
	tensorflow==2.16.2 tf-keras==2.16.0 pyarrow==10.0.1 pandas==1.5.3 numpy==1.26.4 protobuf==4.25.3 \
	apache-beam[gcp]==2.56.0 tensorflow-serving-api==2.16.1

baselines-tfdv:
	test -x .venv-tfdv/bin/python || $(PYTHON) -m venv .venv-tfdv
	.venv-tfdv/bin/python -m pip install --quiet --upgrade pip
	.venv-tfdv/bin/python -m pip install --quiet $(TFDV_PINS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_benchmark.py --rows 15000 1000000

clean:
	rm -rf out build dist *.egg-info
