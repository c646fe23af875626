"""``EpisodeImages``: what the agent does, in TensorBoard, while it trains.

Every ``every`` env steps the callback plays one deterministic episode of the current policy on a fixed
validation image (its own env: the training env's keyword arguments with ``split="val"``, so training never
looks at the test split; the training SRM's current weights) and logs, beside SB3's scalars and ``srm/*``:

- ``episode/frames``: a strip of the rendered frames after 0, 1, 3, 7 and 15 prompts (image, mask and
  prompts | ground truth), as one image;
- ``episode/iou_curve``: the IoU after each prompt, as a figure, and ``episode/final_iou`` as a scalar.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure, Image

from policies.sb3.acting import best_unprompted

FRAMES_AT = (0, 1, 3, 7, 15)


class EpisodeImages(BaseCallback):
    """Log an evaluation episode's frames and IoU curve every ``every`` env steps.

    :param env_kwargs: ``AlignSAM-v0`` keyword arguments of the episode's env (``split``, ``render_mode``
        and ``image_index`` are set here).
    :param every: env steps between episodes.
    :param image_index: the validation image every episode uses (fixed, so images are comparable over training).
    :param seed: reset seed of the episode (its initial prompts).
    :param frames_at: prompt counts whose frames make the strip.
    """

    def __init__(self, env_kwargs: dict[str, Any], every: int, image_index: int = 0, seed: int = 0,
                 frames_at: tuple[int, ...] = FRAMES_AT, verbose: int = 0) -> None:
        super().__init__(verbose)
        if every < 1:
            raise ValueError(f"every must be at least 1 env step, got {every}")
        self.env_kwargs = {k: v for k, v in env_kwargs.items() if k != "embedding_table"}
        self.every, self.image_index, self.seed, self.frames_at = int(every), int(image_index), int(seed), frames_at
        self.env: gym.Env | None = None
        self.episodes_logged = 0
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps
        self.env = gym.make("alignsam_gym:AlignSAM-v0", **{**self.env_kwargs, "split": "val",
                                                              "render_mode": "rgb_array"})

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            self.log_episode()
        return True

    def log_episode(self) -> None:
        """Play the episode now and hand its strip, curve and final IoU to the logger (written at its next dump)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        inner = self.env.unwrapped
        weights = self.training_env.get_attr("srm", indices=[0])[0].network.state_dict()
        inner.set_srm_weights(weights)  # label as the training envs do right now
        obs, info = self.env.reset(seed=self.seed, options={"image_index": self.image_index})
        frames, curve, state, done = {0: self.env.render()}, [info["iou"]], None, False
        while not done:
            mask = inner.action_masks()
            if hasattr(self.model.policy, "lstm_actor"):  # recurrent: its own state, deterministic
                action, state = self.model.predict(obs, state=state, episode_start=np.array([len(curve) == 1]),
                                                   deterministic=True)
                action = int(action)
            else:
                action = best_unprompted(self.model, obs, mask)
            obs, _, terminated, truncated, info = self.env.step(action)
            curve.append(info["iou"])
            done = terminated or truncated
            if len(curve) - 1 in self.frames_at:
                frames[len(curve) - 1] = self.env.render()
        strip = np.concatenate([frames[k] for k in sorted(frames)], axis=0)  # frames stacked top to bottom
        figure, axis = plt.subplots(figsize=(4, 3))
        axis.plot(range(len(curve)), curve, marker="o")
        axis.set(xlabel="prompts", ylabel="IoU", ylim=(0, 1), title=f"step {self.num_timesteps}")
        self.logger.record("episode/frames", Image(strip, "HWC"), exclude=("stdout", "log", "json", "csv"))
        self.logger.record("episode/iou_curve", Figure(figure, close=True), exclude=("stdout", "log", "json", "csv"))
        self.logger.record("episode/final_iou", float(curve[-1]))
        self.episodes_logged += 1

    def _on_training_end(self) -> None:
        if self.env is not None:
            self.env.close()
