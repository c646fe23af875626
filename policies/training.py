"""Training and evaluation runs: one config in, a run folder out (CleanRL-style, readable top to bottom).

A run folder holds ``config.yaml`` (the resolved config), ``train_images.txt`` (the names of the
training images, the seeded few-shot subset), ``model.zip`` (the SB3 model), ``srm.pt`` (the SRM
callback's state), ``state.json`` and ``rng.pt`` (step count, random states) and ``tb/`` (TensorBoard
logs: SB3's metrics plus ``srm/loss`` and ``srm/iou``).
"""

from __future__ import annotations

import copy
import signal
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml

import alignsam_gym  # noqa: F401  (registers the ids)
from alignsam_gym.atomic import write_bytes
from alignsam_gym.heuristics import HEURISTICS, choose
from alignsam_gym.metrics import ber_counts, mask_metrics
from alignsam_gym.observation import EmbeddingTable
from policies.callback import SRMCallback
from policies.checkpoint import RunCheckpoint, load_model, restore_random_state, save_run
from policies.presets import PRESETS, make_model

DEFAULT_CONFIG: dict[str, Any] = {
    "algorithm": "ppo",
    "seed": 0,
    "total_timesteps": 20000,
    "n_envs": 4,
    "vec_env": "dummy",  # "subproc" (one process per env) or "batched" (AlignSAMVecEnv: one process, batched decode)
    "device": "auto",
    "checkpoint_every": 10000,  # env steps between checkpoints (None: only at the end and on SIGINT/SIGTERM)
    "env": {"task": "synthetic-saliency", "obs_size": 10},
    "hyperparameters": {},
    "srm": {"enabled": True, "learning_rate": 1e-4, "updates_per_step": None, "push_every": 1},
}

ENV_ID = "alignsam_gym:AlignSAM-v0"  # importable in subprocess workers too
VEC_ENVS = ("dummy", "subproc", "batched")


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in; unknown top-level keys are an error."""
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; expected some of {sorted(DEFAULT_CONFIG)}")
    resolved = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in copy.deepcopy(config).items():  # the caller's dicts stay the caller's
        if isinstance(resolved.get(key), dict) and isinstance(value, dict):
            resolved[key] = {**resolved[key], **value}
        else:
            resolved[key] = value
    if resolved["algorithm"] not in PRESETS:
        raise ValueError(f"algorithm must be one of {sorted(PRESETS)}, got {resolved['algorithm']!r}")
    if resolved["vec_env"] not in VEC_ENVS:
        raise ValueError(f"vec_env must be one of {list(VEC_ENVS)}, got {resolved['vec_env']!r}")
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
    """The config's vector env: ``n_envs`` envs seeded ``seed + i``, with episode statistics (Monitor)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    if config["vec_env"] == "batched":
        from policies.vec_env import AlignSAMVecEnv

        env = AlignSAMVecEnv(config["n_envs"], **config["env"])
        env.seed(config["seed"])
        return VecMonitor(env)
    env_kwargs = dict(config["env"])
    if env_kwargs.get("obs_mode") == "compact":
        if config["vec_env"] == "subproc":
            raise ValueError("env.obs_mode='compact' needs the envs in the training process: use vec_env 'batched' "
                             "or 'dummy', not 'subproc'")
        env_kwargs["embedding_table"] = EmbeddingTable()  # one table for every env and the policy
    return make_vec_env(ENV_ID, n_envs=config["n_envs"], seed=config["seed"], env_kwargs=env_kwargs,
                        vec_env_cls=SubprocVecEnv if config["vec_env"] == "subproc" else DummyVecEnv)


def train(config: dict[str, Any], out: str | Path, progress_bar: bool = False, resume: bool = False,
          verbose: bool = True) -> Path:
    """Train ``config`` into the run folder ``out``, or with ``resume`` continue the run there until its
    ``total_timesteps``.

    Checkpoints (:mod:`policies.checkpoint`) are written every ``checkpoint_every`` env steps, at the
    end, and when SIGINT or SIGTERM arrives (training then stops cleanly after the current step). A
    resumed run loads the model, SRM, optimiser states, step counter and random states, and logs to
    the same TensorBoard curve from the step where it stopped; its envs are reseeded with
    ``seed + steps done`` (an episode cut by the interruption is not replayed). ``verbose`` prints
    where and when checkpoints go.
    """
    config = resolve_config(config)
    out = Path(out)
    if not resume and (out / "model.zip").exists():
        raise FileExistsError(f"{out} already holds a trained run; pass --resume to continue it or choose another --out")
    if resume and not (out / "model.zip").is_file():
        raise FileNotFoundError(f"{out}: no model.zip to resume")
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
    done = restore_random_state(out) if resume else None
    if resume and done is not None:
        config = {**config, "seed": config["seed"] + done}  # fresh episodes, not the first ones again
    env = make_training_env(config)
    dataset = env.get_attr("dataset", indices=[0])[0]  # the few-shot training subset, recorded with the run
    write_bytes(out / "train_images.txt", ("\n".join(dataset.names) + "\n").encode())
    callback = None
    if config["srm"]["enabled"]:
        srm = config["srm"]
        callback = SRMCallback(learning_rate=srm["learning_rate"], updates_per_step=srm["updates_per_step"],
                               push_every=srm["push_every"], device=config["device"])
    if resume:
        model = load_model(config["algorithm"], out / "model.zip", env, config["device"], config["hyperparameters"])
        model.tensorboard_log = str(out / "tb")
        if callback is not None and (out / "srm.pt").exists():
            callback.load(out / "srm.pt")
    else:
        model = make_model(config["algorithm"], env, device=config["device"], seed=config["seed"],
                           tensorboard_log=str(out / "tb"), **config["hyperparameters"])
    remaining = config["total_timesteps"] - model.num_timesteps
    checkpoint = RunCheckpoint(out, config["checkpoint_every"], callback, verbose=int(verbose))
    callbacks = [c for c in (callback, checkpoint) if c is not None]
    try:
        if remaining > 0:
            model.learn(total_timesteps=remaining, callback=callbacks, progress_bar=progress_bar,
                        reset_num_timesteps=not resume, tb_log_name="run")
    finally:  # an interrupted run keeps what it learned
        if model.num_timesteps > 0 or not resume:
            save_run(model, out, callback)
        env.close()
    if checkpoint.stop_signal is not None:
        print(f"stopped by signal {signal.Signals(checkpoint.stop_signal).name} at step {model.num_timesteps}; "
              f"continue with: alignsam train --resume {out}", flush=True)
    return out


