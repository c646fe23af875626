"""The SAM backend on tiny SAM models of the real classes, loaded from checkpoint files."""

from __future__ import annotations

import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide

from alignsam_gym.backends.sam import (
    OFFICIAL_ARCHITECTURES, SamBackend, build_sam, infer_architecture, load_sam, to_sam_coordinates,
)
from tests.conftest import save_tiny_sam, tiny_sam_architecture


@pytest.fixture(scope="module")
def tiny(tiny_sam_checkpoint) -> SamBackend:
    return SamBackend(tiny_sam_checkpoint, device="cpu")


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("model_type", sorted(OFFICIAL_ARCHITECTURES))
def test_official_architectures_are_recognised_from_shapes(model_type):
    arch = OFFICIAL_ARCHITECTURES[model_type]
    with torch.device("meta"):  # the real ViT-B/L/H modules, without allocating their weights
        state = build_sam(arch).state_dict()
    assert infer_architecture(state) == arch and arch.model_type == model_type


def test_tiny_architecture_round_trips(tiny_sam_checkpoint):
    model, arch = load_sam(tiny_sam_checkpoint)
    assert arch == tiny_sam_architecture() and arch.model_type.startswith("custom(embed_dim=32")
    assert type(model).__name__ == "Sam"


def test_wrong_model_type_names_file_and_types(tiny_sam_checkpoint):
    with pytest.raises(ValueError, match=rf"{tiny_sam_checkpoint.name}: expected a vit_b SAM checkpoint, "
                                         r"found custom\(embed_dim=32, depth=2\)"):
        load_sam(tiny_sam_checkpoint, "vit_b")
    with pytest.raises(ValueError, match="expected a vit_h SAM checkpoint"):
        gym.make("AlignSAM-v0", backend="sam", sam_checkpoint=str(tiny_sam_checkpoint), sam_model_type="vit_h",
                 num_images=1)
    with pytest.raises(ValueError, match="sam_model_type must be one of"):
        SamBackend(tiny_sam_checkpoint, model_type="vit_x")


def test_bad_checkpoint_files(tmp_path, tiny_sam_checkpoint):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pth: cannot be read as a PyTorch checkpoint"):
        load_sam(junk)
    partial = tmp_path / "partial.pth"
    state = torch.load(tiny_sam_checkpoint, weights_only=True)
    del state["image_encoder.neck.0.weight"]
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r"partial\.pth: not a SAM checkpoint \(missing or malformed tensor "
                                         r"'image_encoder.neck.0.weight'\)"):
        load_sam(partial)
    extra = tmp_path / "extra.pth"
    state = torch.load(tiny_sam_checkpoint, weights_only=True)
    state["mask_decoder.extra"] = torch.zeros(1)
    torch.save(state, extra)
    with pytest.raises(ValueError, match=r"extra\.pth: does not match .* unexpected \['mask_decoder.extra'\]"):
        load_sam(extra)
    with pytest.raises(FileNotFoundError, match="SAM checkpoint not found: .*missing.pth"):
        SamBackend(tmp_path / "missing.pth")


def test_checkpoint_from_environment(monkeypatch, tiny_sam_checkpoint):
    monkeypatch.delenv("ALIGNSAM_SAM_CHECKPOINT", raising=False)
    with pytest.raises(ValueError, match="needs a checkpoint: pass sam_checkpoint=PATH or set ALIGNSAM_SAM_CHECKPOINT"):
        SamBackend()
    monkeypatch.setenv("ALIGNSAM_SAM_CHECKPOINT", str(tiny_sam_checkpoint))
    assert SamBackend(device="cpu").checkpoint == tiny_sam_checkpoint
    with pytest.raises(ValueError, match="apply to SAM backends, not to backend='lite'"):
        gym.make("AlignSAM-v0", sam_checkpoint=str(tiny_sam_checkpoint))


