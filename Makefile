# thecloud: install, run, lint, test. See README.md.
#
# Every recipe runs as ONE bash script (.ONESHELL) with -euo pipefail, so a failing command fails the target.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PYTEST_ARGS ?=
BENCH_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages needed to create a venv and to build C extensions that have no wheel (libvirt-python).
APT_PACKAGES := python3-venv python3-dev gcc pkg-config libvirt-dev

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install services up down lint test bench clean

help:
	@echo "make up       install if needed, start the all-in-one cluster (scripts/up.sh)"
	echo "make down     stop what 'make up' started (scripts/down.sh)"
	echo "make test     install if needed, lint, then pytest (PYTEST_ARGS='...' passes arguments)"
	echo "make lint     ruff check, mypy, lint-imports"
	echo "make bench    run the benchmarks (python -m tests.bench, BENCH_ARGS='...')"
	echo "make install  create/update $(VENV) (only when pyproject.toml changed)"
	echo "make services install and start what the tests use: dockerd, libvirtd, nftables (scripts/services/)"
	echo "make clean    remove $(VENV) and build/cache artifacts (keeps .thecloud/)"

install: $(STAMP)

# Rebuilt when the stamp is missing (fresh checkout, after `make clean`) or pyproject.toml is newer.
$(STAMP): pyproject.toml
	@venv_usable() { [ -x "$(BIN)/python" ] && "$(BIN)/python" -m pip --version >/dev/null 2>&1; }
	scripts/services/packages.sh $(APT_PACKAGES)
	if ! venv_usable; then
	  rm -rf "$(VENV)"
	  echo "+ $(PYTHON) -m venv $(VENV)"
	  $(PYTHON) -m venv "$(VENV)"
	  venv_usable || { echo "install: $(VENV) has no usable pip" >&2; exit 1; }
	fi
	echo "+ $(BIN)/pip install -e '.[dev]'"
	"$(BIN)/pip" install -q -e '.[dev]'
	touch "$(STAMP)"

up: install
	@THECLOUD_VENV="$(VENV)" scripts/up.sh

down:
	@scripts/down.sh

# The three checkers; each failure is appended to $$failed, so all of them run even when one fails.
define LINT_STEPS
echo "+ ruff check ."
"$(BIN)/ruff" check . || failed="$$failed ruff"
echo "+ mypy"
"$(BIN)/mypy" || failed="$$failed mypy"
echo "+ lint-imports"
"$(BIN)/lint-imports" || failed="$$failed lint-imports"
endef

lint: install
	@failed=""
	$(LINT_STEPS)
	if [ -n "$$failed" ]; then echo "lint: FAILED:$$failed" >&2; exit 1; fi
	echo "lint: OK"

# Lint, then pytest (run even when lint failed, to report everything); non-zero if anything failed.
# pytest exit code 5 (no tests collected) is a failure too: nothing special-cases it.
services:
	@scripts/services/all.sh

test: install services
	@failed=""
	$(LINT_STEPS)
	echo "+ $(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)"
	rc=0
	"$(BIN)/python" -m pytest -q -ra $(PYTEST_ARGS) || rc=$$?
	if [ "$$rc" = 5 ]; then echo "test: pytest collected no tests" >&2; fi
	if [ "$$rc" != 0 ]; then failed="$$failed pytest(exit $$rc)"; fi
	if [ -n "$$failed" ]; then echo "test: FAILED:$$failed" >&2; exit 1; fi
	echo "test: OK"

bench: install
	@echo "+ $(BIN)/python -m tests.bench $(BENCH_ARGS)"
	"$(BIN)/python" -m tests.bench $(BENCH_ARGS)

clean:
	@echo "+ rm -rf $(VENV) build dist *.egg-info caches __pycache__"
	rm -rf "$(VENV)" build dist ./*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis \
	  .import_linter_cache
	find . \( -path ./.git -o -path ./.thecloud -o -path "./$(VENV)" \) -prune \
	  -o -type d -name __pycache__ -exec rm -rf {} +
