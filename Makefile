# parkit: two commands do all the set-up on a fresh machine.
#   make reproduce   create .venv, install, run the notebook sequence in the demo profile
#   make test        create .venv, install, run every test and the notebooks under nbval (smoke profile,
#                    then the paper-check profile on ../shared/realdata when it is there)
#   make lab         open JupyterLab on the notebooks
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.parkit-installed
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: env reproduce test test-unit test-notebooks test-paper-check browser-deps lab notebooks clean-outputs bench

env: $(STAMP)

# Re-installs only when the pins or the package metadata change: a second `make` is fast.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Headless Chromium for the JupyterLab browser test (Debian's package; never a downloaded browser).
# Best effort: the browser test skips with a reason when Chromium cannot be installed.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will skip"; fi

reproduce: $(STAMP)
	$(PY) tools/reproduce.py --profile demo

test: $(STAMP) browser-deps
	$(PY) -m pytest tests -q -ra --timeout=900
	PARKIT_PROFILE=smoke $(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
	  -p no:cacheprovider notebooks/
	$(MAKE) --no-print-directory test-paper-check

# The paper profile's code path on a CPU (PROFILE = "paper-check"): every notebook on the real
# annotation files and images in ../shared/realdata, with seeded stand-ins of the two weight files
# (parkit.backbone.checkfiles). The shared RAPv1 copy holds one image, so the ablations (05, 06)
# run on PETA there ($$PARKIT_ABLATION_DATASET); with a complete RAPv1 leave it unset.
REALDATA ?= ../shared/realdata
CHECK_WEIGHTS := .cache/check-weights
test-paper-check: $(STAMP)
	@if [ ! -d "$(REALDATA)" ]; then echo "paper-check skipped: no real data at $(REALDATA)"; exit 0; fi; \
	eval "$$($(PY) -m parkit check-weights $(CHECK_WEIGHTS))" && \
	PARKIT_PROFILE=paper-check PARKIT_DATA_ROOT="$(abspath $(REALDATA))" PARKIT_ABLATION_DATASET=PETA \
	  $(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider notebooks/

test-unit: $(STAMP)
	$(PY) -m pytest tests -q -ra --timeout=900

test-notebooks: $(STAMP)
	PARKIT_PROFILE=smoke $(PY) -m pytest -q --nbval-lax --nbval-current-env --nbval-cell-timeout=600 notebooks/

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/run_all.py
