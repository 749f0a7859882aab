# rayfleet: `make demo` runs the main job on the local backend; `make test` runs lint, import
# contracts and the whole test suite. Both create .venv and install what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export RAY_USAGE_STATS_ENABLED := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv test lint contracts pytest bench demo clean crds

venv: $(STAMP)

# Re-install when pyproject.toml changes (the stamp is older than it) or the venv is missing.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check platform train_apps serve_apps benchmarks tests

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint contracts pytest

bench: $(STAMP)
	@set -e; for script in benchmarks/*.py; do \
		echo "== $$script"; $(BIN)/python $$script; \
	done

# Regenerate the CRD copies vendored in the package (platform/rayfleet/backends/kuberay/crds/,
# with PROVENANCE.json) from a folder of upstream CRD YAML files.
crds: $(STAMP)
	@test -n "$(CRD_SRC)" || { echo "usage: make crds CRD_SRC=<folder of upstream CRD files, e.g. ../shared/crds>"; exit 2; }
	PYTHONPATH=platform $(BIN)/python -m rayfleet.backends.kuberay.crd_vendor $(CRD_SRC)

demo: $(STAMP)
	$(BIN)/rayfleet demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
