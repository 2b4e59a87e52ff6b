# clusterplane: `make serve` runs the server on the embedded default, `make test` runs
# every check and test, `make bench` runs the performance suite into docs/performance.md.
# All create .venv first; nothing else is needed on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVE_ARGS ?=
PYTEST_ARGS ?=
# Test files are spread over this many processes (pytest-xdist); 0 runs them in this one.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile
BENCH_ARGS ?=

.PHONY: serve docs test test-sqlite test-postgresql postgres test-tools slurm kubernetes chromium simulate check lint typecheck imports unit format clean

$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.runtime

serve: $(VENV)/.runtime
	@mkdir -p -m 700 .clusterplane
	@test -s .clusterplane/admin-key || (umask 077; $(BIN)/clusterplane generate-key > .clusterplane/admin-key)
	CLUSTERPLANE_ADMIN_API_KEY="$$(cat .clusterplane/admin-key)" $(BIN)/clusterplane serve $(SERVE_ARGS)

# docs/configuration.md is generated from src/clusterplane/settings.py (a test checks it).
docs: $(VENV)/.runtime
	$(BIN)/clusterplane config docs

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy src

imports: $(VENV)/.dev
	$(BIN)/lint-imports

check: lint typecheck imports

# The whole suite on SQLite, then everything that touches a database again on PostgreSQL.
test: check postgres test-tools slurm kubernetes chromium
	$(PYTEST) $(PYTEST_ARGS)
	CLUSTERPLANE_TEST_DATABASE=postgresql $(PYTEST) tests/integration tests/compat $(PYTEST_ARGS)

test-sqlite: $(VENV)/.dev test-tools slurm kubernetes chromium
	$(PYTEST) $(PYTEST_ARGS)

test-postgresql: $(VENV)/.dev postgres
	CLUSTERPLANE_TEST_DATABASE=postgresql $(PYTEST) tests/integration tests/compat $(PYTEST_ARGS)

postgres:
	scripts/ensure-postgres.sh

# sshd (OpenSSH server) and kubectl, which the credential tests drive.
test-tools:
	scripts/ensure-test-tools.sh

# Debian's Slurm 22.05 and munge, which the Slurm runtime tests run in namespaced hosts.
slurm:
	scripts/ensure-slurm.sh

# Kubernetes v1.20 (API server, scheduler, controller-manager, kubelet) built from Debian's
# source package once per machine (about 7 minutes on two cores, then cached), with
# Debian's etcd, containerd and runc, which the Kubernetes runtime tests run.
kubernetes:
	scripts/ensure-kubernetes.sh

# Debian's chromium, which the web console's browser tests (tests/browser) drive headless.
chromium:
	scripts/ensure-chromium.sh

# The performance suite (benchmarks/, about 30 minutes on two cores): writes
# docs/performance.md. It installs wrk (Debian) when missing; BENCH_ARGS=--quick is a
# smoke run at toy sizes.
bench: $(VENV)/.runtime postgres
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Deterministic simulation: SEEDS random histories with injected faults (make test runs 200).
SEEDS ?= 2000
simulate: $(VENV)/.dev
	$(BIN)/python -m tests.simulation.run --seeds $(SEEDS)

unit: $(VENV)/.dev
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

format: $(VENV)/.dev
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) .clusterplane .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
