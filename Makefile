# The two commands a newcomer needs: `make demo` (no servers) and `make test` (everything,
# against a real Kafka broker and redis-server that the tests start through scripts/stack).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install demo test test-unit bench stack-up stack-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/intentstream demo

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	INTENTSTREAM_SKIP_INTEGRATION=1 $(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

stack-up: install
	scripts/stack up

stack-down:
	scripts/stack down

clean: stack-down
	rm -rf $(VENV) .stack build *.egg-info
