# `make train` and `make test` set up .venv first; `make setup` only sets up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The project's offline MNIST copy when it sits beside the repo; elsewhere the
# empty value means the user's cache, downloading on first use.
SEQMNIST_DATA_DIR ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data/mnist),)
export SEQMNIST_DATA_DIR

.PHONY: setup system-packages train test lint clean

setup: $(VENV)/.installed

# torch is pinned and installed first: left to resolve it alone, pip would
# pull a newer build with gigabytes of CUDA. The project accepts torch>=2.4.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# A second `make train` never replaces the run: a finished one is reported,
# a stopped one (it has a config.json but no summary.json) is continued.
RUN ?= runs/default
train: setup
	@if [ -f "$(RUN)/summary.json" ]; then \
		echo "$(RUN) is trained already: see it with '$(BIN)/seqmnist eval $(RUN)';" \
			"train it again from scratch with '$(BIN)/seqmnist train --preset default --out $(RUN) --overwrite'"; \
	elif [ -f "$(RUN)/config.json" ]; then \
		$(BIN)/seqmnist train --resume "$(RUN)"; \
	else \
		$(BIN)/seqmnist train --preset default --out "$(RUN)"; \
	fi

# Some tests need Debian packages: the page's browser test drives Chromium through
# Playwright (Playwright's own browser download needs the internet), a sweep test
# runs two workers on a real PostgreSQL server, and the native CPU kernels
# (model/native) are built by a C++ compiler. They are installed here where missing
# and this user can (root with apt-get); elsewhere those tests skip and say why
# (without a compiler seqmnist runs its slower Python loops instead).
SYSTEM_PACKAGES := chromium fonts-liberation postgresql g++
system-packages:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -d /usr/share/fonts/truetype/liberation ] || missing="$$missing fonts-liberation"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v c++ >/dev/null || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing for the browser, PostgreSQL and native-kernel tests"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq $$missing >/dev/null) \
				|| echo "could not install$$missing: the tests that need them will skip"; \
		else \
			echo "missing$$missing (sudo apt-get install$$missing): the tests that need them will skip"; \
		fi; \
	fi

test: setup system-packages
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) runs