def read_run_config(run: str | Path) -> dict[str, Any]:
    """The resolved config saved in a run folder."""
    return load_config(Path(run) / "config.yaml")


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
             no_repeats: bool = True, frames_at: tuple[int, ...] = ()) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes and measure them.

    :param policy: a heuristic (``"random"``, seeded; ``"centre"``; ``"srm_greedy"``; see
        :mod:`alignsam_gym.heuristics`) or a run folder / ``model.zip`` path.
    :param srm_weights: SRM weights for the env (labels and SRM initial prompts); a run's own by default.
    :param no_repeats: every policy chooses among the cells it has not prompted yet this episode
        (``env.action_masks()``): a deterministic policy whose mask stops changing would otherwise
        prompt the same cell again and again (the paper's reward pays for repeats). RecurrentPPO
        ignores it.
    :param frames_at: prompt counts at which to keep a rendered frame of the first episode.
    :return: ``foreground_rate`` (fraction of the agent's prompts on ground-truth foreground, paper Eq. 14),
        ``miou`` (mean IoU after the last prompt), ``iou_curve`` (mean IoU after 0..T prompts), the final
        masks' mean ``f_beta``, ``f_adaptive``, ``e_measure``, ``mae`` and per-image ``ber``, the dataset
        ``ber_dataset`` (counts summed over episodes), ``return``, ``episodes``, ``srm_branch`` (the SRM
        branch the env ran), ``wall_s``, and ``frames`` (``{prompts: (H, W, 3) uint8}``) when asked.
    """
    start = time.perf_counter()
    model = model_file = None
    if policy not in HEURISTICS:
        path = Path(policy)
        run = path if path.is_dir() else path.parent
        model_file = path / "model.zip" if path.is_dir() else path
        if not model_file.is_file():
            raise FileNotFoundError(f"no trained model at {model_file} (policies without training: {list(HEURISTICS)})")
        run_config = load_config(run / "config.yaml") if (run / "config.yaml").exists() else resolve_config({})
        algorithm = run_config["algorithm"]
        if srm_weights is None and (run / "srm.pt").exists():
            srm_weights = load_srm_weights(run / "srm.pt")
    if frames_at:
        env_kwargs = {**env_kwargs, "render_mode": "rgb_array"}
    env = gym.make(ENV_ID, **env_kwargs)
    inner = env.unwrapped
    if model_file is not None:
        model = load_model(algorithm, model_file, env, device, run_config["hyperparameters"])
    if srm_weights is not None:
        inner.set_srm_weights(srm_weights)
    rng = np.random.default_rng(seed)
    hits, curves, returns, finals, frames = [], [], [], [], {}
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        curve, total, done, state = [info["iou"]], 0.0, False, None
        while not done:
            if episode == 0 and len(curve) - 1 in frames_at:
                frames[len(curve) - 1] = env.render()
            mask = inner.action_masks() if no_repeats else np.ones(env.action_space.n, bool)
            if model is None:
                action = choose(policy, inner, rng) if no_repeats or policy != "random" else \
                    int(rng.integers(env.action_space.n))
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
        if episode == 0 and len(curve) - 1 in frames_at:
            frames[len(curve) - 1] = env.render()
        finals.append(mask_metrics(inner.mask_probability, inner.target_mask))
        curves.append(curve)
        returns.append(total)
    env.close()
    result = {"foreground_rate": float(np.mean(hits)), "miou": float(np.mean([f["iou"] for f in finals])),
              "iou_curve": [round(float(v), 4) for v in np.mean(curves, axis=0)]}
    for key in ("f_beta", "f_adaptive", "e_measure", "mae", "ber"):
        result[key] = float(np.mean([f[key] for f in finals]))
    result.update({"ber_dataset": ber_counts(finals), "return": float(np.mean(returns)), "episodes": episodes,
                   "no_repeats": no_repeats, "srm_branch": inner.srm_branch, "wall_s": round(time.perf_counter() - start, 2)})
    if frames_at:
        result["frames"] = frames
    return result
