# Every target works on a fresh Debian machine with only Python and access to the
# package registries: `make test` and `make demo` install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := redis-server nutcracker postgresql iptables
TOPOLOGY ?= cluster

.PHONY: venv system-deps lint unit integration langgraph-tests test demo bench bench-cross-thread bench-pool bench-graphs bench-cpu bench-retention bench-partition bench-store soak compat cluster-up cluster-down cluster-status clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

# Debian's redis-server (plain Redis 7.0, and TLS), nutcracker (the proxy topology) and
# postgresql (the postgres topology; Debian keeps it off PATH, in /usr/lib/postgresql/*/bin).
# Installed when missing and possible (root with apt-get); otherwise their tests skip.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v nutcracker >/dev/null 2>&1 || [ -x /usr/sbin/nutcracker ] || missing="$$missing nutcracker"; \
	command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing="$$missing iptables"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; \
	  else \
	    echo "not installing$$missing (needs root and apt-get): their tests will skip"; \
	  fi; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv system-deps
	$(PY) -m pytest tests/integration -q -rs

# LangGraph's own tests (of the installed langgraph version, from its sdist, cached in
# .cache/langgraph-tests/) with our savers in its checkpointer fixtures, on a
# standalone server and a cluster; 2 xdist workers; then langgraph-checkpoint's store tests on
# our store (standalone, cluster, plain). See langgraph_suite/.
langgraph-tests: venv
	$(PY) -m langgraph_suite
	$(PY) -m langgraph_suite.stores

# The whole suite: lint, type checks, unit tests, integration tests on every topology
# (the harness starts the servers and stops them at the end of the run), then
# LangGraph's own tests on our savers.
test: venv system-deps lint
	$(PY) -m pytest tests -q -rs
	$(PY) -m langgraph_suite
	$(PY) -m langgraph_suite.stores
	$(MAKE) compat

# The compatibility job: the package in small venvs of its own (.venv-compat/NAME) with
# the versions .ci/compat/NAME.txt pins (the lowest bounds pyproject.toml declares;
# a redis-py 7.x), running the tests that touch what differs between versions.
COMPAT_JOBS := oldest redis7 redis80
COMPAT_TESTS := tests/unit/test_compat.py tests/integration/test_conformance.py \
	tests/integration/test_round_trips.py tests/integration/test_concurrency.py \
	tests/integration/test_failover.py tests/integration/test_out_of_memory.py \
	tests/integration/test_timeouts.py tests/integration/test_store.py

compat: system-deps $(COMPAT_JOBS:%=compat-%)

compat-%: .ci/compat/%.txt pyproject.toml
	test -x .venv-compat/$*/bin/python || $(PYTHON) -m venv .venv-compat/$*
	.venv-compat/$*/bin/python -m pip install --quiet --upgrade pip
	.venv-compat/$*/bin/python -m pip install --quiet -e '.[compat]' -r .ci/compat/$*.txt
	.venv-compat/$*/bin/python -m pip list 2>/dev/null | grep -E '^(redis|langgraph-checkpoint|redisvl) '
	.venv-compat/$*/bin/python -m pytest $(COMPAT_TESTS) -q -rs -p no:cacheprovider

demo: venv
	$(PY) -m examples.demo

# Benchmarks print tables (not part of `make test`): ours against the reference saver,
# cross-thread queries at scale, and writers under load while a primary is killed.
bench: venv
	$(PY) -m benchmarks.compare

bench-cross-thread: venv
	$(PY) -m benchmarks.cross_thread

# 500 concurrent graph runs on one async saver on a cluster, against InMemorySaver.
bench-pool: venv
	$(PY) -m benchmarks.pool

# A ReAct-style agent end to end on every peer saver (PostgreSQL included), at
# loopback and behind the harness's latency proxy (0.5 and 2 ms RTT).
bench-graphs: venv system-deps
	$(PY) -m benchmarks.graphs

# The saver's own CPU, client and server, per turn and per call, against the AWS
# saver, plainredis, the reference and InMemorySaver, in every write mode.
bench-cpu: venv system-deps
	$(PY) -m benchmarks.cpu

# A 10,000-step thread with retention={"keep_last": 10} against one without.
bench-retention: venv
	$(PY) -m benchmarks.retention

# A network partition under load (cluster/network.py: namespaces, veth, iptables; root
# only), each mode on a cluster and on Sentinel: prints the README's Partitions table.
bench-partition: venv system-deps
	$(PY) -m benchmarks.partition

# Our store against RedisStore, ValkeyStore, PostgresStore and InMemoryStore.
bench-store: venv system-deps
	$(PY) -m benchmarks.store
	$(PY) -m benchmarks.store_vectors

soak: venv system-deps
	$(PY) -m benchmarks.soak

cluster-up: venv system-deps
	$(PY) -m cluster up $(TOPOLOGY)
	$(PY) -m cluster status $(TOPOLOGY)

cluster-down: venv
	$(PY) -m cluster down

cluster-status: venv
	$(PY) -m cluster status

clean: cluster-down
	rm -rf .cluster-run .pytest_cache .mypy_cache .ruff_cache .hypothesis .venv-compat
