# Two commands on a fresh machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run audit test bench chaos security lint typecheck unit integration lock clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[dev,local]"
	touch $@

install: $(INSTALLED)

# Under supervisord (deploy/local/supervisord.conf): a process that dies is started again.
run: install  ## NATS (if none answers), every service, 2 workers, the gateway on :8037
	./scripts/run-platform

# The settings `make run` uses (scripts/run-platform exports the same); exported ones win.
audit: install  ## agentflow-audit on the `make run` platform: make audit ARGS="verify executor"
	AGENTFLOW_ENVIRONMENT="$${AGENTFLOW_ENVIRONMENT:-development}" \
	NATS_URL="$${NATS_URL:-nats://127.0.0.1:4222}" $(BIN)/agentflow-audit $(ARGS)

lint: install
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

test: lint typecheck  ## ruff, mypy, then every test (SQLite and PostgreSQL)
	$(BIN)/pytest --durations=15

chaos: install  ## faults under load at full size (docs/reliability.md): prints lost, duplicates, recovery times
	AGENTFLOW_LONG_SUITES=1 $(BIN)/pytest tests/chaos

security: install  ## fuzzing, the attack matrix and hostile graphs at full size (docs/security.md)
	AGENTFLOW_LONG_SUITES=1 $(BIN)/pytest tests/security

bench: install  ## the benchmark suite (docs/benchmarks.md): table + .data/bench/results.json
	$(BIN)/python -m bench $(BENCH_ARGS)

lock: install  ## re-pin the whole dependency tree after changing pyproject.toml
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
