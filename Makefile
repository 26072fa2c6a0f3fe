# Two commands do all the set-up on a fresh clone: `make dev` (install, then the Dagster UI) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install dev lint test test-fast bench scale-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"

# The Dagster instance lives in .dagster_home/ (runs, schedules, the duckdb pool limit from dagster.yaml).
DAGSTER_HOME ?= $(CURDIR)/.dagster_home

dev: install
	mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml || true
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/dagster dev -h 127.0.0.1

# The style gate CI runs before the tests: ruff's lint rules and its formatter, as configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collects no tests: that is a failure here, not a pass.
test: install
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

# The quick loop: every test but the slow tier (the UI, soak, kill and subprocess tests).
test-fast: install
	@$(MAKE) --no-print-directory test PYTEST_ARGS='-m "not slow" $(PYTEST_ARGS)'

# The benchmark suite (not part of the tests; several minutes): prints the tables and writes benchmarks/results/*.txt.
# The ingest and pipeline part needs the real granules in ../shared/data/glm/ beside the clone. See BENCHMARKS.md.
bench: install
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# The scale-out, run for real on this machine (scripts/scale_test.py): PostgreSQL and Redis from Debian's packages
# (installed with apt when missing and run as root), two Celery workers, the webserver and the daemon on a PostgreSQL
# instance, a backfill of 24 hours in runs of two launched through GraphQL with a whole worker killed (its step
# delivered again), a killed worker process and a PostgreSQL restart.
# Installs the [cluster] extra into the venv; `make dev` does not need it. The last line printed is the verdict.
scale-test: install
	$(BIN)/python -m pip install -q -e ".[dev,cluster]"
	$(BIN)/python scripts/scale_test.py $(SCALE_ARGS)
