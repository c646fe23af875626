"""``alignsam evaluate``: a trained run or a heuristic on every image of a split once, with the paper's metrics.

The protocol (what a reviewer checks): the evaluated images are the whole split, or a fixed seeded sample
without replacement (:func:`evaluation_images`), played once each in a fixed order; the episode on image ``i``
starts from :func:`episode_seed` ``(seed, i)``, so every policy evaluated with one seed and SRM faces the same
images from the same initial prompts, and any two such evaluations pair image by image. Every episode is kept
as a row (:data:`EPISODE_COLUMNS`), beside the aggregate metrics.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from alignsam_gym import ENV_ID  # importing the package registers the ids
from alignsam_gym.data.paired import few_shot_indices
from alignsam_gym.metrics import ber_counts, mask_metrics, prompt_efficiency, prompts_to_reach
from policies.configs import make_env_kwargs
from policies.runs.actor import Actor
from policies.sb3.presets import TRAINS_WITH_ACTION_MASKS

#: the columns of one evaluated episode (a row of ``evaluate(...)["episodes"]``): the image, every step's action,
#: label, reward and ground truth at the point, the IoU after 0..T prompts, and the final metrics. An episode the
#: agent stopped (the env's ``stop_action``) has fewer actions than T; its IoU after the prompts not taken is the
#: final mask's, as that mask is what the user keeps
EPISODE_COLUMNS = ("image_index", "image_id", "actions", "labels", "rewards", "is_foreground", "iou",
                   "foreground_rate", "return", "auc", "noc85", "noc90", "final_iou", "f_beta", "f_adaptive",
                   "e_measure", "mae", "ber")
#: mixed into every episode seed, so evaluation episodes never reuse a training env's seeds ``seed + i``
EPISODE_SEED_SALT = 0xE7A1


def evaluation_images(split_size: int, images: int | None = None, sample_seed: int = 0) -> list[int]:
    """The image indices an evaluation plays, in order, each once: the whole split (``images`` None or at least
    ``split_size``) or a fixed seeded sample of ``images`` drawn without replacement. It depends on nothing but
    its arguments, so every policy and every trial seed plays the same images."""
    if split_size < 1:
        raise ValueError(f"the evaluated split is empty (split_size {split_size})")
    if images is not None and (not isinstance(images, int) or isinstance(images, bool) or images < 1):
        raise ValueError(f"images must be a positive integer or None (the whole split), got {images!r}")
    return few_shot_indices(split_size, images, sample_seed)


def episode_seed(seed: int, image_index: int) -> int:
    """The reset seed of the episode on image ``image_index`` in an evaluation with ``seed``: every policy
    evaluated with ``seed`` starts each image from the same state (the same initial prompts) and a stochastic
    policy draws the same way there, whichever images come before it."""
    return int(np.random.SeedSequence([EPISODE_SEED_SALT, int(seed), int(image_index)]).generate_state(1)[0])


def evaluate(policy: str, env_kwargs: dict[str, Any], images: int | None = None, seed: int = 0,
             srm_weights: dict[str, torch.Tensor] | None = None, device: str = "auto",
             no_repeats: bool = True, frames_at: tuple[int, ...] = (), model: Any = None,
             algorithm: str | None = None, sample_seed: int = 0) -> dict[str, Any]:
    """Play every image of the env's split once (or a fixed sample of them), in order, and measure the episodes.

    :param policy: a heuristic (``"random"``, seeded; ``"centre"``; ``"srm_greedy"``; see
        :mod:`alignsam_gym.heuristics`) or a run folder / ``model.zip`` path.
    :param env_kwargs: the env's keyword arguments (``split`` chooses the images: ``"val"`` while tuning,
        ``"test"`` for the final benchmark); ``obs_mode``, ``obs_size`` and ``obs_dtype`` default to a
        trained run's.
    :param images: how many images of the split to play: None (default) every one; fewer: the fixed seeded
        sample :func:`evaluation_images` (``sample_seed``), the same for every policy and ``seed``.
    :param seed: the episodes' seed: the episode on image ``i`` is reset with :func:`episode_seed` ``(seed, i)``
        (initial prompts), and a stochastic policy is reseeded from it with a stream of its own.
    :param srm_weights: SRM weights for the env (labels and SRM initial prompts); a run's own by default.
    :param no_repeats: every policy chooses among the cells it has not prompted yet this episode
        (``env.action_masks()``): a deterministic policy whose mask stops changing would otherwise
        prompt the same cell again and again (the paper's reward pays for repeats). RecurrentPPO
        ignores it, and its result says so (``no_repeats`` False).
    :param frames_at: prompt counts at which to keep a rendered frame of the first episode.
    :param model: a model in memory to evaluate instead of ``policy``'s file (``algorithm`` its preset);
        ``policy`` then only names it in messages.
    :return: ``foreground_rate`` (fraction of the agent's prompts on ground-truth foreground, paper Eq. 14),
        ``miou`` (mean IoU after the last prompt), ``iou_curve`` (mean IoU after 0..T prompts), the prompt
        efficiency (:func:`alignsam_gym.metrics.prompt_efficiency`: ``auc``, the mean of the curve over prompts
        1..T, and ``noc85`` / ``noc90``, mean prompts to reach IoU 0.85 / 0.9, T + 1 when never), the final
        masks' mean ``f_beta``, ``f_adaptive``, ``e_measure``, ``mae`` and per-image ``ber``, the dataset
        ``ber_dataset`` (counts summed over episodes), ``return``, ``images`` (distinct images played),
        ``split_size`` (images in the split), ``split``, ``no_repeats``, ``action_masks`` (``{"train", "test"}``: whether
        the action mask applied while the model trained (None: a heuristic) and in these episodes), ``srm_branch``
        (the SRM branch the env ran), ``wall_s``, ``episodes`` (one row per episode, :data:`EPISODE_COLUMNS`) and ``frames``
        (``{prompts: (H, W, 3) uint8}``) when asked.
    """
    start = time.perf_counter()
    # one device for the policy and the env's models; observations as a trained run was trained unless given
    env_kwargs = make_env_kwargs({"device": device}, Actor.observation_kwargs(policy) if model is None else {},
                                 env_kwargs, render_mode="rgb_array" if frames_at else None)
    env = gym.make(ENV_ID, **env_kwargs)
    inner = env.unwrapped
    actor = Actor(policy, env, seed=seed, device=device, no_repeats=no_repeats, model=model, algorithm=algorithm)
    if srm_weights is None:
        srm_weights = actor.srm_weights
    if srm_weights is not None:
        inner.set_srm_weights(srm_weights)
    names = inner.image_names
    played = evaluation_images(len(names), images, sample_seed)
    rows, finals, frames = [], [], {}
    for image_index in played:
        reset_seed = episode_seed(seed, image_index)
        obs, info = env.reset(seed=reset_seed, options={"image_index": image_index})
        actor.start_episode(seed=(reset_seed, 1))  # a stream of its own, not the env's initial-prompt draws
        ious, actions, labels, rewards, hits, done = [info["iou"]], [], [], [], [], False
        while not done:
            if not rows and len(actions) in frames_at:
                frames[len(actions)] = env.render()
            action = actor.act(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            if info.get("stopped"):  # the stop action: no prompt; the mask stays for the prompts not taken
                ious += [ious[-1]] * (inner.max_prompts + 1 - len(ious))
                break
            actions.append(int(action))
            labels.append(int(info["label"]))
            rewards.append(float(reward))
            hits.append(bool(info["is_foreground"]))
            ious.append(float(info["iou"]))
            done = terminated or truncated
        if not rows and len(actions) in frames_at:
            frames[len(actions)] = env.render()
        final = mask_metrics(inner.mask_probability, inner.target_mask, inner.target_ignore)
        finals.append(final)
        budget = len(ious) - 1
        rows.append({"image_index": int(image_index), "image_id": str(names[image_index]), "actions": actions,
                     "labels": labels, "rewards": rewards, "is_foreground": hits, "iou": ious,
                     "foreground_rate": float(np.mean(hits)) if hits else float("nan"),
                     "return": float(np.sum(rewards)),
                     "auc": float(np.mean(ious[1:])), "noc85": prompts_to_reach(ious[1:], 0.85, budget + 1),
                     "noc90": prompts_to_reach(ious[1:], 0.9, budget + 1), "final_iou": final["iou"],
                     **{key: final[key] for key in ("f_beta", "f_adaptive", "e_measure", "mae", "ber")}})
    env.close()
    masked = bool(no_repeats and actor.honours_masks)
    trained_masked = None if actor.algorithm is None else TRAINS_WITH_ACTION_MASKS[actor.algorithm]
    curves = [row["iou"] for row in rows]
    efficiency = prompt_efficiency(curves)
    every_hit = [h for row in rows for h in row["is_foreground"]]  # none when every episode stopped at once
    result = {"foreground_rate": float(np.mean(every_hit)) if every_hit else float("nan"),
              "miou": float(np.mean([row["final_iou"] for row in rows])),
              "iou_curve": [round(float(v), 4) for v in np.mean(curves, axis=0)],
              "auc": efficiency["auc"], "noc85": efficiency["noc85"], "noc90": efficiency["noc90"]}
    for key in ("f_beta", "f_adaptive", "e_measure", "mae", "ber"):
        result[key] = float(np.mean([f[key] for f in finals]))
    result.update({"ber_dataset": ber_counts(finals), "return": float(np.mean([row["return"] for row in rows])),
                   "images": len(played), "split_size": len(names), "split": env_kwargs.get("split", "train"),
                   "no_repeats": masked, "action_masks": {"train": trained_masked, "test": masked},
                   "srm_branch": inner.srm_branch,
                   "wall_s": round(time.perf_counter() - start, 2), "episodes": rows})
    if frames_at:
        result["frames"] = frames
    return result
