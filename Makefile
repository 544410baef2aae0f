# `make run` and `make test` set themselves up: a virtual environment in .venv with the project
# and its dev tools, and (for the tests) Debian's Prometheus, Alertmanager, node_exporter and
# pushgateway plus running PostgreSQL and Redis.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit setup system-deps services collector k8s-tools bench clean

$(STAMP): pyproject.toml instrumentation/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e './instrumentation[grpc,tracing]' -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	bash scripts/system-deps.sh

services:
	bash scripts/services.sh

# The project's OpenTelemetry Collector distributions, built from Go modules by
# otel-collector/manifest*.yaml into ~/.cache/telemetry-gateway (rebuilt only when a manifest
# changes).
collector:
	bash scripts/build-collector.sh

# kustomize and the offline manifest validator for deploy/kubernetes (Go modules, same cache).
k8s-tools:
	bash scripts/build-k8s-tools.sh

run: setup
	$(BIN)/telemetry-gateway demo

lint: setup
	$(BIN)/ruff check gateway instrumentation demo dashboards tests bench
	$(BIN)/ruff format --check gateway instrumentation demo dashboards tests bench
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# Most tests wait on real servers (scrapes, rule evaluations, alert `for:`), so three workers
# on two cores cut the suite from ~22 to ~10 minutes; --dist loadfile keeps each module (and
# its module-scoped servers) on one worker. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3

test: setup system-deps services collector k8s-tools lint typecheck
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# The fast set: every test not marked `integration`, in-process only. tests/support/unit_guard.py
# fails any of them that starts a server or a subprocess or connects anywhere (mark it
# `integration` instead). No system packages, services or Collector needed; about a minute
# (56-61 s for 710 tests on this 2-core machine).
unit: setup
	$(BIN)/python -m pytest -m "not integration" -p tests.support.unit_guard -q

bench: setup system-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/exposition.py
	$(BIN)/python bench/status.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
