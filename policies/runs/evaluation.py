"""``alignsam evaluate``: deterministic episodes of a trained run or a heuristic, with the paper's metrics."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from alignsam_gym import ENV_ID  # importing the package registers the ids
from alignsam_gym.metrics import ber_counts, mask_metrics, prompt_efficiency
from policies.runs.actor import Actor


def evaluate(policy: str, env_kwargs: dict[str, Any], episodes: int = 20, seed: int = 0,
             srm_weights: dict[str, torch.Tensor] | None = None, device: str = "auto",
             no_repeats: bool = True, frames_at: tuple[int, ...] = (), model: Any = None,
             algorithm: str | None = None) -> dict[str, Any]:
    """Run ``episodes`` deterministic episodes and measure them.

    :param policy: a heuristic (``"random"``, seeded; ``"centre"``; ``"srm_greedy"``; see
        :mod:`alignsam_gym.heuristics`) or a run folder / ``model.zip`` path.
    :param env_kwargs: the env's keyword arguments; ``obs_mode``, ``obs_size`` and ``obs_dtype`` default to a
        trained run's.
    :param srm_weights: SRM weights for the env (labels and SRM initial prompts); a run's own by default.
    :param no_repeats: every policy chooses among the cells it has not prompted yet this episode
        (``env.action_masks()``): a deterministic policy whose mask stops changing would otherwise
        prompt the same cell again and again (the paper's reward pays for repeats). RecurrentPPO
        ignores it.
    :param frames_at: prompt counts at which to keep a rendered frame of the first episode.
    :param model: a model in memory to evaluate instead of ``policy``'s file (``algorithm`` its preset);
        ``policy`` then only names it in messages.
    :return: ``foreground_rate`` (fraction of the agent's prompts on ground-truth foreground, paper Eq. 14),
        ``miou`` (mean IoU after the last prompt), ``iou_curve`` (mean IoU after 0..T prompts), the prompt
        efficiency (:func:`alignsam_gym.metrics.prompt_efficiency`: ``auc``, the mean of the curve over prompts
        1..T, and ``noc85`` / ``noc90``, mean prompts to reach IoU 0.85 / 0.9, T + 1 when never), the final
        masks' mean ``f_beta``, ``f_adaptive``, ``e_measure``, ``mae`` and per-image ``ber``, the dataset
        ``ber_dataset`` (counts summed over episodes), ``return``, ``episodes``, ``srm_branch`` (the SRM
        branch the env ran), ``wall_s``, and ``frames`` (``{prompts: (H, W, 3) uint8}``) when asked.
    """
    start = time.perf_counter()
    # one device for the policy and the env's models; observations as a trained run was trained unless given
    env_kwargs = {"device": device, **(Actor.observation_kwargs(policy) if model is None else {}), **env_kwargs}
    if frames_at:
        env_kwargs = {**env_kwargs, "render_mode": "rgb_array"}
    env = gym.make(ENV_ID, **env_kwargs)
    inner = env.unwrapped
    actor = Actor(policy, env, seed=seed, device=device, no_repeats=no_repeats, model=model, algorithm=algorithm)
    if srm_weights is None:
        srm_weights = actor.srm_weights
    if srm_weights is not None:
        inner.set_srm_weights(srm_weights)
    hits, curves, returns, finals, frames = [], [], [], [], {}
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        actor.start_episode()
        curve, total, done = [info["iou"]], 0.0, False
        while not done:
            if episode == 0 and len(curve) - 1 in frames_at:
                frames[len(curve) - 1] = env.render()
            action = actor.act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            hits.append(info["is_foreground"])
            curve.append(info["iou"])
            total += reward
            done = terminated or truncated
        if episode == 0 and len(curve) - 1 in frames_at:
            frames[len(curve) - 1] = env.render()
        finals.append(mask_metrics(inner.mask_probability, inner.target_mask, inner.target_ignore))
        curves.append(curve)
        returns.append(total)
    env.close()
    efficiency = prompt_efficiency(curves)
    result = {"foreground_rate": float(np.mean(hits)), "miou": float(np.mean([f["iou"] for f in finals])),
              "iou_curve": [round(float(v), 4) for v in np.mean(curves, axis=0)],
              "auc": efficiency["auc"], "noc85": efficiency["noc85"], "noc90": efficiency["noc90"]}
    for key in ("f_beta", "f_adaptive", "e_measure", "mae", "ber"):
        result[key] = float(np.mean([f[key] for f in finals]))
    result.update({"ber_dataset": ber_counts(finals), "return": float(np.mean(returns)), "episodes": episodes,
                   "no_repeats": no_repeats, "srm_branch": inner.srm_branch, "wall_s": round(time.perf_counter() - start, 2)})
    if frames_at:
        result["frames"] = frames
    return result
