"""``LearningCurve``: periodic deterministic evaluations during training, for learning curves.

Every ``every`` env steps (and at the end) the model being trained plays ``episodes`` deterministic test
episodes with the SRM as trained so far (the paper's evaluation protocol: SRM initial prompts, test
split), and the point (env steps, mIoU, foreground rate, return) is appended to the run folder's
``curve.jsonl``. The evaluation builds its own env and draws no global random numbers, so a run with
curves trains exactly as one without.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from policies.runs.evaluation import evaluate
from policies.runs.folder import RunFolder
from policies.sb3.presets import embedding_table_of


class LearningCurve(BaseCallback):
    """Evaluate the model every ``every`` env steps into ``run``'s ``curve.jsonl``.

    :param run: the run folder.
    :param algorithm: the model's preset (how it acts, e.g. RecurrentPPO's state).
    :param env_kwargs: the evaluation env's keyword arguments (the run's env on its validation split).
    :param every: env steps between evaluations.
    :param images: validation images per evaluation, each played once: the same fixed sample every time
        (:func:`~policies.runs.evaluation.evaluation_images`), so the points of a curve are paired.
    :param srm_callback: the run's SRM callback (its current weights label the evaluation), or None.
    """

    def __init__(self, run: RunFolder, algorithm: str, env_kwargs: dict[str, Any], every: int, images: int,
                 srm_callback: Any = None) -> None:
        super().__init__(0)
        self.run, self.algorithm, self.env_kwargs = run, algorithm, env_kwargs
        self.every, self.images, self.srm_callback = int(every), int(images), srm_callback
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every
        if self.num_timesteps == 0:
            self._evaluate()  # the untrained policy: the curve's first point

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._evaluate()
            self._next = (self.num_timesteps // self.every + 1) * self.every
        return True

    def _on_training_end(self) -> None:
        if not any(p["env_steps"] == self.num_timesteps for p in self.run.read_curve()):
            self._evaluate()

    def _evaluate(self) -> None:
        srm = self.srm_callback.srm if self.srm_callback is not None else None
        weights = {k: v.detach().cpu() for k, v in srm.state_dict().items()} if srm is not None else None
        env_kwargs = dict(self.env_kwargs)
        if env_kwargs.get("obs_mode") == "compact":  # the model's extractor reads the training envs' table
            env_kwargs["embedding_table"] = embedding_table_of(self.training_env)
        was_training = self.model.policy.training
        result = evaluate(str(self.run.path), env_kwargs, images=self.images, seed=0, srm_weights=weights,
                          device=str(self.model.device), model=self.model, algorithm=self.algorithm)
        self.model.policy.train(was_training)
        self.run.append_curve({"env_steps": int(self.num_timesteps), "miou": round(result["miou"], 6),
                               "foreground_rate": round(result["foreground_rate"], 6),
                               "return": round(result["return"], 4), "images": result["images"],
                               "split": result["split"]})
