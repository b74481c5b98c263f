# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch this machine keeps on disk; never a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/mersv
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
# The demo's web port: `make demo PORT=8001`.
PORT ?= 8000

.PHONY: demo test install lint format services chromium clean-demo bench audit

# pip's output (warnings included) goes to $(PIP_LOG); its last lines are shown if it fails.
PIP_LOG := var/logs/pip.log
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@mkdir -p $(dir $(PIP_LOG)) && echo "installing into $(VENV) (pip's output in $(PIP_LOG))"
	@{ $(PIP) --upgrade pip setuptools wheel && $(PIP) "$(TORCH_PIN)" && $(PIP) -e ".[test]"; } \
	  > $(PIP_LOG) 2>&1 || { tail -n 30 $(PIP_LOG); echo "pip failed: see $(PIP_LOG)"; exit 1; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py run_demo --host 127.0.0.1 --port $(PORT)

services:
	@bash .ci/services.sh

chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null || { echo "chromium is missing: install Debian's chromium package (apt-get install chromium)"; exit 1; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) services chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  MERSV_VAR_DIR=$(CURDIR)/var/test CHROMIUM=$$(command -v chromium) \
	  $(BIN)/pytest $(PYTEST_ARGS)

# Known vulnerabilities in the installed packages (pip-audit; exceptions in .ci/audit-ignore.txt).
audit: $(STAMP)
	BIN=$(BIN) bash .ci/audit.sh

bench: $(STAMP)
	@ls benchmarks/*.py | sed 's/^/  /'

clean-demo:
	rm -rf var/mersv.sqlite3* var/media var/celery var/exports
