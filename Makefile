# Everything a fresh machine needs: `make test` and `make demo` set themselves up.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo venv system-deps bench api clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages for the local test servers; installed only when missing and root.
system-deps:
	@bash tools/install_system_deps.sh

test: venv system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	$(PY) -m crtpy demo

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

api: venv
	$(PY) ../shared/tools/api_diff.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
