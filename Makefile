# The developer's front door. `make run` and `make test` work on a fresh machine
# that has only Python 3.11+ and make.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKSPACE ?= workspace
# Debian packages the test suite and the benchmarks need (installed only when missing).
# libcryptx-perl: Mail::DKIM verifies Ed25519 with it (releases after 1.20230212).
SYSTEM_PACKAGES := spamassassin chromium libmail-dkim-perl libcryptx-perl
# postfix: bench/send.py sends into its smtp-sink and measures that sink with smtp-source
# (both run directly; the Postfix mail service itself is not started or needed).
BENCH_PACKAGES := wrk postfix
# The clock-shifting runs of `make test-future` (libfaketime).
FUTURE_PACKAGES := faketime
# How far ahead `make test-future` moves the clock: about one year and five years.
FUTURE_OFFSETS := +400d +1900d

# Documents with generated parts (cog): the settings table and every command's --help.
DOCS := README.md $(wildcard docs/*.md)

.PHONY: run test test-future lint format docs bench system-deps bench-deps apt-install clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "newsletter needs Python 3.11 or newer; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	@$(BIN)/newsletter init $(WORKSPACE)
	exec $(BIN)/newsletter --workspace $(WORKSPACE) run

system-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(SYSTEM_PACKAGES)"

bench-deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(BENCH_PACKAGES)"

apt-install:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/cog --check $(DOCS)

format: $(VENV)/.installed-test
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# Regenerate the parts of the docs that the code knows (after changing a setting or a command).
docs: $(VENV)/.installed-test
	$(BIN)/cog -r $(DOCS)

test: $(VENV)/.installed-test system-deps lint
	$(BIN)/pytest

# The whole suite with the wall clock moved ahead, to catch tests that hold only until
# their day comes. The monotonic clock is shifted too: Python's time.sleep fails with
# EINVAL when only the wall clock is faked.
test-future: $(VENV)/.installed-test system-deps
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(FUTURE_PACKAGES)"
	@for offset in $(FUTURE_OFFSETS); do \
	  echo "== the suite with the clock at $$offset"; \
	  faketime -f $$offset $(BIN)/pytest -p no:cacheprovider || exit 1; \
	done

bench: $(VENV)/.installed-test bench-deps
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
