# Two commands on a fresh clone: `make demo` and `make test`. Everything else is installed on demand.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint typecheck unit install bench clean

demo: install
	$(VENV)/bin/breakglass demo

test: install lint typecheck unit

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

unit: install
	$(VENV)/bin/pytest

bench: install
	$(VENV)/bin/python benchmarks/bench_guard.py

install: $(VENV)/.installed

# uv comes from PyPI into a private venv, so nothing is installed system-wide.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) uv.lock pyproject.toml $(wildcard providers/*/pyproject.toml)
	$(UV) sync --locked --all-packages --python $(PYTHON)
	touch $@

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
