"""Training and evaluation runs: one config in, a run folder out (CleanRL-style, readable top to bottom).

A run folder holds ``config.yaml`` (the resolved config), ``model.zip`` (the SB3 model), ``srm.pt``
(the SRM callback's state) and ``tb/`` (TensorBoard logs: SB3's metrics plus ``srm/loss`` and
``srm/iou``).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml

import alignsam_gym  # noqa: F401  (registers the ids)
from policies.callback import SRMCallback
from policies.presets import PRESETS, algorithm_class, make_model

DEFAULT_CONFIG: dict[str, Any] = {
    "algorithm": "ppo",
    "seed": 0,
    "total_timesteps": 20000,
    "n_envs": 4,
    "vec_env": "dummy",  # or "subproc"
    "device": "auto",
    "env": {"task": "synthetic-saliency", "obs_size": 10},
    "hyperparameters": {},
    "srm": {"enabled": True, "learning_rate": 1e-4, "updates_per_step": None, "push_every": 1},
}

ENV_ID = "alignsam_gym:AlignSAM-v0"  # importable in subprocess workers too


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in; unknown top-level keys are an error."""
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; expected some of {sorted(DEFAULT_CONFIG)}")
    resolved = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in config.items():
        if isinstance(resolved.get(key), dict) and isinstance(value, dict):
            resolved[key] = {**resolved[key], **value}
        else:
            resolved[key] = value
    if resolved["algorithm"] not in PRESETS:
        raise ValueError(f"algorithm must be one of {sorted(PRESETS)}, got {resolved['algorithm']!r}")
    if resolved["vec_env"] not in ("dummy", "subproc"):
        raise ValueError(f"vec_env must be 'dummy' or 'subproc', got {resolved['vec_env']!r}")
    return resolved


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML run config; errors name the file."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the run config ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a run config is a YAML mapping, got {type(config).__name__}")
    return resolve_config(config)


def make_training_env(config: dict[str, Any]):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    return make_vec_env(ENV_ID, n_envs=config["n_envs"], seed=config["seed"], env_kwargs=config["env"],
                        vec_env_cls=SubprocVecEnv if config["vec_env"] == "subproc" else DummyVecEnv)


def train(config: dict[str, Any], out: str | Path, progress_bar: bool = False, resume: bool = False) -> Path:
    """Train ``config`` into the run folder ``out`` (or continue the run there with ``resume``)."""
    config = resolve_config(config)
    out = Path(out)
    if not resume and (out / "model.zip").exists():
        raise FileExistsError(f"{out} already holds a trained run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = make_training_env(config)
    callback = None
    if config["srm"]["enabled"]:
        srm = config["srm"]
        callback = SRMCallback(learning_rate=srm["learning_rate"], updates_per_step=srm["updates_per_step"],
                               push_every=srm["push_every"], device=config["device"])
    if resume:
        model = algorithm_class(config["algorithm"]).load(out / "model.zip", env=env, device=config["device"])
        if callback is not None and (out / "srm.pt").exists():
            callback.load(out / "srm.pt")
    else:
        model = make_model(config["algorithm"], env, device=config["device"], seed=config["seed"],
                           tensorboard_log=str(out / "tb"), **config["hyperparameters"])
    try:
        model.learn(total_timesteps=config["total_timesteps"], callback=callback, progress_bar=progress_bar,
                    reset_num_timesteps=not resume, tb_log_name="run")
    finally:  # an interrupted run keeps what it learned
        model.save(out / "model.zip")
        if callback is not None and callback.srm is not None:
            callback.save(out / "srm.pt")
        env.close()
    return out


def load_srm_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """SRM weights from a run's ``srm.pt``."""
    return torch.load(path, map_location="cpu", weights_only=True)["srm"]


def _best_unprompted(model: Any, obs: np.ndarray, mask: np.ndarray) -> int:
    """The deterministic action among the cells not prompted yet: the highest logit (actor-critic
    policies) or Q-value (DQN) where ``mask`` is True."""
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        if hasattr(model, "q_net"):
            scores = model.q_net(obs_t)[0]
        else:
            scores = model.policy.get_distribution(obs_t).distribution.logits[0]
    scores = scores.cpu().numpy().copy()
    scores[~mask] = -np.inf
    return int(scores.argmax())


def evaluate(policy: str, env_kwargs: dict[str, Any], episodes: int = 20, seed: int = 0,
             srm_weights: dict[str, torch.Tensor] | None = None, device: str = "auto",
             no_repeats: bool = True) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes and measure them.

    :param policy: ``"random"`` (uniform over cells, seeded) or a run folder / ``model.zip`` path.
    :param srm_weights: SRM weights for the env (labels and SRM initial prompts); a run's own by default.
    :param no_repeats: every policy chooses among the cells it has not prompted yet this episode
        (``env.action_masks()``): a deterministic policy whose mask stops changing would otherwise
        prompt the same cell again and again (the paper's reward pays for repeats). RecurrentPPO
        ignores it.
    :return: ``foreground_rate`` (fraction of the agent's prompts on ground-truth foreground, paper Eq. 14),
        ``miou`` (mean IoU after the last prompt), ``iou_curve`` (mean IoU after 0..T prompts),
        ``return``, ``episodes``, ``srm_branch`` (the SRM branch the env ran) and ``wall_s``.
    """
    start = time.perf_counter()
    model = None
    if policy != "random":
        path = Path(policy)
        run = path if path.is_dir() else path.parent
        model_file = path / "model.zip" if path.is_dir() else path
        if not model_file.is_file():
            raise FileNotFoundError(f"no trained model at {model_file}")
        algorithm = yaml.safe_load((run / "config.yaml").read_text())["algorithm"] if (run / "config.yaml").exists() \
            else "ppo"
        model = algorithm_class(algorithm).load(model_file, device=device)
        if srm_weights is None and (run / "srm.pt").exists():
            srm_weights = load_srm_weights(run / "srm.pt")
    env = gym.make(ENV_ID, **env_kwargs)
    if srm_weights is not None:
        env.unwrapped.set_srm_weights(srm_weights)
    rng = np.random.default_rng(seed)
    hits, finals, curves, returns = [], [], [], []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        curve, total, done, state = [info["iou"]], 0.0, False, None
        while not done:
            mask = env.unwrapped.action_masks() if no_repeats else np.ones(env.action_space.n, bool)
            if model is None:
                action = int(rng.choice(np.flatnonzero(mask)))
            elif algorithm == "recurrent_ppo":
                out, state = model.predict(obs, state=state, episode_start=np.array([len(curve) == 1]),
                                           deterministic=True)
                action = int(out)
            else:
                action = _best_unprompted(model, obs, mask)
            obs, reward, terminated, truncated, info = env.step(action)
            hits.append(info["is_foreground"])
            curve.append(info["iou"])
            total += reward
            done = terminated or truncated
        finals.append(curve[-1])
        curves.append(curve)
        returns.append(total)
    env.close()
    return {"foreground_rate": float(np.mean(hits)), "miou": float(np.mean(finals)),
            "iou_curve": [round(float(v), 4) for v in np.mean(curves, axis=0)], "return": float(np.mean(returns)),
            "episodes": episodes, "no_repeats": no_repeats, "srm_branch": env.unwrapped.srm_branch,
            "wall_s": round(time.perf_counter() - start, 2)}
