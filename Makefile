# `make demo` and `make test` each create the virtual environment if it is missing.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.effvid-installed

.PHONY: setup lint test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,pas]'
	touch $(STAMP)

# ruff (config in pyproject.toml [tool.ruff]) and the import contracts of DESIGN.md's layers
# ([tool.importlinter]); `make test` runs this first, so CI fails on a violation.
lint: setup
	$(VENV)/bin/ruff check effvid tests benchmarks
	$(VENV)/bin/lint-imports

test: setup lint
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/effvid demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
