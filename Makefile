# Two entry points: `make demo` and `make test`. Each installs what it needs on a fresh
# Debian machine: a virtualenv in .venv, and Debian packages when running as root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

# Debian's prometheus (promtool + server) for the real-Prometheus tests and the demo.
system-deps:
	@./scripts/install-system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install system-deps lint
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/canary-analyzer demo

bench: install
	$(BIN)/python benchmarks/judge/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
