"""Every committed config under experiments/configs/ is valid for the command it names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policies.benchmarks.grid import load_benchmark_config
from policies.rllib.training import RLlibConfig
from policies.runs import RunConfig
from policies.configs import load_yaml_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.yaml"))


def _kind(path: Path) -> str:
    text = path.read_text()
    if "alignsam rllib" in text:
        return "rllib"
    return "run" if "algorithm" in yaml.safe_load(text) else "benchmark"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_valid(path):
    kind = _kind(path)
    if kind == "run":
        config = RunConfig.load(path)
        assert config.total_timesteps > 0
    elif kind == "rllib":
        assert load_yaml_config(path, "RLlib config", RLlibConfig.from_dict).iterations > 0
    else:
        pytest.importorskip("matplotlib")
        assert load_benchmark_config(path)["tasks"]


def test_every_algorithm_has_a_cpu_and_a_gpu_recipe():
    from policies.sb3.presets import PRESETS

    names = {p.stem for p in CONFIGS}
    for algorithm in PRESETS:
        for budget in ("cpu", "gpu"):
            recipe = RunConfig.load(next(p for p in CONFIGS if p.stem == f"recipe_{algorithm}_{budget}"))
            assert recipe.algorithm == algorithm and f"recipe_{algorithm}_{budget}" in names
