"""What real use throws at the package: broken embeddings, killed writers, odd masks, interrupted training,
model files from strangers. Every error must name its culprit."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from PIL import Image

from alignsam_gym.backends import EmbeddingCache, image_digest
from alignsam_gym.backends.base import ImageEmbedding
from alignsam_gym.backends.lite import LiteBackend
from policies.runs.checkpoint import load_model, serialized_entries
from policies.runs import train

REPO = Path(__file__).resolve().parents[1]


class NaNBackend(LiteBackend):
    """The embedded backend whose encoder returns a NaN."""

    @property
    def identity(self) -> str:
        return "nan-test/" + super().identity

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        embedding = super().encode(image)
        features = embedding.features.copy()
        features[0, 0, 0] = np.nan
        return ImageEmbedding(features, embedding.image_shape, embedding.mask_shape, embedding.decoder_state)


def test_nan_embedding_is_refused_and_never_cached(tmp_path):
    cache = EmbeddingCache(directory=tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    backend = NaNBackend(device="cpu")
    with pytest.raises(ValueError, match=r"backend nan-test/.* 1 NaN/Inf values for image " + image_digest(image)):
        cache.encode(backend, image)
    assert not list(tmp_path.rglob("*.safetensors")) and len(cache) == 0


def test_nan_embedding_error_names_the_dataset_image(make_env, monkeypatch):
    env = make_env(task="synthetic-shapes", cache_dir=False)
    monkeypatch.setattr(env.unwrapped.core, "backend", NaNBackend(device="cpu"))
    with pytest.raises(ValueError, match=r"synthetic-shapes image .* \(index 1\): backend .* NaN/Inf"):
        env.reset(options={"image_index": 1})


def test_a_writer_killed_mid_write_leaves_no_entry_and_the_next_one_writes_it(tmp_path):
    """A process is SIGKILLed while it writes a cache entry (stuck in fsync): the entry must not
    exist half-written; a later process computes it and the cache holds one valid copy."""
    script = textwrap.dedent(f"""
        import os, sys, time
        import numpy as np
        from alignsam_gym.backends import EmbeddingCache
        from alignsam_gym.backends.lite import LiteBackend
        def stuck(fd):
            print("writing", flush=True)
            time.sleep(600)
        os.fsync = stuck
        image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        EmbeddingCache(directory={str(tmp_path)!r}).encode(LiteBackend(device="cpu"), image)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        temporaries = [p for p in tmp_path.rglob("*.tmp")]
        assert temporaries and temporaries[0].stat().st_size > 0  # bytes were on their way
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not list(tmp_path.rglob("*.safetensors"))
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cache = EmbeddingCache(directory=tmp_path)
    cache.encode(LiteBackend(device="cpu"), image)
    assert cache.misses == 1 and len(list(tmp_path.rglob("*.safetensors"))) == 1
    assert EmbeddingCache(directory=tmp_path).encode(LiteBackend(device="cpu"), image) is not None


def test_four_processes_building_the_same_cache(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np
        from alignsam_gym.backends import EmbeddingCache
        from alignsam_gym.backends.lite import LiteBackend
        cache = EmbeddingCache(directory={str(tmp_path)!r})
        for seed in range(3):
            image = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
            print(float(cache.encode(LiteBackend(device="cpu"), image).features.sum()))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1  # every process saw the same embeddings
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.suffix for p in files) == [".safetensors"] * 3  # one copy per image, no temporaries
    reader = EmbeddingCache(directory=tmp_path)
    for seed in range(3):
        reader.encode(LiteBackend(device="cpu"), np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert reader.disk_hits == 3 and reader.misses == 0


def _folder_task(root: Path, masks: dict[str, np.ndarray], size=(48, 40)) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for stem, mask in masks.items():
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)).save(root / split / "images" / f"{stem}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{stem}.png")
    return root


@pytest.mark.parametrize("kind", ["empty", "full"])
def test_empty_and_all_foreground_masks_give_defined_episodes(tmp_path, make_env, kind):
    mask = np.zeros((40, 48), np.uint8) if kind == "empty" else np.full((40, 48), 255, np.uint8)
    root = _folder_task(tmp_path / "data", {"only": mask})
    env = make_env(task="folder", data_root=str(root), max_prompts=3, num_images=1)
    obs, info = env.reset(seed=0)
    inner = env.unwrapped
    assert inner.episode.labels == ([0] if kind == "empty" else [1])  # one initial point: the only kind there is
    assert 0.0 <= info["iou"] <= 1.0
    rewards = [env.step(a)[1] for a in (0, 45, 99)]
    assert rewards == ([-1.0] * 3 if kind == "empty" else [1.0] * 3)


