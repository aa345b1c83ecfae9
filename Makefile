# `make run` and `make test` are all a fresh machine needs: each creates .venv
# and installs the package with its test extras before doing its work.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench bench-all bench-picks bench-snat bench-ha check lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/appliance demo

test: $(STAMP)
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/appliance check -c conf/appliance.yaml
	$(BIN)/appliance check -c conf/demo.yaml

lint: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-all: $(STAMP)
	$(BIN)/python -m bench.run --suite all

bench-picks: $(STAMP)
	$(BIN)/python -m bench.pick_cost

bench-snat: $(STAMP)
	$(BIN)/python -m bench.snat

bench-ha: $(STAMP)
	$(BIN)/python -m bench.ha_failover --handback

clean:
	rm -rf $(VENV) build *.egg-info
