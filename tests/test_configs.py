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


def test_env_blocks_are_checked_as_the_env_sees_them(tmp_path):
    """A config's env block is checked with the grid's backend (a SAM checkpoint is no error under backend: sam),
    and gym.make's own keywords (max_episode_steps, render_mode, ...) pass through, as older run folders hold them."""
    from policies.benchmarks.grid import resolve_benchmark_config
    from policies.runs.config import RunConfig

    grid = {"tasks": ["synthetic-shapes"], "policies": ["random"], "backend": "sam",
            "env": {"sam_checkpoint": "/weights/sam_vit_b.pth"}, "train": {"env": {"sam_model_type": "vit_b"}}}
    assert resolve_benchmark_config(grid)["env"]["sam_checkpoint"] == "/weights/sam_vit_b.pth"
    with pytest.raises(ValueError, match="apply to SAM backends, not to backend='lite'"):
        resolve_benchmark_config({**grid, "backend": "lite"})
    paper = resolve_benchmark_config({"tasks": ["synthetic-shapes"], "policies": ["ppo"], "train": {"preset": "paper"}})
    assert "obs_size" not in paper["train"]["env"]  # the grid's pooling default leaves the paper preset's state alone
    config = RunConfig.from_dict({"env": {"task": "synthetic-shapes", "max_episode_steps": 10}})
    assert config.env["max_episode_steps"] == 10