def test_full_episode_on_tiny_sam(tiny_sam_checkpoint):
    env = gym.make("AlignSAM-v0", backend="sam", sam_checkpoint=str(tiny_sam_checkpoint), num_images=1,
                   task="synthetic-shapes", device="cpu", render_mode="rgb_array")
    assert env.observation_space.shape == (32, 64, 64)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 64, 64) and env.observation_space.contains(obs)
    for t in range(1, 16):
        obs, reward, terminated, truncated, info = env.step(t * 6)
        assert reward in (1.0, -1.0) and 0.0 <= info["iou"] <= 1.0 and info["num_prompts"] == t
    assert terminated and not truncated
    assert env.render().shape == (400, 800, 3)


def test_points_land_in_the_right_embedding_cell_on_non_square_images(tiny):
    h, w = 300, 600  # resized to 512 x 1024: the embedding's valid part is 32 x 64 cells
    model = tiny.model()
    dense_pe = model.prompt_encoder.get_dense_pe()[0]
    new_h, new_w = 512, 1024
    for row, col in [(0, 0), (5, 40), (31, 63)]:
        centre = np.array([[(col + 0.5) * 16 * w / new_w, (row + 0.5) * 16 * h / new_h]])  # in image pixels
        sam = to_sam_coordinates(centre, (h, w), 1024)
        pe = model.prompt_encoder.pe_layer.forward_with_coords(torch.as_tensor(sam + 0.5, dtype=torch.float32)[None],
                                                               (1024, 1024))[0, 0]
        torch.testing.assert_close(pe, dense_pe[:, row, col], rtol=1e-4, atol=1e-4)
    # Same transform as SamPredictor's, shifted from continuous coordinates to SAM's pixel indices.
    points = np.array([[0.5, 0.5], [599.5, 299.5], [123.0, 45.0]])
    reference = ResizeLongestSide(1024).apply_coords(points.copy(), (h, w))
    np.testing.assert_allclose(to_sam_coordinates(points, (h, w), 1024), reference - 0.5, atol=1e-9)


@pytest.mark.parametrize("fast_upscaling", [True, False])
@pytest.mark.parametrize("num_points", [1, 3])
def test_decode_matches_sam_predictor(tiny, num_points, fast_upscaling, monkeypatch):
    if not fast_upscaling:  # the generic path, for decoders whose upscaling is not SAM's
        monkeypatch.setattr("alignsam_gym.backends.sam_decoder._standard_upscaling", lambda upscaling: False)
    image = random_image(300, 600, seed=num_points)
    embedding = tiny.encode(image)
    assert embedding.mask_shape == (128, 256) and embedding.image_shape == (300, 600)
    points = np.array([[100.5, 50.5], [400.5, 200.5], [550.5, 20.5]])[:num_points]
    labels = np.array([1, 0, 1])[:num_points]
    logits = tiny.decode(embedding, points, labels)

    predictor = SamPredictor(tiny.model())
    predictor.set_image(image)
    np.testing.assert_allclose(embedding.features, predictor.features[0].numpy(), rtol=1e-4, atol=1e-4)
    # SamPredictor takes pixel indices and scales them; the continuous point p maps exactly to the
    # index p - 0.5 / scale (our transform keeps the pixel centre where it is after the resize).
    scale = np.array([1024 / 600, 512 / 300])
    _, scores, low_res = predictor.predict(point_coords=points - 0.5 / scale, point_labels=labels,
                                           multimask_output=num_points == 1, return_logits=True)
    best = int(np.argmax(scores)) if num_points == 1 else 0
    np.testing.assert_allclose(logits, low_res[best][:128, :256], rtol=1e-4, atol=1e-4)


def test_identity_changes_with_the_checkpoint(tmp_path, tiny):
    other = SamBackend(save_tiny_sam(tmp_path / "other.pth", seed=1), device="cpu")
    same = SamBackend(shutil.copy(tiny.checkpoint, tmp_path / "copy.pth"), device="cpu")
    assert tiny.identity != other.identity
    assert tiny.identity == same.identity  # content, not path
    assert tiny.feature_shape == (32, 64, 64)
