# `make run` serves trend on sqlite:///trend.db with the worker; `make test` runs every check.
PYTHON ?= python3
# `make run PORT=9000 HOST=0.0.0.0` serves elsewhere (binding beyond loopback wants TREND_API_KEY).
PORT ?= 8000
HOST ?= 127.0.0.1
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check lint browser bench clean

$(BIN)/trend: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server]'
	touch $@

$(VENV)/.test-deps: $(BIN)/trend
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/trend
	$(BIN)/trend serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The dashboard tests drive Debian's Chromium; Korean keys need the CJK fonts in screenshots.
browser:
	@if ! command -v chromium > /dev/null || ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk > /dev/null; \
	fi

# Three workers on two cores: most tests wait on a database server or a process of their own, so a
# third keeps the cores busy while the others wait (with four backends, two left CI near 15 minutes).
test: lint browser
	$(BIN)/pytest -n 3

# The edit loop: lint, types and every test that starts no process of its own (no trend server,
# worker or browser), on SQLite, in under two minutes. `make test` runs everything, on every backend.
check: lint
	env -u TREND_TEST_POSTGRES_URL -u TREND_TEST_CITUS_URL -u TREND_TEST_MARIADB_URL $(BIN)/pytest -n 2 -m "not slow" -q

bench: $(VENV)/.test-deps
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build dist src/*.egg-info
