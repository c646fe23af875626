# Two set-up commands on a fresh machine: `make run` (main job) and `make test` (the tests).
# Each creates or updates the project's virtual environment in .venv when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/quickstart

.PHONY: install run demo test test-slow bench-decoder bench-episode bench-env bench-soak benchmark-ccp benchmark-embedded clean

CONSTRAINTS ?= constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/alignsam quickstart --out $(OUT)

demo: $(STAMP)
	$(VENV)/bin/alignsam demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench-decoder: $(STAMP)
	$(VENV)/bin/alignsam bench decoder --data-root ../shared/data/ccp --json experiments/results/decoder_ccp_person.json

bench-episode: $(STAMP)
	$(VENV)/bin/alignsam bench episode --episodes 5 --json experiments/results/sam_episode_vit_b_cpu.json

bench-env: $(STAMP)
	$(VENV)/bin/alignsam bench env --json experiments/results/env_throughput_cpu.json

bench-soak: $(STAMP)
	$(VENV)/bin/alignsam bench soak --json experiments/results/soak.json

benchmark-ccp: $(STAMP)
	$(VENV)/bin/alignsam benchmark --config experiments/configs/bench_ccp_person.yaml --out experiments/results/bench_ccp_person

benchmark-embedded: $(STAMP)
	$(VENV)/bin/alignsam benchmark --config experiments/configs/bench_embedded.yaml --out experiments/results/bench_embedded

clean:
	rm -rf $(VENV) build *.egg-info
