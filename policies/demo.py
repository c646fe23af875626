"""``alignsam demo``: one episode of the random policy, written as an annotated GIF, a strip of frames and JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from alignsam_gym import ENV_ID  # importing the package registers the ids
from alignsam_gym.atomic import write_json
from alignsam_gym.rendering import save_episode_animation
from policies.configs import make_env_kwargs


def play_demo(out: str | Path, task: str | None = None, data_root: str | None = None, seed: int = 0,
              max_prompts: int = 15, device: str = "auto",
              on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Play one episode with uniformly random actions (``action_space`` seeded with ``seed``) and write
    ``episode.gif``, ``episode_strip.png`` and ``episode.json`` into ``out``.

    :param on_step: called with each step's record (action, reward and info), e.g. to print it.
    :return: the summary written to ``episode.json`` (return, foreground rate, final IoU, every step).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    env = gym.make(ENV_ID, **make_env_kwargs(render_mode="rgb_array", max_prompts=max_prompts, device=device,
                                             task=task, data_root=data_root))
    env.action_space.seed(seed)
    _, info = env.reset(seed=seed)
    image_index, frames, steps, done = info["image_index"], [env.render()], [], False
    while not done:
        action = int(env.action_space.sample())
        _, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        frames.append(env.render())
        steps.append({"action": action, "reward": reward, **{k: v for k, v in info.items() if k != "action_mask"}})
        if on_step is not None:
            on_step(steps[-1])
    env.close()
    save_episode_animation(frames, out / "episode.gif", out / "episode_strip.png")
    summary = {"task": env.unwrapped.task, "seed": seed, "policy": "random", "image_index": image_index,
               "return": float(np.sum([s["reward"] for s in steps])),
               "foreground_rate": float(np.mean([s["is_foreground"] for s in steps])),
               "final_iou": steps[-1]["iou"], "steps": steps, "wall_s": round(time.perf_counter() - start, 2)}
    write_json(out / "episode.json", summary)
    return summary