def test_images_smaller_than_the_grid(tmp_path, make_env):
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 1:3] = 1
    root = _folder_task(tmp_path / "data", {"tiny": mask})
    env = make_env(task="folder", data_root=str(root), num_images=1)
    obs, info = env.reset(seed=0)
    assert obs.shape == (432, 20, 20) and np.isfinite(obs).all()
    _, reward, *_ = env.step(45)  # the centre cell lies on the (upscaled) foreground square
    assert reward == 1.0


# -- training: interruption and resume ---------------------------------------------------------
TINY_RUN = {"algorithm": "ppo", "seed": 0, "total_timesteps": 96, "n_envs": 2, "checkpoint_every": 32,
            "env": {"task": "synthetic-shapes", "num_images": 1, "obs_size": 10, "max_prompts": 4},
            "hyperparameters": {"n_steps": 16, "batch_size": 16, "n_epochs": 1,
                                "policy_kwargs": {"features_extractor_kwargs": {"channels": 16}}}}


def _steps_logged(run: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = set()
    for events in run.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            steps.update(e.step for e in acc.Scalars(tag))
    return sorted(steps)


def test_checkpoints_on_a_schedule(tmp_path):
    run = train(TINY_RUN, tmp_path / "run")
    state = json.loads((run / "state.json").read_text())
    assert state["num_timesteps"] == 96
    assert {"model.zip", "srm.pt", "rng.pt", "state.json", "config.yaml"} <= {p.name for p in run.iterdir()}
    assert not list(run.glob(".*"))  # no temporary left behind


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_training_with_a_checkpoint_and_resume_continues_the_curve(tmp_path, sig):
    run = tmp_path / "run"
    config = {**TINY_RUN, "total_timesteps": 100_000, "checkpoint_every": None}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "policies.cli", "train", "--config", str(tmp_path / "run.yaml"),
                             "--out", str(run), "--no-progress"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # the handlers are installed when this line is printed
        lines.append(line)
        if line.startswith("checkpoints to"):
            break
    assert "on SIGINT/SIGTERM" in lines[-1], "".join(lines)
    time.sleep(2)  # some training steps
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=300)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert f"stopped by signal {signal.Signals(sig).name}" in output and f"--resume {run}" in output
    stopped_at = json.loads((run / "state.json").read_text())["num_timesteps"]
    assert 0 < stopped_at < 100_000 and (run / "srm.pt").is_file()
    from policies.cli import main

    assert main(["train", "--resume", str(run), "--timesteps", str(stopped_at + 64), "--no-progress"]) == 0
    assert json.loads((run / "state.json").read_text())["num_timesteps"] >= stopped_at + 64
    steps = _steps_logged(run)
    assert max(steps) >= stopped_at + 32 and min(s for s in steps if s > stopped_at) > stopped_at  # continues, not from 0


def test_resume_without_a_model_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"empty: no model.zip to resume"):
        train(TINY_RUN, tmp_path / "empty", resume=True)


# -- untrusted files ------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs ``touch``: what a hostile model.zip could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_model_zip_with_a_pickled_payload_is_loaded_without_running_it(tmp_path):
    import cloudpickle

    run = train({**TINY_RUN, "total_timesteps": 32}, tmp_path / "run")
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(run / "model.zip") as src, zipfile.ZipFile(hostile, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "data":
                content = json.loads(data)
                content["lr_schedule"][":serialized:"] = base64.b64encode(cloudpickle.dumps(_Payload(marker))).decode()
                data = json.dumps(content).encode()
            dst.writestr(item, data)
    assert "lr_schedule" in serialized_entries(hostile)
    env = gym.make("AlignSAM-v0", **TINY_RUN["env"])
    model = load_model("ppo", hostile, env, "cpu", TINY_RUN["hyperparameters"])
    assert not marker.exists()
    assert model.num_timesteps == 32
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.zip: not a Stable-Baselines3 model archive"):
        load_model("ppo", tmp_path / "junk.zip", env, "cpu")


def test_atomic_writes_give_files_the_usual_mode(tmp_path):
    import os

    from alignsam_gym.atomic import FILE_MODE, write_json

    write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == FILE_MODE
    umask = os.umask(0)
    os.umask(umask)
    assert FILE_MODE == 0o666 & ~umask  # what open() would give, not mkstemp's owner-only 0600
