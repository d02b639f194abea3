# Every target installs what it needs into .venv by itself, from a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast test-shards lint typecheck demo bench clean system-packages serve

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Debian packages the browser tests need (Chromium, CJK fonts), when missing.
system-packages:
	scripts/system-packages

# Every test on the four topologies, then the one-answer scenarios on the fifth, then one
# run of the Patroni failover (ha-test: its leader lost twice mid-rush; fails on anything
# lost, doubled or reissued, or an audit that does not balance).
test: lint system-packages
	scripts/services
	$(BIN)/pytest -n 2 --dist loadgroup
	$(MAKE) --no-print-directory test-shards
	$(MAKE) --no-print-directory ha-test

# The one-answer scenarios on two sharded sequencers behind two gateways (docs/SCALE-OUT.md).
test-shards: venv
	scripts/services
	LIJIAN_TEST_TOPOLOGIES=pg-shards $(BIN)/pytest -n 2 --dist loadgroup tests/http/test_one_answer.py

# The quick loop while working: lint, the core, and the HTTP tests on one process; no
# PostgreSQL topology, no fault suites, no multi-process cluster tests (tests/cluster), no
# floods or real-rate waits (marked slow), no browser, no OpenAPI fuzz or generated
# client (make test runs everything). It installs promtool too: the alert rules' tests need it.
test-fast: lint system-packages
	LIJIAN_TEST_TOPOLOGIES=one $(BIN)/pytest -n 3 --dist loadgroup -m "not slow and not browser" \
		--ignore=tests/postgres --ignore=tests/durability --ignore=tests/sim --ignore=tests/cluster \
		--ignore=tests/http/test_schemathesis.py --ignore=tests/http/test_openapi_client.py

demo: venv
	$(BIN)/lijian demo

# The seed campaign on SQLite for trying the API: prints the development clients' secrets
# (out/serve/clients.toml, kept across runs) and where the API and the dashboard are.
PORT ?= 8000
serve: venv
	$(BIN)/lijian sandbox --dir out/serve --port $(PORT)

bench: venv system-packages
	scripts/services
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache out

# --- torture (PostgreSQL scale-out fault suite; see tests/postgres/torture.py) ---
.PHONY: torture ha-test
TORTURE_RUNS ?= 100
FAILOVER_RUNS ?= 20
HA_RUNS ?= 1
HA_TORTURE_RUNS ?= 20
HA_P99_MAX_S ?= 10
torture: venv
	$(BIN)/python -m tests.postgres.torture --runs $(TORTURE_RUNS)
	LIJIAN_FAILOVER_RUNS=$(FAILOVER_RUNS) $(BIN)/pytest -q -p no:randomly tests/postgres/test_pg_failover.py
	scripts/ha-packages
	$(BIN)/python -m tests.ha.patroni_failover --runs $(HA_TORTURE_RUNS) --p99-max-s $(HA_P99_MAX_S)

# lijian on a Patroni cluster (3 etcd, 3 PostgreSQL, synchronous_mode), its leader lost
# twice mid-rush; prints lost/doubled/reissued and the seconds without service
# (tests/ha/patroni_failover.py), and where they went (Patroni's promotion, lijian's
# share). `make torture` runs it HA_TORTURE_RUNS times and fails when the p99 of the
# seconds without service is above HA_P99_MAX_S.
ha-test: venv
	scripts/ha-packages
	$(BIN)/python -m tests.ha.patroni_failover --runs $(HA_RUNS)
