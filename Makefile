# One entry point. On a fresh machine:
#   make workbook   run every notebook (papermill, into build/notebooks), the HTML edition
#                   (build/html/index.html) and the CLI artefacts (build/artefacts)
#   make test       ruff, then the full test suite (a real-browser test included)
#   make lab        JupyterLab on notebooks/
# Each target builds .venv from requirements.lock (torch 2.13.0, CPU build) and makes
# sure Graphviz's `dot` is installed; `make test` also makes sure Chromium is (for the
# browser test: Playwright drives the system Chromium and never downloads one).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.helix-installed

.PHONY: workbook test lint lab dot chromium clean

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: python >= 3.11 needed, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

dot:
	@scripts/ensure-dot.sh

chromium:
	@scripts/ensure-chromium.sh

workbook: $(STAMP) dot
	$(PY) -m helixlib.workbook --out build

test: $(STAMP) dot chromium lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

# JupyterLab on the repository, opened at notebooks/ (the executed, signed notebooks of
# `make workbook` are in build/notebooks). It refuses to start as root unless told; say so rather than fail
lab: $(STAMP) dot
	@if [ "$$(id -u)" = 0 ]; then echo "running as root: starting JupyterLab with --allow-root"; fi
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks \
		$$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean:
	rm -rf build .pytest_cache
