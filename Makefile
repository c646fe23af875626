# Two set-up commands on a fresh machine: `make run` (main job) and `make test` (the tests).
# Each creates or updates the project's virtual environment in .venv when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/quickstart

.PHONY: install run demo test test-kernels test-slow docs gpu-check gpu-wheels bench-decoder bench-episode bench-env bench-soak benchmark-ccp benchmark-embedded clean

CONSTRAINTS ?= constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
# sam2 is a source release that asks for torch to build: built against the venv's torch, without its CUDA kernel
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --quiet -c $(CONSTRAINTS) --no-build-isolation 'sam2>=1.0,<2'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/alignsam quickstart --out $(OUT)

demo: $(STAMP)
	$(VENV)/bin/alignsam demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

# The reference episodes again under other CPU kernels than this machine's best (what a CPU without
# AVX-512 or AVX2 runs): torch on its DEFAULT kernels, oneDNN at SSE4.1, numpy without its run-time SIMD
# dispatch; the settings are experiments/kernel_reproducibility.py's "sse41", and the tests check they took.
# OPENBLAS_CORETYPE is left as the machine sets it (older OpenBLAS builds misbehave on some CPUs).
test-kernels: $(STAMP)
	KERNELS="$$($(PY) experiments/kernel_reproducibility.py --print-env sse41)" && test -n "$$KERNELS" && \
		env $$KERNELS $(PY) -m pytest -p no:cacheprovider tests/test_reference_episodes.py

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# The documentation site (Sphinx + furo, the [docs] extra, which the test extra includes): warnings are errors.
docs: $(STAMP)
	rm -rf docs/_build
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

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

# Every check that needs a GPU (without one it writes {"gpu": false}); see experiments/gpu_check.py.
gpu-check: $(STAMP)
	$(PY) experiments/gpu_check.py --json experiments/results/gpu_check.json

# Wheels for a GPU machine without a package index (its image has torch, timm, opencv, ...): the packages it
# lacks, at the versions installed here, and this package. On that machine:
#   pip install --no-index --no-deps wheels/*.whl && python3 experiments/gpu_check.py --json OUT.json
GPU_WHEELS ?= wheels
GPU_PACKAGES := gymnasium|farama-notifications|stable-baselines3|sb3-contrib|segment-anything|open-clip-torch|ftfy|wcwidth
gpu-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PY) -m pip download --quiet --no-deps -d $(GPU_WHEELS) \
		$$($(PY) -m pip freeze | grep -iE '^($(GPU_PACKAGES))==' | sed 's/_/-/g')
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w $(GPU_WHEELS) .
	du -sh $(GPU_WHEELS)

clean:
	rm -rf $(VENV) build *.egg-info
