"""``alignsam record``: prompting trajectories of a heuristic or a trained run as a Minari dataset.

Each step stores the observation (compact by default: the mask on the embedding grid and the
embedding's key), the action (the prompted cell), the reward, and in ``infos`` the IoU after the
prompt, whether the point was foreground, the label the segmenter got, the number of prompts and the
image's index in the split (every step has the same info keys; at reset ``is_foreground`` and ``label``
are -1). The env spec goes into the dataset, so ``dataset.recover_environment()`` rebuilds the env.

Compact observations name their embedding by key; the embeddings themselves are written beside the
dataset's data, in ``embeddings.npz`` (one ``(C, h, w) float32`` array per key, named by its hex),
so the paper's state ``s_t = E * M`` can be formed offline with :func:`dataset_states` without the
segmenter. Requires the ``minari`` extra (``pip install 'alignsam-gym[minari]'``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from alignsam_gym import ENV_ID
from alignsam_gym.atomic import replacing
from alignsam_gym.heuristics import HEURISTICS
from alignsam_gym.observation import full_observation, masked_state
from policies.configs import make_env_kwargs
from policies.runs.actor import Actor

EMBEDDINGS_FILE = "embeddings.npz"


def _minari():
    try:
        import minari
    except ImportError as err:
        raise ImportError("alignsam record needs Minari: pip install 'alignsam-gym[minari]'") from err
    return minari


def _step_data_callback():
    """A Minari step-data callback that gives every step the same info keys and types (Minari requires it)."""
    from minari import StepDataCallback

    class PromptInfo(StepDataCallback):
        def __call__(self, env: gym.Env, **kwargs: Any) -> dict[str, Any]:
            step_data = super().__call__(env, **kwargs)
            info = kwargs["info"]
            step_data["info"] = {
                "iou": np.float64(info["iou"]),
                "is_foreground": np.int64(info.get("is_foreground", -1)),
                "label": np.int64(info.get("label", -1)),
                "num_prompts": np.int64(info["num_prompts"]),
                "image_index": np.int64(env.unwrapped.episode.image_index),
            }
            return step_data

    return PromptInfo


def record_dataset(policy: str, dataset_id: str, env_kwargs: dict[str, Any], episodes: int, seed: int = 0,
                   device: str = "auto", datasets_path: str | Path | None = None,
                   description: str | None = None) -> Any:
    """Play ``episodes`` episodes with ``policy`` and write them as the Minari dataset ``dataset_id``.

    :param policy: a heuristic (``random``, ``centre``, ``srm_greedy``) or a run folder / ``model.zip``.
    :param dataset_id: Minari id, e.g. ``"alignsam/grabcut/srm_greedy-v0"``; an existing id is refused
        before anything is played (Minari never overwrites a dataset).
    :param env_kwargs: the env's keyword arguments (observations: as a trained run was trained, compact for a
        heuristic, unless ``obs_mode`` is given); a run's SRM
        weights label its episodes unless ``srm_checkpoint`` names an SRM file.
    :param episodes: number of episodes; episode ``i`` is reset with seed ``seed + i``.
    :param datasets_path: Minari's datasets folder (default ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``);
        Minari reads the folder from that variable, so this sets it for the rest of the process (later
        ``minari.load_dataset`` calls find the dataset there).
    :return: the written ``minari.MinariDataset``.
    """
    minari = _minari()
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if datasets_path is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(datasets_path).resolve())
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage import get_dataset_path

    parse_dataset_id(dataset_id)  # a malformed id fails here, not after the episodes
    target = Path(get_dataset_path(dataset_id))
    if target.exists():
        raise FileExistsError(f"Minari dataset {dataset_id} already exists at {target}; choose another id or version")

    env_kwargs = make_env_kwargs({"obs_mode": "compact", "device": device}, Actor.observation_kwargs(policy),
                                 env_kwargs)
    env = gym.make(ENV_ID, **env_kwargs)
    actor = Actor(policy, env, seed=seed, device=device)
    if actor.srm_weights is not None and "srm_checkpoint" not in env_kwargs:  # an explicit SRM file wins
        env.unwrapped.set_srm_weights(actor.srm_weights)
    collector = minari.DataCollector(env, step_data_callback=_step_data_callback(), record_infos=True)
    embeddings: dict[str, np.ndarray] = {}
    try:
        for episode in range(episodes):
            obs, _ = collector.reset(seed=seed + episode)
            actor.start_episode()
            current = env.unwrapped.episode
            if current.embedding_key is not None:  # compact observations: keep the embedding they name
                embeddings.setdefault(current.embedding_key.tobytes().hex(),
                                      np.asarray(current.embedding.features, np.float32))
            done = False
            while not done:
                obs, _, terminated, truncated, _ = collector.step(actor.act(obs))
                done = terminated or truncated
        name = policy if policy in HEURISTICS else f"trained run {policy}"
        dataset = collector.create_dataset(
            dataset_id=dataset_id, eval_env=env.spec, algorithm_name=name, author="alignsam-gym",
            description=description or f"AlignSAM-v0 prompting episodes of {name} on {env_kwargs.get('task')}",
            requirements=["alignsam-gym"], num_episodes_average_score=min(episodes, 10))
    finally:
        collector.close()
    if env_kwargs["obs_mode"] == "compact":
        with replacing(target / EMBEDDINGS_FILE) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **embeddings)
    return dataset


def dataset_states(dataset: Any, episode_index: int, obs_size: int | None = None) -> np.ndarray:
    """``(T+1, C, s, s) float32``: the paper's states ``E * M`` of one episode of a compact-observation dataset,
    formed from its masks and the dataset's ``embeddings.npz`` (pooled to ``obs_size`` when given)."""
    path = Path(dataset.storage.data_path).parent / EMBEDDINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the dataset has no embeddings file (it was not recorded with compact "
                                f"observations by alignsam record)")
    episode = next(iter(dataset.iterate_episodes([episode_index])))
    masks, keys = episode.observations["mask"], episode.observations["embedding_key"]
    with np.load(path) as table:
        states = []
        for mask, key in zip(masks, keys):
            embedding = table[np.asarray(key, np.uint8).tobytes().hex()]
            state = masked_state(embedding, mask.astype(np.float32))
            states.append(full_observation(state, obs_size or state.shape[-1], np.float32))
    return np.stack(states)
