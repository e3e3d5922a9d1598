# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ndl-installed
ASSETS := src/ndl/web/static/ndl.css

.PHONY: demo test check lint install assets bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(ASSETS): package.json package-lock.json $(wildcard src/ndl/web/assets/*) scripts/build_assets.sh
	bash scripts/build_assets.sh

install: $(STAMP) $(ASSETS)

assets: $(ASSETS)

demo: install
	$(BIN)/ndl demo

test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

# mypy runs strict, as [tool.mypy] in pyproject.toml says: any new type error fails lint.
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/ndl

check: lint test

bench: install
	$(BIN)/python bench/query_roundtrip.py

clean:
	rm -rf $(VENV) node_modules .ndl src/ndl/web/static
