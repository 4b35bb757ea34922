# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates its own virtual environment (VENV) with PYTHON and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ABS_BIN = $(abspath $(BIN))
# The plugin distributions shipped beside the core, each with its own tests.
PLUGINS := plugins/pyarallel-dask plugins/pyarallel-redis plugins/pyarallel-tenacity
# pyarallel-redis's tests start a real redis-server (the Debian package), installed if absent.
REDIS_SERVER := $(shell command -v redis-server 2>/dev/null || echo /usr/bin/redis-server)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck docs pytest bench bench-quick bench-options hook-docs comparison-docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(PLUGINS:%=%/pyproject.toml) | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]' $(PLUGINS:%=-e %)
	touch $@ $(VENV)/.installed-base $(VENV)/.installed-docs

# The `test` extra includes the `docs` one (the test suite builds the site too).
$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $@ $(VENV)/.installed-base

$(VENV)/.installed-bench: pyproject.toml plugins/pyarallel-dask/pyproject.toml plugins/pyarallel-redis/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]' -e plugins/pyarallel-dask -e plugins/pyarallel-redis
	touch $@ $(VENV)/.installed-base

demo: $(VENV)/.installed-base
	$(BIN)/python examples/demo.py

LINTED := $(wildcard src tests examples benchmarks plugins docs/*.py)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# Each plugin is checked and tested from its own directory, with its own configuration,
# as its own distribution would be.
typecheck: $(VENV)/.installed-test
	$(BIN)/mypy --strict src
	for plugin in $(PLUGINS); do (cd $$plugin && $(ABS_BIN)/mypy --strict src) || exit 1; done

$(REDIS_SERVER):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server

pytest: $(VENV)/.installed-test $(REDIS_SERVER)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	for plugin in $(PLUGINS); do (cd $$plugin && $(ABS_BIN)/python -m pytest $(PYTEST_ARGS)) || exit 1; done

# The documentation site (mkdocs.yml, pages under docs/) into site/; any warning, such as a
# broken link or anchor, fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: lint typecheck docs pytest

# Benchmarks are not part of `make test`: they compare against other tools and take minutes.
bench: $(VENV)/.installed-bench $(REDIS_SERVER)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-quick: $(VENV)/.installed-bench $(REDIS_SERVER)
	$(BIN)/python benchmarks/run.py --quick $(BENCH_ARGS)

bench-options: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/options.py $(BENCH_ARGS)

# The hook reference in docs/plugins.md is generated from pyarallel/hookspecs.py.
hook-docs: $(VENV)/.installed-base
	$(BIN)/python docs/hook_reference.py

# The comparison table in docs/comparison.md, from the cases the last benchmark run measured
# (benchmarks/results/latest.json, merged into docs/comparison_data.json).
comparison-docs:
	$(PYTHON) docs/comparison_table.py --from benchmarks/results/latest.json

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .mypy_cache .ruff_cache .hypothesis site
