# rayfleet: `make demo` runs the main job on the local backend; `make test` runs lint, import
# contracts and the whole test suite; `make test-fast` the same without the tests that start Ray or
# a process. They create .venv and install what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export RAY_USAGE_STATS_ENABLED := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv test test-fast lint contracts pytest pytest-fast bench demo clean crds

venv: $(STAMP)

# Re-install when pyproject.toml changes (the stamp is older than it) or the venv is missing.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# mypy: the files of [tool.mypy] in pyproject.toml (strict for api, quota, capacity, transitions).
lint: $(STAMP)
	$(BIN)/ruff check platform train_apps serve_apps benchmarks tests
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# The tests that start no process run on two pytest-xdist workers (the CI machine has 2 cores);
# the slow ones (Ray clusters, the control service) one after another: two Ray clusters side by
# side on 2 cores were slower than one after the other.
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n $(PYTEST_WORKERS)
	$(BIN)/python -m pytest -q -m slow

test: lint contracts pytest

# The fast tier: lint, contracts and every test not marked slow (no Ray, no process: tests/conftest.py
# fails a not-slow test that starts one). Under 2 minutes.
pytest-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n $(PYTEST_WORKERS)

test-fast: lint contracts pytest-fast

bench: $(STAMP)
	@set -e; for script in benchmarks/*.py; do \
		echo "== $$script"; $(BIN)/python $$script; \
	done

# Regenerate the CRD copies vendored in the package (platform/rayfleet/backends/kuberay/crds/,
# with PROVENANCE.json) from a folder of upstream CRD YAML files.
crds: $(STAMP)
	@test -n "$(CRD_SRC)" || { echo "usage: make crds CRD_SRC=<folder of upstream KubeRay/Kueue CRD YAML files>"; exit 2; }
	PYTHONPATH=platform $(BIN)/python -m rayfleet.backends.kuberay.crd_vendor $(CRD_SRC)

demo: $(STAMP)
	$(BIN)/rayfleet demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
