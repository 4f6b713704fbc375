# ShareTube: `make run` starts the whole system on this machine; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-py test-js lint format fanout clean

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

test: install lint test-js test-py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-js:
	node --test clients/js/test/

test-py: install
	$(BIN)/python -m pytest

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Fan-out from one seek to N members of one room, on a stack it starts itself.
CLIENTS ?= 100
ROUNDS  ?= 50
fanout: install
	$(BIN)/python scripts/fanout.py --start --clients $(CLIENTS) --rounds $(ROUNDS)

clean:
	rm -rf $(VENV) .run .bench .pytest_cache .ruff_cache
