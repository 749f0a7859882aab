# rayfleet: `make demo` runs the main job on the local backend; `make test` runs lint, import
# contracts and the whole test suite; `make test-fast` the same without the tests that start Ray or
# a process. They create .venv and install what they need.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export RAY_USAGE_STATS_ENABLED := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv test test-fast lint contracts pytest pytest-fast bench demo clean crds postgresql

venv: $(STAMP)

# Re-install when pyproject.toml changes (the stamp is older than it) or the venv is missing.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The store's tests run on a real PostgreSQL server too (tests/databases.py starts one in a temp
# dir): Debian's postgresql package, installed here when no server binary is on the machine.
PG_SERVER = $(wildcard /usr/lib/postgresql/*/bin/postgres)
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

postgresql:
	@test -n "$(PG_SERVER)" || { \
		echo "installing Debian's postgresql (the store's tests start a real PostgreSQL server)"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q postgresql; }

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

pytest: $(STAMP) postgresql
	$(BIN)/python -m pytest -q -m "not slow" -n $(PYTEST_WORKERS)
	$(BIN)/python -m pytest -q -m slow

# `make test` runs the same as `make lint contracts pytest`, in less time: the slow tier keeps about
# 60% of the two cores busy (the rest of its time goes to waiting on Ray: process start-ups,
# placement, Serve's delays), so lint, contracts and the fast tier run beside it, at a lower CPU
# priority (FAST_NICE) so they take the idle time and leave the slow tier's Ray processes theirs.
# The fast side's output is printed after the slow tier's; the target fails if either fails.
FAST_NICE ?= 10
FAST_LOG := .test-fast.log

test: $(STAMP) postgresql
	@rm -f $(FAST_LOG) $(FAST_LOG).rc; \
	( nice -n $(FAST_NICE) $(MAKE) --no-print-directory lint contracts pytest-fast > $(FAST_LOG) 2>&1; echo $$? > $(FAST_LOG).rc ) & \
	$(BIN)/python -m pytest -q -m slow --durations=20; slow=$$?; \
	wait; \
	echo "== lint, contracts and the fast tier (run beside the slow tier, output in $(FAST_LOG))"; \
	cat $(FAST_LOG); fast=$$(cat $(FAST_LOG).rc 2>/dev/null || echo 1); \
	echo "== make test: slow tier exit $$slow, lint + contracts + fast tier exit $$fast"; \
	test "$$slow" = 0 && test "$$fast" = 0

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
