# Set-up and checks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint bench install clean demo browser

install: $(STAMP)

# Re-installs (and rebuilds the optional C accelerators) when the project metadata or a C
# source changes; `make clean` forces a fresh environment.
$(STAMP): pyproject.toml setup.py $(wildcard opentracing_sls/*.c opentracing_sls/csrc/*.h shim/*.c)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,integrations,shim]'
	@touch $(STAMP)

test: $(STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# The web UI's browser test drives Debian's Chromium through chromedriver. They are installed
# with apt when missing and apt is usable (root, or sudo without a password); otherwise that
# one test skips and says why (under CI=true it fails instead).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "note: no apt-get: the web UI browser test will be skipped"; exit 0; fi; \
	sudo=""; if [ "$$(id -u)" -ne 0 ]; then \
		if sudo -n true 2>/dev/null; then sudo="sudo -n"; else \
		echo "note: not root and no sudo: the web UI browser test will be skipped"; exit 0; fi; fi; \
	echo "installing chromium and chromium-driver (apt) for the web UI browser test"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
		--no-install-recommends chromium chromium-driver >/dev/null

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
