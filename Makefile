# Two commands set everything up on a fresh clone: `make demo` and `make test`. Packages are
# installed with uv (from PyPI, into the environment first): under half of pip's CPU time here.
# uv reads none of pip's settings (its indexes, certificates); where it cannot install, pip does.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-slow lint fmt bench bench-suite clean browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing Rally and its dependencies into $(VENV) (under a minute the first time)..."
	@$(BIN)/python -m pip install -qq --disable-pip-version-check 'uv==0.13.9' && \
	  $(BIN)/uv pip install -q --native-tls --python $(BIN)/python --compile-bytecode -e '.[dev]' || \
	  { echo "uv could not install them; installing with pip instead (slower)"; \
	    $(BIN)/python -m pip install -qq --disable-pip-version-check -e '.[dev]'; }
	@touch $(STAMP)

## demo: rehearse the example campaign's 12-week sprint (simulated creators, approvers, audience) and report it
demo: $(STAMP)
	@$(BIN)/rally demo

## test: lint, type-check and run the quick tests (all but those marked slow), on every core
## (at most four workers)
test: $(STAMP) lint
	@$(BIN)/pytest --numprocesses auto --maxprocesses 4 --dist loadgroup -m "not slow"

## test-slow: the tests marked slow: those that start processes (rally runs, servers, Prefect's
## workers and local server, browsers) or draw hundreds of requests; CI runs both
test-slow: $(STAMP) browser
	@$(BIN)/pytest --numprocesses auto --maxprocesses 4 --dist loadgroup -m slow

## browser: Debian's chromium for the page tests (Playwright cannot download browsers) and
## axe-core from the npm registry for their accessibility checks
AXE := $(VENV)/axe/node_modules/axe-core/axe.min.js
browser: $(AXE)
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests (once)..."; \
	    apt-get install -y -qq chromium >/dev/null 2>&1 || \
	      { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	  else \
	    echo "chromium not found: browser tests will skip (install Debian's chromium)"; \
	  fi; }

$(AXE):
	@mkdir -p $(VENV)/axe
	@npm install --silent --no-audit --no-fund --prefix $(VENV)/axe axe-core@4.10.3

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

fmt: $(STAMP)
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

## bench: run every speed benchmark and name those that missed (bench-suite, which runs make test on a fresh clone, apart)
bench: $(STAMP)
	@$(BIN)/python -m benchmarks

bench-suite: $(STAMP)
	@$(BIN)/python benchmarks/suite.py

clean:
	rm -rf $(VENV) .rally .mypy_cache .ruff_cache .pytest_cache *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

## migration: draft the next store migration, e.g. make migration m="add video table"
migration: $(STAMP)
	@$(BIN)/python -c 'import sys; from store.db import write_migration; print(write_migration(sys.argv[1]))' "$(m)"
