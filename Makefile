# workerbridge: the two commands of the quick start are `make demo` and `make test`.
# Each creates the virtualenv and installs the project with its extras first.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck docs unit pure bench bench-full info reliability clean

$(STAMP): pyproject.toml setup.py src/workerbridge/_atomics.c src/workerbridge/_fast.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[network,progress,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py

lint: $(STAMP)
	$(PY) -m ruff check src tests examples benchmarks scripts
	$(PY) -m ruff format --check src tests examples benchmarks scripts

typecheck: $(STAMP)
	$(PY) -m mypy

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	$(PY) -m sphinx -W -n -q -b doctest docs docs/_build/doctest

unit: $(STAMP)
	$(PY) -m pytest -q

# The whole suite again with the pure-Python atomics (no C extension).
pure: $(STAMP)
	WORKERBRIDGE_PURE_ATOMICS=1 $(PY) -m pytest -q tests/unit tests/pool tests/test_bridge.py

test: lint typecheck docs unit pure

# Full-size chaos, fuzzing, tampering, overload and soak runs (minutes, not part of `make test`).
reliability: $(STAMP)
	$(PY) -m pytest -q -m heavy tests/reliability
	$(PY) scripts/reliability.py

# The peers the benchmarks compare against (loky, pebble, mpire) and matplotlib.
BENCH_STAMP = $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# About a minute: every case at reduced sizes and repetitions.
bench: $(BENCH_STAMP)
	$(PY) -m workerbridge bench --quick

# About six minutes: the figures published in docs/performance.rst.
bench-full: $(BENCH_STAMP)
	$(PY) -m workerbridge bench --full --json docs/_static/bench.json --text docs/_static/bench.txt \
		--plot docs/_static/performance.png

info: $(STAMP)
	$(PY) -m workerbridge info

clean:
	rm -rf $(VENV) build docs/_build src/*.egg-info src/workerbridge/*.so
