# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install cytoscreen, build demo slides and run the pipeline on them
#   make test   - create .venv, install cytoscreen with dev tools, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_out

.PHONY: setup browser demo test test-all lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/cytoscreen demo --out $(DEMO_OUT)

# The review pages are tested in Debian's headless Chromium (driven by Playwright's Python
# package; Playwright's own browser download is never used). Without it those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the browser tests will be skipped"

test: setup browser
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

lint: setup
	$(VENV)/bin/ruff check cytoscreen tests scripts
	$(VENV)/bin/ruff format --check cytoscreen tests scripts

typecheck: setup
	$(VENV)/bin/mypy cytoscreen

clean:
	rm -rf $(DEMO_OUT) .cytoscreen-cache .pytest_cache .mypy_cache .ruff_cache
