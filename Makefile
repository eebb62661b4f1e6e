# Emailer: `make run` (the whole system on embedded defaults) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test bench lint format clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

# Development defaults: DEBUG on (a dev-only SECRET_KEY), SQLite, huey on SQLite,
# mail to the bundled sink on 127.0.0.1:1025. Anything set in the environment or
# in .env wins.
run: $(VENV)/.runtime
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(PY) manage.py demo_setup
	DEBUG=$${DEBUG:-1} $(PY) -m devtools.devrun

test: $(VENV)/.dev
	$(VENV)/bin/pytest

bench: $(VENV)/.dev
	test -x /usr/sbin/smtp-sink || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix)
	$(PY) -m bench

# ruff (errors and formatting) and the layer contracts of pyproject.toml (import-linter).
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) db.sqlite3* huey.sqlite3* var media staticfiles test-artifacts
