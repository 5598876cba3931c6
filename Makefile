# Two commands on a fresh clone: `make demo` and `make test`. Everything else is installed on demand.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
CHROMIUM := /usr/bin/chromium
OPENSSL := /usr/bin/openssl
PDFTOPPM := /usr/bin/pdftoppm
export UV_PYTHON_DOWNLOADS := never
# Most live tests wait on servers and subprocesses rather than compute, so three workers on two cores
# roughly halve the run; a test file stays on one worker (its servers start once). PYTEST_PARALLEL= runs serially.
PYTEST_PARALLEL ?= -n 3 --dist loadfile

.PHONY: demo test lint typecheck unit install bench clean kubectl dist prerequisites

# The demo drill: serve, readers and notification receivers on loopback, the whole procedure,
# signed evidence (HTML, PDF, JSON) kept under build/demo-drill/.
demo: $(VENV)/.demo-installed
	rm -rf build/demo-drill
	$(VENV)/bin/breakglass drill local --keep build/demo-drill

# The demo needs the core with its serve, drill and notify extras, not the development toolchain.
# --inexact keeps whatever `make install` put there, so the demo and the tests share .venv.
$(VENV)/.demo-installed: $(UV) uv.lock pyproject.toml
	$(UV) sync --locked --inexact --no-dev --extra serve --extra drill --extra notify --python $(PYTHON)
	touch $@

# Wheels (and sdists) of the core and of every adapter under dist/, for installing elsewhere
# from a local directory: pip install --find-links dist/ breakglass breakglass-unleash
dist: $(UV)
	rm -rf dist
	$(UV) build --all-packages --out-dir dist

test: install lint typecheck unit

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

unit: install $(CHROMIUM) $(OPENSSL) $(PDFTOPPM) kubectl prerequisites
	$(VENV)/bin/pytest $(PYTEST_PARALLEL)

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

# What the tests need and make cannot install for you, checked up front so a fresh clone fails
# with one clear line instead of a test error later: Node.js 20+ with npm (unleash-server and the
# Node OFREP client), and psql (the Unleash tests). The PostgreSQL client comes from apt when missing.
prerequisites:
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "make: the tests need Node.js 20 or newer with npm (node and npm on PATH)" >&2; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || { echo "make: the tests need Node.js 20 or newer; found $$(node --version)" >&2; exit 1; }
	@command -v psql >/dev/null || { command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq postgresql-client; } || { echo "make: the tests need psql: apt-get install postgresql-client" >&2; exit 1; }

# The console's browser tests drive Debian's chromium: Playwright cannot fetch a browser of its own here.
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "make: the Debian package 'chromium' is missing (and there is no apt-get): install chromium" >&2; exit 1; }
	apt-get update -qq && apt-get install -y -qq chromium || { echo "make: could not install the Debian package 'chromium': run apt-get install -y chromium" >&2; exit 1; }

# The audit time-stamp tests run OpenSSL's own RFC 3161 authority (`openssl ts`) and check with it.
$(OPENSSL):
	@command -v apt-get >/dev/null || { echo "make: the Debian package 'openssl' is missing (and there is no apt-get): install openssl" >&2; exit 1; }
	apt-get update -qq && apt-get install -y -qq openssl || { echo "make: could not install the Debian package 'openssl': run apt-get install -y openssl" >&2; exit 1; }

# The suspension report's and the drill's PDFs are checked by opening them: pdftotext and pdftoppm (poppler-utils).
$(PDFTOPPM):
	@command -v apt-get >/dev/null || { echo "make: the Debian package 'poppler-utils' is missing (and there is no apt-get): install poppler-utils" >&2; exit 1; }
	apt-get update -qq && apt-get install -y -qq poppler-utils || { echo "make: could not install the Debian package 'poppler-utils': run apt-get install -y poppler-utils" >&2; exit 1; }

# Debian's kubectl (package kubernetes-client) checks the kill switch's local API server as a
# second client. It is unpacked under .tools/ rather than installed: on some machines
# /usr/bin/kubectl belongs to another package and dpkg would refuse the overwrite.
KUBECTL := $(TOOLS)/kubernetes-client/usr/bin/kubectl
kubectl: $(KUBECTL)

$(KUBECTL):
	@mkdir -p $(TOOLS)/debs
	@cd $(TOOLS)/debs && (apt-get download kubernetes-client >/dev/null 2>&1 || \
	  (apt-get update >/dev/null 2>&1 && apt-get download kubernetes-client >/dev/null 2>&1)) || \
	  { echo "make: cannot fetch Debian's kubernetes-client package (kubectl) with apt-get download;" \
	         "install it (apt-get install kubernetes-client) and set BREAKGLASS_KUBECTL=/usr/bin/kubectl" >&2; exit 1; }
	dpkg-deb -x $$(ls -t $(TOOLS)/debs/kubernetes-client_*.deb | head -1) $(TOOLS)/kubernetes-client
	@$(KUBECTL) version --client >/dev/null 2>&1 || { echo "make: $(KUBECTL) does not run" >&2; exit 1; }

clean:
	rm -rf $(VENV) $(TOOLS) dist .mypy_cache .ruff_cache .pytest_cache
