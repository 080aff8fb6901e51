# Two commands on a fresh machine: `make run` (gateway on an embedded PostgreSQL) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# OTA_PORT=… make run works as well as make run PORT=…
PORT   ?= $(or $(OTA_PORT),8080)

# Demo bootstrap used by `make run` (override on the command line or in the environment).
OTA_ORG         ?= demo-org
OTA_PROJECT     ?= demo-project
OTA_ORG_TOKEN   ?= oat_demo_org_token_change_me
OTA_PROJECT_KEY ?= demo0project0key0change0me000000

.PHONY: run test test-deps install postgres clean
.DEFAULT_GOAL := run

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/.installed

# PostgreSQL server binaries (initdb/pg_ctl) for the embedded cluster; installed from Debian if missing.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	    { command -v pg_config >/dev/null && test -x "$$(pg_config --bindir)/initdb"; }; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing PostgreSQL server binaries (apt-get install postgresql)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
	    echo "PostgreSQL server binaries are missing: install the 'postgresql' package, or set DATABASE_URL"; exit 1; \
	fi

# The demo credentials are printed once the gateway answers, after everything else the first run
# prints (installation, the embedded PostgreSQL), so they are the last thing on the screen.
run: install postgres
	@OTA_ORG=$(OTA_ORG) OTA_PROJECT=$(OTA_PROJECT) OTA_ORG_TOKEN=$(OTA_ORG_TOKEN) OTA_PROJECT_KEY=$(OTA_PROJECT_KEY) \
	  $(BIN)/ota-gateway serve --port $(PORT) & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' INT TERM; \
	for i in $$(seq 1 600); do \
	  if $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
	      http://127.0.0.1:$(PORT)/readyz 2>/dev/null; then \
	    printf '\n  ota-gateway is ready on http://127.0.0.1:%s   (dashboard: /ui/, stop: Ctrl-C)\n' $(PORT); \
	    printf '    organization  %s\n    project       %s\n    org token     %s\n    project key   %s\n\n' \
	      $(OTA_ORG) $(OTA_PROJECT) $(OTA_ORG_TOKEN) $(OTA_PROJECT_KEY); break; fi; \
	  kill -0 $$pid 2>/dev/null || break; sleep 0.2; done; \
	wait $$pid

# Debian packages the test suite drives for real: swupdate (a hawkBit DDI device, with openssl to
# sign its test images), nginx (`nginx -t` on deploy/) and chromium (the dashboard's browser test,
# driven by Playwright; never a downloaded browser); curl and jq (the README's commands, which
# tests/test_readme.py runs). Installed from Debian when missing and we are root; elsewhere the
# tests that need them skip (and fail under CI=true).
TEST_DEBS ?= swupdate openssl nginx chromium curl jq

test-deps:
	@missing=""; for pkg in $(TEST_DEBS); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages for the tests:$$missing"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
	    echo "could not install:$$missing (the tests that need them will skip, or fail in CI)"; \
	else \
	    echo "missing Debian packages:$$missing (the tests that need them will skip)"; \
	fi

test: install postgres test-deps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .ota-data
