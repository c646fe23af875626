"""Reference episodes: what ``AlignSAM-v0`` does, recorded once and replayed by the tests.

First recorded on main 642f58b, before the redesign; recorded again when decoder v1 gained its weight floor
(``GraphParamsV1.min_weight``), which made its masks the same under every CPU's kernels and so changed them.

``python -m tests.reference_episodes`` (from the project root) plays every configuration in
:data:`CONFIGS` with fixed seeds and actions through the public API only (``gym.make``, ``reset``,
``step``, ``AlignSAMVectorEnv``) and writes ``tests/data/reference_episodes.json``;
``tests/test_reference_episodes.py`` plays them again and compares step by step. Observations are
kept as fingerprints (shape, dtype, sum, absolute sum and 16 values at fixed positions), since whole
observations would take megabytes. The ``lite`` backend plays with ``decoder="v1"``, the decoder those
episodes were recorded with (``v2``, the default since, is a different segmenter).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import alignsam_gym  # noqa: F401

REFERENCE_FILE = Path(__file__).parent / "data" / "reference_episodes.json"
TASKS = ("synthetic-blur", "synthetic-shadow", "synthetic-mirror", "synthetic-saliency", "synthetic-shapes")

#: name -> (env kwargs, seed); ``clip_checkpoint``/``sam_checkpoint`` values ``"<tiny>"`` name the tests' tiny models
CONFIGS: dict[str, dict[str, Any]] = {}
for _task in TASKS:
    for _source in ("srm", "gt", "positive", "last_mask"):
        CONFIGS[f"{_task}/{_source}"] = {"task": _task, "label_source": _source, "num_images": 2}
CONFIGS["synthetic-saliency/srm-init"] = {"task": "synthetic-saliency", "init_prompts": "srm", "num_images": 2}
CONFIGS["synthetic-mirror/obs10-f16"] = {"task": "synthetic-mirror", "obs_size": 10, "obs_dtype": "float16",
                                         "num_images": 2}
CONFIGS["synthetic-saliency/compact"] = {"task": "synthetic-saliency", "obs_mode": "compact", "num_images": 2}
CONFIGS["synthetic-shapes/clip"] = {"task": "synthetic-shapes", "label_source": "clip", "num_images": 2,
                                    "clip_checkpoint": "<tiny>"}
CONFIGS["synthetic-shapes/explicit-srm"] = {"task": "synthetic-shapes", "label_source": "srm", "num_images": 2,
                                            "clip_checkpoint": "<tiny>", "srm_branch": "explicit",
                                            "init_prompts": "srm"}
CONFIGS["synthetic-saliency/sam"] = {"task": "synthetic-saliency", "backend": "sam", "sam_checkpoint": "<tiny>",
                                     "num_images": 2}
VECTOR_CONFIG = {"task": "synthetic-saliency", "num_images": 3}
SEED = 3
EPISODES = 2
PROBE = 16


def fingerprint(obs: Any) -> dict[str, Any]:
    """Shape, dtype, sums and PROBE values at evenly spaced flat positions of an observation array."""
    if isinstance(obs, dict):
        return {"mask": fingerprint(obs["mask"])}
    arr = np.asarray(obs)
    flat = arr.ravel().astype(np.float64)
    idx = np.linspace(0, flat.size - 1, PROBE).astype(int)
    return {"shape": list(arr.shape), "dtype": str(arr.dtype), "sum": float(flat.sum()),
            "abs_sum": float(np.abs(flat).sum()), "probe": flat[idx].tolist()}


def _info(info: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in info.items() if k in ("iou", "is_foreground", "label", "num_prompts", "image_index")}
    out["prompted"] = np.flatnonzero(~info["action_mask"]).tolist()
    return {k: (bool(v) if isinstance(v, (bool, np.bool_)) else (float(v) if k == "iou" else v)) for k, v in out.items()}


#: the env kwargs that select the embedded decoder the references were recorded with
LITE_V1 = {"backend_kwargs": {"decoder": "v1"}}


def resolve(kwargs: dict[str, Any], clip_checkpoint: str | None, sam_checkpoint: str | None) -> dict[str, Any]:
    kwargs = dict(kwargs)
    if kwargs.get("backend", "lite") == "lite":
        kwargs.update(LITE_V1)
    if kwargs.get("clip_checkpoint") == "<tiny>":
        kwargs["clip_checkpoint"], kwargs["clip_model"] = clip_checkpoint, "alignsam-test-tiny-clip"
    if kwargs.get("sam_checkpoint") == "<tiny>":
        kwargs["sam_checkpoint"] = sam_checkpoint
    return kwargs


def play(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """EPISODES episodes of one env with seed SEED and actions from a generator seeded SEED."""
    env = gym.make("AlignSAM-v0", **kwargs)
    rng = np.random.default_rng(SEED)
    episodes = []
    for episode in range(EPISODES):
        obs, info = env.reset(seed=SEED + episode)
        steps = [{"obs": fingerprint(obs), "info": _info(info)}]
        done = False
        while not done:
            action = int(rng.integers(env.action_space.n))
            obs, reward, terminated, truncated, info = env.step(action)
            steps.append({"action": action, "reward": float(reward), "terminated": bool(terminated),
                          "truncated": bool(truncated), "obs": fingerprint(obs), "info": _info(info)})
            done = terminated or truncated
        episodes.append(steps)
    env.close()
    return episodes


def play_vector(kwargs: dict[str, Any], num_envs: int = 3, steps: int = 20) -> list[dict[str, Any]]:
    """``steps`` steps of ``AlignSAMVectorEnv`` (NEXT_STEP autoreset) from seed SEED."""
    envs = gym.make_vec("AlignSAM-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **resolve(kwargs, None, None))
    rng = np.random.default_rng(SEED)
    obs, info = envs.reset(seed=SEED)
    out = [{"obs": [fingerprint(o) for o in obs], "iou": np.asarray(info["iou"], float).tolist()}]
    for _ in range(steps):
        actions = rng.integers(100, size=num_envs)
        obs, reward, terminated, truncated, info = envs.step(actions)
        out.append({"actions": actions.tolist(), "reward": reward.tolist(), "terminated": terminated.tolist(),
                    "obs": [fingerprint(o) for o in obs], "iou": np.asarray(info["iou"], float).tolist(),
                    "label": np.asarray(info.get("label", np.zeros(num_envs)), float).tolist()})
    envs.close()
    return out


def main() -> int:
    import tempfile

    from tests.conftest import save_tiny_sam

    folder = Path(tempfile.mkdtemp(prefix="alignsam-ref-"))
    clip = str(save_tiny_clip(folder))
    sam = str(save_tiny_sam(folder / "tiny_sam.pth"))
    reference = {"configs": {}, "vector": None}
    for name, kwargs in CONFIGS.items():
        print(name, flush=True)
        reference["configs"][name] = play(resolve(kwargs, clip, sam))
    reference["vector"] = play_vector(VECTOR_CONFIG)
    REFERENCE_FILE.write_text(json.dumps(reference))
    print(f"wrote {REFERENCE_FILE}")
    return 0


def save_tiny_clip(folder: Path) -> Path:
    """The tests' tiny CLIP (as the ``tiny_clip_checkpoint`` fixture makes it)."""
    from tests.conftest import make_tiny_clip

    return make_tiny_clip(folder)


if __name__ == "__main__":
    raise SystemExit(main())
