"""CLIP-Surgery maps on a tiny open_clip model of the real classes, and label_source='clip'."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from alignsam_gym.backends.clip_surgery import ClipSurgeryMaps, _surgery_tokens, feature_surgery, load_open_clip
from tests.conftest import TINY_CLIP, map_value_at_action


def test_feature_surgery_single_prompt_subtracts_the_empty_prompt():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0]])
    empty = torch.tensor([0.6, 0.8])
    torch.testing.assert_close(feature_surgery(image, text, redundant=empty), torch.tensor([[0.4], [-0.8]]))


def test_feature_surgery_several_prompts_subtracts_their_common_part():
    image = torch.tensor([[1.0, 2.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # products [1, 0] and [0, 2]; their mean [0.5, 1]; minus it and summed: -0.5 and 0.5
    torch.testing.assert_close(feature_surgery(image, texts), torch.tensor([[-0.5, 0.5]]))
    # weighted by class probabilities / their mean = [1.5, 0.5]: [1.5, 0] and [0, 1]; mean [0.75, 0.5]
    torch.testing.assert_close(feature_surgery(image, texts, class_probs=torch.tensor([0.75, 0.25])),
                               torch.tensor([[0.25, -0.25]]))


@pytest.fixture(scope="module")
def maps(tiny_clip_checkpoint) -> ClipSurgeryMaps:
    return ClipSurgeryMaps(tiny_clip_checkpoint, "shadow", model_name=TINY_CLIP, surgery_blocks=2, device="cpu")


def test_original_path_is_open_clip_and_new_path_differs(maps):
    model = maps.model()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        new, original = _surgery_tokens(model.visual, x, surgery_blocks=2)
        torch.testing.assert_close(original[:, 0], model.encode_image(x), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(new[:, 1:], original[:, 1:], atol=1e-3)
        unchanged, _ = _surgery_tokens(model.visual, x, surgery_blocks=0)
        torch.testing.assert_close(unchanged, original)


def test_similarity_map(maps, tiny_clip_checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    sim = maps.similarity_map(image)
    assert sim.shape == (4, 4) and sim.dtype == np.float32
    assert sim.min() == pytest.approx(0.0) and sim.max() == pytest.approx(1.0)
    other = ClipSurgeryMaps(tiny_clip_checkpoint, "mirror", model_name=TINY_CLIP, surgery_blocks=2, device="cpu")
    assert not np.allclose(other.similarity_map(image), sim) and other.identity != maps.identity
    assert "text=shadow" in maps.identity


def test_clip_label_source(tiny_clip_checkpoint, tmp_path):
    env = gym.make("AlignSAM-v0", task="synthetic-shadow", num_images=1, label_source="clip",
                   clip_checkpoint=str(tiny_clip_checkpoint), clip_model=TINY_CLIP, cache_dir=str(tmp_path))
    env.reset(seed=0)
    inner = env.unwrapped
    clip_map = inner.episode.clip_map
    assert clip_map.shape == (4, 4) and inner.clip_maps.text_prompt == "shadow"
    for action in range(0, 100, 9):
        _, _, _, _, info = env.step(action)
        assert info["label"] == int(map_value_at_action(clip_map, action) > 0.5)  # the 4x4 map at the prompt
        if info["num_prompts"] == inner.max_prompts:
            break
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2  # the embedding and the CLIP map, both cached


def test_clip_errors(tiny_clip_checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("ALIGNSAM_CLIP_CHECKPOINT", raising=False)
    with pytest.raises(ValueError, match="pass clip_checkpoint=PATH or set ALIGNSAM_CLIP_CHECKPOINT"):
        gym.make("AlignSAM-v0", num_images=1, label_source="clip")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.pt: cannot be read as open_clip weights"):
        load_open_clip(junk, TINY_CLIP)
    with pytest.raises(ValueError, match=r"tiny_clip\.pt: does not match open_clip 'ViT-B-32'"):
        load_open_clip(tiny_clip_checkpoint, "ViT-B-32")
    with pytest.raises(FileNotFoundError, match="CLIP checkpoint not found"):
        ClipSurgeryMaps(tmp_path / "none.pt", "shadow")
