# The two commands a newcomer needs: `make demo` (no servers) and `make test` (everything,
# against a real Kafka broker and redis-server that the tests start through scripts/stack).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo lint test test-unit bench stack-up stack-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/intentstream demo

# Ruff and mypy, both configured in pyproject.toml (a few seconds; mypy's first run ~20 s)
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: lint
	INTENTSTREAM_SKIP_INTEGRATION=1 $(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

stack-up: install
	scripts/stack up

stack-down:
	scripts/stack down

clean: stack-down
	rm -rf $(VENV) .stack build *.egg-info .mypy_cache .ruff_cache
