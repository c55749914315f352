# Set-up and checks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint bench install clean demo

install: $(STAMP)

# Re-installs (and rebuilds the optional C accelerators) when the project metadata or a C
# source changes; `make clean` forces a fresh environment.
$(STAMP): pyproject.toml setup.py $(wildcard opentracing_sls/*.c shim/*.c)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,integrations,shim]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# BookInfo traced end to end: the shim (local store, query UI) and the four services, some
# page views, a summary; runs until Ctrl-C. Options: make demo DEMO_ARGS="--help".
demo: $(STAMP)
	$(PY) examples/bookinfo/demo.py $(DEMO_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	@for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
	find opentracing_sls shim -name '*.so' -delete
