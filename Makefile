# workerbridge: the two commands of the quick start are `make demo` and `make test`.
# Each creates the virtualenv and installs the project with its extras first.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck docs unit pure bench info reliability clean

$(STAMP): pyproject.toml setup.py src/workerbridge/_atomics.c
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

bench: $(STAMP)
	$(PY) -m workerbridge bench

info: $(STAMP)
	$(PY) -m workerbridge info

clean:
	rm -rf $(VENV) build docs/_build src/*.egg-info src/workerbridge/*.so
