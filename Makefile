# Every target creates and uses .venv by itself: on a fresh machine
# `make run` and `make test` need nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_OUT := mcpctl/_proto
PROTOS := $(wildcard protos/mcp/v1/*.proto)

.PHONY: venv run test test-unit test-integration lint proto bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: start a local 3-node cluster on 127.0.0.1:7101-7103 (Ctrl-C stops it)
run: $(STAMP)
	$(VENV)/bin/mcpctl dev --nodes 3 --port 7101 --data-dir .mcp-dev

## test: unit and integration tests (real clusters on 127.0.0.1)
test: $(STAMP)
	$(PY) -m pytest -q tests

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check mcpctl tests bench
	$(VENV)/bin/ruff format --check mcpctl tests bench
	$(VENV)/bin/mypy

## proto: regenerate mcpctl/_proto from protos/ (checked in; a test fails when stale)
proto: $(STAMP)
	$(PY) -m mcpctl._proto.generate

bench: $(STAMP)
	$(PY) -m bench.kv_bench

clean:
	rm -rf $(VENV) .mcp-dev .pytest_cache .mypy_cache .ruff_cache
