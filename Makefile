# The two commands of the README: `make reproduce` (main job, on the shipped models) and `make test` (test suite).
# Both create the virtual environment and fetch the offline dataset when missing, and reuse them when present.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.adasmooth-installed
FMNIST := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
PROFILE ?= default
# fraction of the cached attack answers each notebook recomputes and compares (make reproduce VERIFY=0.02: faster)
VERIFY ?= 0.1

.PHONY: reproduce reproduce-full reproduce-from-scratch cache-check test lab setup data browser

# --force: every notebook runs again (the committed results would otherwise count as current and be skipped)
reproduce: setup
	$(PY) -m adasmooth reproduce --profile $(PROFILE) --force --verify-fraction $(VERIFY)

# the same notebooks with every cached attack answer recomputed from the shipped weights and compared image by image
reproduce-full: setup
	$(PY) -m adasmooth reproduce --profile $(PROFILE) --force --verify-fraction 1.0

# is every attack question of the profile's notebooks answered by data/attack-cache? (nothing is attacked)
cache-check: setup
	$(PY) -m adasmooth cache check --profile $(PROFILE)

# every model trained again into results/$(PROFILE)-retrain/zoo, then compared with the shipped ones
reproduce-from-scratch: setup
	$(PY) -m adasmooth reproduce --profile $(PROFILE) --retrain

# JupyterLab on the notebooks with the project's kernel ("Python 3 (adasmooth)"); LAB_ARGS, e.g. --no-browser --port 8899
lab: setup
	$(PY) -m jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

test: setup browser
	$(PY) -m pytest -q

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[notebooks,dev,crosscheck,robustbench]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (adasmooth)"
	touch $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist package (needs root and apt; otherwise see README)
data:
	@if [ ! -f $(FMNIST) ] && [ ! -f data/FashionMNIST/raw/t10k-images-idx3-ubyte ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install -y dataset-fashion-mnist'" >&2; exit 1; fi; fi

# Debian's Chromium for the one real-browser test (skipped, with its reason, where it cannot be installed)
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || true; fi
