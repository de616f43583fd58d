# Two entry points, each creating .venv on first use (and again whenever pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,datasets,det,packed]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mask3d-vit demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/pretrain_throughput.py

clean:
	rm -rf $(VENV) runs

# Mutation testing of the modules where a silent bug costs most (docs/testing.md); hours on 2 cores.
.PHONY: mutation
mutation: $(STAMP)
	$(PY) -m pip install --quiet -e '.[mutation]'
	nice -n 15 $(PY) tools/mutation.py $(ARGS)

# A smoke run of minutes: mutate only the functions this checkout changes against main (BASE=...), with the tests
# of the targets that cover them; lists changed modules that no target covers. Not in CI.
BASE ?= main
.PHONY: mutation-changed
mutation-changed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[mutation]'
	nice -n 15 $(PY) tools/mutation.py --changed $(BASE) $(ARGS)
