# Postline: `make run` starts it, `make test` proves it. Both set themselves up on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Postline needs Python 3.11 or newer (found: $$($(PYTHON) --version 2>&1)); set PYTHON=python3.x"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e '.[test]'
	@touch $@

## run: start Postline on SQLite in ./postline-data (first run creates an account and a token;
## any sender domain is allowed, for development)
run: $(VENV)/.installed
	$(BIN)/postline serve --bootstrap --sender-policy any

## test: lint, then the whole suite (the PostgreSQL half uses $$POSTLINE_TEST_POSTGRES_URL)
test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## bench: throughput and latency beside each scenario's peer; results in bench/results/
## (needs wrk, and Postfix's smtp-source and postfix for smtp-ingest: installed here as root)
## BENCH_ARGS passes options, e.g. BENCH_ARGS='--scenarios replay --replay-events 100000'
bench: $(VENV)/.installed-test
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get install -y -q wrk >/dev/null; } || { echo "make bench needs wrk (apt-get install wrk)"; exit 1; }
	@[ -x /usr/sbin/smtp-source ] || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null; } || \
	  { echo "make bench needs Postfix for smtp-ingest (apt-get install postfix)"; exit 1; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
