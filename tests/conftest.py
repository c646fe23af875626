from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import alignsam_gym  # noqa: F401  (registers the ids)

# Every env of the test session (and of its subprocesses) caches embeddings here, never in the user's cache.
TEST_CACHE = tempfile.mkdtemp(prefix="alignsam-test-cache-")
os.environ["ALIGNSAM_CACHE"] = TEST_CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


CCP_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ccp"


@pytest.fixture
def ccp_root() -> Path:
    if not (CCP_ROOT / "images").is_dir():
        pytest.skip(f"the CCP subset is not at {CCP_ROOT}")
    return CCP_ROOT


@pytest.fixture
def make_env():
    """``make_env(**kwargs)``: gym.make('AlignSAM-v0') with few images (each costs an encode); closed after the test."""
    envs = []

    def factory(**kwargs):
        kwargs.setdefault("num_images", 2)
        env = gym.make("AlignSAM-v0", **kwargs)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()


def tiny_sam_architecture():
    from alignsam_gym.backends.sam import SamArchitecture

    return SamArchitecture(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
                           prompt_embed_dim=32, decoder_depth=2, decoder_mlp_dim=64, iou_head_hidden_dim=32)


def save_tiny_sam(path: Path, seed: int = 0) -> Path:
    """A randomly initialised SAM of the real classes with small widths and depths, saved as a checkpoint."""
    import torch

    from alignsam_gym.backends.sam import build_sam

    torch.manual_seed(seed)
    torch.save(build_sam(tiny_sam_architecture()).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pth")


TINY_CLIP = "alignsam-test-tiny-clip"


def make_tiny_clip(folder: Path) -> Path:
    """A tiny open_clip model (real classes, random weights) registered as TINY_CLIP and saved as a state dict."""
    import json

    import open_clip
    import torch

    config = {"embed_dim": 32,
              "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "patch_size": 16, "head_width": 32},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    path = folder / "tiny_clip.pt"
    torch.save(open_clip.create_model(TINY_CLIP, pretrained=None).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


def map_value_at_action(grid: np.ndarray, action: int, grid_size: int = 10) -> float:
    """An ``(h, w)`` map over the image read at the centre of action cell ``action``, bilinear between
    map-cell centres (scipy's implementation, independent of the env's)."""
    from scipy.ndimage import map_coordinates

    row, col = divmod(action, grid_size)
    h, w = grid.shape
    coords = [[(row + 0.5) * h / grid_size - 0.5], [(col + 0.5) * w / grid_size - 0.5]]
    return float(map_coordinates(grid.astype(np.float64), coords, order=1, mode="nearest")[0])
