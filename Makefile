# The README's two commands: `make demo` and `make test`. Everything else is a helper for those.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck pytest demo sandbox bench soak schema clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check worker tests $(wildcard benchmarks)
	$(BIN)/ruff format --check worker tests $(wildcard benchmarks)
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy worker

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: install
	$(BIN)/python -m worker.demo

sandbox: install
	$(BIN)/ppw sandbox --churn 6

bench: install
	$(BIN)/python -m benchmarks

# Not part of `make test`: ppw run against a churning sandbox for MINUTES (default 30).
MINUTES ?= 30
SOAK_ARGS ?=
soak: install
	$(BIN)/python -m benchmarks.soak --minutes $(MINUTES) $(SOAK_ARGS)

schema: install
	$(BIN)/ppw rules schema

clean:
	rm -rf $(VENV) .ppw .mypy_cache .pytest_cache .ruff_cache
