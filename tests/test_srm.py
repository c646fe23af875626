"""The SRM network and loss, and the env's SRM-driven label sources, initial prompts and masks."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from alignsam_gym.srm import SRM, make_srm, srm_loss
from tests.conftest import TINY_CLIP, map_value_at_action


@pytest.mark.parametrize("branch", ["implicit", "explicit"])
def test_srm_output_shape_and_batch_independence(branch):
    srm = make_srm(48, branch, hidden=32).eval()
    states = torch.randn(3, 48, 12, 12)
    clip = torch.randn(3, 48, 12, 12) if branch == "explicit" else None
    out = srm(states, clip)
    assert out.shape == (3, 1, 12, 12)
    alone = torch.cat([srm(states[i:i + 1], None if clip is None else clip[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(out, alone, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in srm.modules())


def test_srm_arguments():
    with pytest.raises(ValueError, match="branch must be one of"):
        SRM(8, "semantic")
    with pytest.raises(ValueError, match="needs clip_state"):
        make_srm(8, "explicit", hidden=16)(torch.zeros(1, 8, 4, 4))
    a, b = make_srm(16, seed=3), make_srm(16, seed=3)
    state = torch.get_rng_state()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    make_srm(16, seed=4)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone


def test_srm_loss_on_known_masks():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # p = 0.5 everywhere: BCE = ln 2; Dice = 1 - (2 * 0.5 + 1) / (2 + 1 + 1) = 0.5
    assert srm_loss(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(math.log(2) + 0.5, abs=1e-6)
    perfect = torch.tensor([[[[20.0, -20.0], [-20.0, -20.0]]]])
    assert srm_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert srm_loss(torch.full((1, 1, 2, 2), -20.0), torch.zeros(1, 1, 2, 2)).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        srm_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))


def rigged(env, bias: float) -> None:
    """Give the env's SRM a constant output: sigmoid(bias) everywhere."""
    state = {k: torch.zeros_like(v) if k.startswith("head.") else v for k, v in env.unwrapped.srm.network.state_dict().items()}
    state["head.bias"] = torch.tensor([bias])
    env.unwrapped.set_srm_weights(state)


def test_srm_label_source_reads_the_srm(make_env):
    env = make_env(label_source="srm")
    assert env.unwrapped.label_source == "srm" and make_env().unwrapped.label_source == "srm"  # the default
    env.reset(seed=0)
    rigged(env, 5.0)
    assert all(env.step(a)[4]["label"] == 1 for a in range(0, 40, 7))
    rigged(env, -5.0)
    assert all(env.step(a)[4]["label"] == 0 for a in range(40, 80, 7))


def test_srm_label_uses_the_current_state(make_env):
    env = make_env(label_source="srm")
    env.reset(seed=1)
    inner = env.unwrapped
    for action in (12, 55, 87):
        expected = torch.sigmoid(inner.srm.network(torch.from_numpy(inner.srm_sample()["state"])[None]))[0, 0].detach().numpy()
        # 20x20 embedding grid: the point lies on the corner of four cells, read bilinearly
        assert env.step(action)[4]["label"] == int(map_value_at_action(expected, action) > 0.5)


def test_last_mask_label_source(make_env):
    env = make_env(label_source="last_mask")
    env.reset(seed=2)
    for action in (0, 44, 45, 99):
        prob = env.unwrapped.mask_probability
        assert env.step(action)[4]["label"] == int(map_value_at_action(prob, action) > 0.5)  # 256x256 mask


def test_srm_initial_prompts_are_argmax_and_argmin(make_env):
    env = make_env(init_prompts="srm")
    env.reset(seed=0)
    inner = env.unwrapped
    with torch.inference_mode():
        prob = torch.sigmoid(inner.srm.network(torch.from_numpy(np.array(inner.episode.embedding.features))[None]))[0, 0].numpy()
    for point, index in zip(inner.episode.points[:2], (prob.argmax(), prob.argmin())):
        row, col = divmod(int(index), prob.shape[1])
        np.testing.assert_allclose(point, [(col + 0.5) * 40, (row + 0.5) * 40])  # 800 px / 20 cells
    assert inner.episode.labels[:2] == [1, 0]


def test_srm_branch_follows_the_task_and_clip(make_env, tiny_clip_checkpoint):
    assert make_env(task="synthetic-blur").unwrapped.srm_branch == "implicit"
    assert make_env(task="synthetic-shadow").unwrapped.srm_branch == "implicit"  # explicit, but no CLIP weights
    env = make_env(task="synthetic-shadow", clip_checkpoint=str(tiny_clip_checkpoint), clip_model=TINY_CLIP)
    assert env.unwrapped.srm_branch == "explicit"
    env.reset(seed=0)
    sample = env.unwrapped.srm_sample()
    assert sample["clip_state"].shape == sample["state"].shape == (432, 20, 20)
    assert env.step(3)[4]["label"] in (0, 1)
    assert make_env(task="synthetic-shadow", srm_branch="implicit", clip_checkpoint=str(tiny_clip_checkpoint),
                    clip_model=TINY_CLIP).unwrapped.srm_branch == "implicit"
    with pytest.raises(ValueError, match="srm_branch='explicit' needs CLIP-Surgery maps"):
        make_env(srm_branch="explicit")
    with pytest.raises(ValueError, match="srm_branch must be one of"):
        make_env(srm_branch="semantic")


def test_srm_sample_target(make_env):
    env = make_env()
    env.reset(seed=0)
    sample = env.unwrapped.srm_sample()
    target = sample["target"]
    assert target.shape == (20, 20) and 0 <= target.min() and target.max() <= 1
    truth = env.unwrapped.episode.mask.reshape(20, 40, 20, 40).mean(axis=(1, 3))  # 800 px = 20 cells of 40 px
    np.testing.assert_allclose(target, truth, atol=1e-5)


def test_action_masks(make_env):
    env = make_env()
    _, info = env.reset(seed=0)
    assert info["action_mask"].all() and env.unwrapped.action_masks().all()
    env.step(3)
    _, _, _, _, info = env.step(7)
    assert not info["action_mask"][[3, 7]].any() and info["action_mask"].sum() == 98
    env.reset(seed=1)
    assert env.unwrapped.action_masks().all()


@pytest.mark.parametrize("branch", ["implicit", "explicit"])
def test_masked_logits_from_image_terms_equal_the_forward_on_the_masked_state(branch):
    """The labeler's path (image-only terms once, then per mask) is the SRM's function in another order."""
    srm = make_srm(48, branch, hidden=32).eval()
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 48, 12, 12, generator=generator)
    masks = torch.rand(2, 12, 12, generator=generator)
    clip = torch.randn(2, 48, 12, 12, generator=generator) if branch == "explicit" else None
    with torch.no_grad():
        direct = srm(features * masks[:, None], clip)
        factored = srm.masked_logits(srm.image_terms(features, clip), masks)
    torch.testing.assert_close(factored, direct, rtol=1e-5, atol=1e-5)
    assert not torch.equal(direct[0], direct[1])  # the comparison is not between constants


def test_the_labeler_recomputes_image_terms_after_new_weights(make_env):
    env = make_env(task="synthetic-saliency")
    env.reset(seed=0)
    inner = env.unwrapped
    before = inner.srm_scores()  # first sight of the image: the plain forward
    np.testing.assert_allclose(inner.srm_scores(), before, rtol=1e-5)  # then from its cached terms: same scores
    rigged(env, 3.0)  # sigmoid(3) everywhere
    np.testing.assert_allclose(inner.srm_scores(), 1 / (1 + np.exp(-3.0)), rtol=1e-5)
