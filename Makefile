# The two commands: `make run` and `make test`. Both work on a fresh machine with Python 3.11+.
SHELL := /bin/bash
# The first interpreter that actually runs and is 3.11 or newer (pyenv shims may exist but not run).
PYTHON ?= $(shell for p in python3.12 python3.11 python3.13 python3; do $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
# Stamps of what is installed: the runtime dependencies (`make run`), and those plus the `test`
# extra (`make test`); a change to pyproject.toml or constraints.txt makes them stale.
LOCK_SUM := $(shell cat pyproject.toml constraints.txt 2>/dev/null | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-run-$(LOCK_SUM)
TEST_STAMP := $(VENV)/.installed-test-$(LOCK_SUM)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test audit install install-test lock check-python collectstatic clean sandbox

install: $(STAMP)
install-test: $(TEST_STAMP)

check-python:
	@test -n "$(PYTHON)" || { echo "Orchestrio needs Python 3.11 or newer (python3.11, python3.12 or python3 on PATH)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0) if sys.version_info >= (3, 11) else sys.exit("Orchestrio needs Python 3.11 or newer; found " + sys.version.split()[0] + " at " + sys.executable)'

# uv installs the dependencies (seconds, where pip took a minute): itself installed by pip into the
# venv, at the version constraints.txt pins. The project is not built or installed (it is a Django
# project, not a library): uv reads its dependencies straight from pyproject.toml. Compiled to
# bytecode at install, as pip does (uv does not by default): every later start imports faster.
# uv reads its own settings, not pip.conf: a private index or CA bundle is UV_INDEX_URL,
# UV_SYSTEM_CERTS=1 or SSL_CERT_FILE (https://docs.astral.sh/uv/reference/environment/).
$(UV): | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt uv

$(STAMP): pyproject.toml constraints.txt | $(UV)
	@echo "Installing the dependencies (constraints.txt) into $(VENV)"
	@$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -r pyproject.toml
	@rm -f $(VENV)/.installed-run-* && touch $@

$(TEST_STAMP): $(STAMP)
	@echo "Installing the test dependencies (the test extra) into $(VENV)"
	@$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -r pyproject.toml --extra test
	@rm -f $(VENV)/.installed-test-* && touch $@

# The local provider runs each instance in a bubblewrap sandbox as a user of its own: that needs
# bwrap and root. Installed here where that is possible (root with apt); elsewhere local instances
# run only the bundled agent and tenant commands are refused (docs/security.md), which we say.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing bubblewrap (the local provider's sandbox)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1; } \
	      || echo "NOTE: could not install bubblewrap: local instances run without the sandbox (tenant commands are refused)"; \
	  else \
	    echo "NOTE: the local sandbox needs root and bubblewrap (apt-get install bubblewrap): without them local instances run only the bundled agent and tenant commands are refused (docs/security.md)"; \
	  fi; }

# Development server: console, API, a worker and the scheduler in one process (SQLite, local
# provider, embedded queue). Set DATABASE_URL / REDIS_URL to use PostgreSQL / Redis instead.
# The first run writes var/local.env (development mode, a generated SECRET_KEY and ENCRYPTION_KEYS;
# orchestrio/localsettings.py), which every `manage.py` command reads afterwards.
run: export PUBLIC_URL := $(or $(PUBLIC_URL),http://$(HOST):$(PORT))
run: install sandbox
	@$(BIN)/python -m orchestrio.localsettings
	@$(BIN)/python manage.py migrate --noinput
	@$(BIN)/python manage.py seeddemo
	@exec $(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

# The whole suite. With DATABASE_URL / REDIS_URL set (as .ci/run does) it runs against them.
# In parallel (pytest-xdist): one worker per core and one more (the suite mostly waits on
# processes), each with a test database, a Redis database and a var/ of its own
# (tests/settings.py). worksteal: each worker starts on a contiguous share of the suite (a module's
# tests, and its module-scoped fixtures, mostly stay on one worker) and takes over part of another's
# when it runs out. PYTEST_WORKERS=0 runs the suite in this one process.
PYTEST_WORKERS ?= auto
test: install-test sandbox
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# pip-audit of the lock (needs the network to reach a vulnerability database; see .ci/audit).
audit: install-test
	bash .ci/audit

# Re-resolve dependencies from pyproject.toml into constraints.txt (the lock).
lock: check-python
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade "pip>=24"
	.venv-lock/bin/python -m pip install --quiet '.[test]' uv
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^orchestrio' > constraints.txt
	rm -rf .venv-lock

collectstatic: install
	$(BIN)/python manage.py collectstatic --noinput

clean:
	rm -rf $(VENV) var staticfiles
