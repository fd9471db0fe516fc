# Vigil: `make demo` runs the platform, `make test` runs every check. Both install what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE        ?= $(HOME)/.cache/vigil
POETRY_VER   := 2.5.1
POETRY_VENV  := $(CACHE)/poetry-$(POETRY_VER)
POETRY       := $(POETRY_VENV)/bin/python scripts/run_poetry.py
VENV         := .venv
VIGIL        := $(VENV)/bin/vigil
PY           := $(VENV)/bin/python
PYTEST_ARGS  ?=
# Quix Streams is a comparison, not a dependency (ADR 0002): its bench runs in a virtualenv of its own.
QUIX_VER     := 3.28.1
QUIX_VENV    := $(CACHE)/quixstreams-$(QUIX_VER)

# Some machines set PYTHONDONTWRITEBYTECODE=1: every Python process (each service a test starts, the
# MLflow server) then recompiles numba, scipy, mlflow and friends from source, ~6 s per start. An
# empty value switches it off for everything make runs.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: help install stack down demo test lint unit integration format docs clean bench-quix

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

$(POETRY_VENV)/bin/poetry:
	python3 -m venv $(POETRY_VENV)
	$(POETRY_VENV)/bin/pip install -q "poetry==$(POETRY_VER)"

$(VENV)/.installed: pyproject.toml poetry.lock | $(POETRY_VENV)/bin/poetry
	$(POETRY) sync --no-interaction
	touch $@

install: $(VENV)/.installed ## Install Poetry (if missing) and the locked Python environment

stack: install ## Start Kafka, PostgreSQL and MLflow (installs them if missing)
	$(VIGIL) stack up
	$(VIGIL) db upgrade

down: ## Stop the local stack
	-$(VIGIL) stack down

demo: stack ## Run every service, stream synthetic transactions, serve the dashboard on :8000
	scripts/web.sh install
	scripts/web.sh build
	$(VIGIL) demo

lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## Apply ruff formatting and autofixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: install ## Fast tests that need no stack
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

test: stack lint ## Install, start the stack, run lint, type checks and every test
	$(VENV)/bin/pytest --durations=25 $(PYTEST_ARGS)

$(QUIX_VENV)/bin/python:
	python3 -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/pip install -q "quixstreams==$(QUIX_VER)" orjson

bench-quix: stack $(QUIX_VENV)/bin/python ## ADR 0002's comparison: the features stage's work on Quix Streams
	$(QUIX_VENV)/bin/python -m bench.features_quix

docs: install ## Regenerate generated documentation (README configuration table)
	$(PY) scripts/update_readme_config.py

clean: down ## Stop the stack and remove local state (.vigil/)
	rm -rf .vigil
