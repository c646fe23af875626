"""backend="sam2": Meta's sam2 code paths on an official-format SAM 2.1 hiera-tiny checkpoint with random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")

from alignsam_gym.backends.sam2 import Sam2Backend, build_model, infer_config, save_random_sam2  # noqa: E402

TINY = "configs/sam2.1/sam2.1_hiera_t.yaml"


@pytest.fixture(scope="module")
def sam2_checkpoint(tmp_path_factory):
    return save_random_sam2(tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt", TINY, seed=0)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    picture = np.full((300, 420, 3), 40, np.uint8)
    picture[80:220, 120:300] = (200, 60, 30)
    return np.clip(picture + rng.integers(0, 20, picture.shape), 0, 255).astype(np.uint8)


def test_split_equals_sam2_image_predictor(sam2_checkpoint, image):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    backend = Sam2Backend(sam2_checkpoint, device="cpu")
    assert backend.config == TINY  # inferred from the tensor shapes
    embedding = backend.encode(image)
    assert embedding.features.shape == backend.feature_shape == (256, 64, 64)
    assert embedding.mask_shape == (256, 256) and embedding.image_shape == (300, 420)
    assert {k: v.shape for k, v in embedding.decoder_state.items()} == {"high_res_0": (32, 256, 256),
                                                                       "high_res_1": (64, 128, 128)}
    predictor = SAM2ImagePredictor(backend.model())
    predictor.set_image(image)
    np.testing.assert_allclose(embedding.features, predictor.get_image_embedding()[0].numpy(), rtol=1e-5, atol=1e-5)
    for points, labels in (([[210.0, 150.0]], [1]), ([[210.0, 150.0], [30.0, 30.0], [400.0, 280.0]], [1, 0, 0])):
        ours = backend.decode(embedding, np.array(points), np.array(labels))
        masks, scores, low_res = predictor.predict(point_coords=np.array(points), point_labels=np.array(labels),
                                                   multimask_output=len(points) == 1, return_logits=True)
        best = int(np.argmax(scores)) if len(points) == 1 else 0
        assert ours.shape == (256, 256)
        np.testing.assert_allclose(ours, low_res[best], rtol=1e-4, atol=1e-4)


def test_env_runs_on_the_sam2_checkpoint(sam2_checkpoint, make_env):
    env = make_env(backend="sam2", sam_checkpoint=str(sam2_checkpoint), num_images=1, cache_dir=False)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (256, 64, 64)
    for action in (0, 45, 99):
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward in (-1.0, 1.0) and 0.0 <= info["iou"] <= 1.0
    assert env.unwrapped.episode.logits.shape == (256, 256)


def test_config_inference_and_mismatch_errors(sam2_checkpoint, tmp_path):
    for config in ("configs/sam2.1/sam2.1_hiera_s.yaml", "configs/sam2/sam2_hiera_t.yaml"):
        assert infer_config(build_model(config).state_dict(), tmp_path / "x.pt") == config
    wrong = Sam2Backend(sam2_checkpoint, sam2_config="configs/sam2.1/sam2.1_hiera_b+.yaml", device="cpu")
    with pytest.raises(ValueError, match=r"sam2.1_hiera_tiny.pt does not match configs/sam2.1/sam2.1_hiera_b\+.yaml: "
                                         r"image_encoder\.trunk\.pos_embed has shape \(1, 96, 7, 7\) in the file, "
                                         r"\(1, 112, 14, 14\) in the config"):
        wrong.model()
    with pytest.raises(ValueError, match="sam2_config must be one of"):
        Sam2Backend(sam2_checkpoint, sam2_config="hiera_t")
    with pytest.raises(ValueError, match="takes sam2_config"):
        Sam2Backend(sam2_checkpoint, model_type="vit_b")


def test_checkpoints_load_without_running_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    bad = tmp_path / "pickled.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Payload()}, bad)
    with pytest.raises(ValueError, match="pickled.pt: not a readable SAM 2 checkpoint"):
        Sam2Backend(bad, device="cpu").config
    bare = tmp_path / "bare.pt"
    torch.save({"w": torch.zeros(1)}, bare)
    with pytest.raises(ValueError, match="bare.pt: expected a SAM 2 release checkpoint"):
        Sam2Backend(bare, device="cpu").config
