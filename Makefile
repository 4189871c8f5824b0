# The two commands a newcomer runs: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SYSDEPS_STAMP := $(VENV)/.sysdeps
# Debian packages: Mesa's EGL + llvmpipe for the moderngl orbit renderer on CPU.
APT_PACKAGES := libegl1 libgl1-mesa-dri libegl-mesa0
PYTEST_ARGS ?=

.PHONY: demo test bench setup sysdeps clean

setup: $(STAMP) $(SYSDEPS_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel; a bare `torch` requirement would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(SYSDEPS_STAMP):
	@mkdir -p $(VENV)
	@if ldconfig -p | grep -q 'libEGL_mesa.so.0' && ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then \
	  echo "system packages present: $(APT_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES)) >/dev/null; \
	else \
	  echo "warning: install $(APT_PACKAGES) (sudo apt-get install ...) for the CPU renderer"; \
	fi
	touch $@

demo: setup
	$(VENV)/bin/vf3d demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .vf3d .pytest_cache
