# Everything a fresh machine needs: `make test` and `make demo` set themselves up.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Interpreters for `make test-all`; a missing one is skipped with a message.
ALL_PYTHONS ?= 3.10 3.11 3.12 3.13

.PHONY: test test-all demo venv system-deps bench api lint docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test,lint,docs]'
	# The AWS IoT Device SDK pins an awscrt release of its own; the drop-in tests run it on
	# crtpy (and on the reference 0.38.0), so it is installed without its dependencies.
	$(PY) -m pip install -q --no-deps 'awsiotsdk==1.31.0'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages for the local test servers; installed only when missing and root.
system-deps:
	@bash tools/install_system_deps.sh

test: venv system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# The suite on every listed interpreter that this machine has, each in its own venv.
test-all: system-deps
	@for v in $(ALL_PYTHONS); do \
	  py=$$(ls $$HOME/.pyenv/versions/$$v*/bin/python$$v 2>/dev/null | head -n1); \
	  [ -n "$$py" ] || { command -v python$$v >/dev/null && python$$v -c '' 2>/dev/null && py=$$(command -v python$$v); }; \
	  if [ -z "$$py" ]; then echo "== Python $$v: not installed here, skipped"; continue; fi; \
	  echo "== Python $$v ($$py)"; \
	  $(MAKE) --no-print-directory test PYTHON=$$py VENV=.venv-$$v || exit 1; \
	done

demo: venv
	$(PY) -m crtpy demo

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

api: venv
	$(PY) ../shared/tools/api_diff.py

lint: venv
	$(PY) -m ruff check crtpy tests benchmarks
	$(PY) -m mypy --strict crtpy

docs: venv
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) .venv-3.* build *.egg-info .pytest_cache site
