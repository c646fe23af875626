"""Behaviour is kept: the recorded reference episodes (tests/reference_episodes.py) play out the same, step by
step, on every embedded task and label source, SAM, CLIP and the vector env, on any CPU the package supports.
``make test-kernels`` (in ``.ci/run``) runs this module a second time under other kernels: torch on its
``DEFAULT`` kernels, oneDNN at SSE4.1, numpy without its run-time SIMD dispatch (``ALIGNSAM_KERNELS=sse41``,
whose settings the first test checks took effect)."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import pytest

from tests.reference_episodes import CONFIGS, REFERENCE_FILE, VECTOR_CONFIG, play, play_vector, resolve

REFERENCE = json.loads(REFERENCE_FILE.read_text())

# What another CPU's kernels (AVX-512 or AVX2 or SSE4.1, oneDNN's ISA, OpenBLAS's core type) may change, and
# by how much. Actions, rewards, labels, terminations, prompted cells and image indices are compared exactly:
# the decoders are well-conditioned (GraphParamsV1.min_weight), so a last-place change of the encoder's output
# moves a mask probability by at most about 1e-4 and flips no superpixel. Floats get tolerances scaled to what
# they are (one superpixel flipped, or one label, changes an observation's sums by 1e-3 or more):
#: IoU: absolute; 5e-4 is a few pixels of a mask at the working resolution (256 px; SAM: 256x256 logits)
IOU_ATOL = 5e-4
#: an observation's sums: relative to its absolute sum (for the signed sum too: cancellation would magnify
#: last-place differences); decoder v1's masks differ by up to 5e-5 of it under SSE4.1 kernels
SUM_RTOL = 1e-4
#: the probed values: relative to the observation's mean absolute value, or one half-precision step for
#: float16 observations (a last-place change of a float32 may round to the neighbouring float16)
PROBE_RTOL = {"float32": 1e-4, "float16": 2.0**-10}


def assert_fingerprint(got: dict, want: dict, where: str) -> None:
    if "mask" in want:
        assert_fingerprint(got["mask"], want["mask"], where + " mask")
        return
    assert got["shape"] == want["shape"] and got["dtype"] == want["dtype"], where
    size = float(np.prod(want["shape"]))
    scale = max(want["abs_sum"] / size, 1e-12)
    np.testing.assert_allclose(got["abs_sum"], want["abs_sum"], rtol=SUM_RTOL, atol=1e-9, err_msg=where)
    np.testing.assert_allclose(got["sum"], want["sum"], rtol=0, atol=SUM_RTOL * want["abs_sum"] + 1e-9, err_msg=where)
    probe_want = np.asarray(want["probe"])
    rtol = PROBE_RTOL[want["dtype"]]
    np.testing.assert_allclose(got["probe"], probe_want, rtol=rtol, atol=rtol * scale, err_msg=where)


def assert_same_episodes(got: list, want: list, name: str) -> None:
    assert len(got) == len(want), name
    for e, (got_steps, want_steps) in enumerate(zip(got, want)):
        assert len(got_steps) == len(want_steps), f"{name} episode {e}"
        for t, (g, w) in enumerate(zip(got_steps, want_steps)):
            where = f"{name} episode {e} step {t}"
            for key in ("action", "reward", "terminated", "truncated"):
                assert g.get(key) == w.get(key), f"{where}: {key}"
            gi, wi = dict(g["info"]), dict(w["info"])
            np.testing.assert_allclose(gi.pop("iou"), wi.pop("iou"), rtol=0, atol=IOU_ATOL, err_msg=where)
            assert gi == wi, where  # labels, is_foreground, num_prompts, prompted cells, image index: exact
            assert_fingerprint(g["obs"], w["obs"], where)


@pytest.mark.skipif(os.environ.get("ALIGNSAM_KERNELS") != "sse41", reason="runs under make test-kernels")
def test_the_kernel_settings_took_effect():
    """Otherwise make test-kernels would replay the episodes on this machine's best kernels and prove nothing."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    assert not any(__cpu_features__[feature] for feature in __cpu_dispatch__)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_episode_matches_reference(name, tiny_clip_checkpoint, tiny_sam_checkpoint):
    kwargs = resolve(CONFIGS[name], str(tiny_clip_checkpoint), str(tiny_sam_checkpoint))
    assert_same_episodes(play(kwargs), REFERENCE["configs"][name], name)


def test_vector_env_matches_reference():
    got, want = play_vector(VECTOR_CONFIG), REFERENCE["vector"]
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want)):
        for key in ("actions", "reward", "terminated", "label"):
            assert g.get(key) == w.get(key), f"vector step {t}: {key}"
        np.testing.assert_allclose(g["iou"], w["iou"], rtol=0, atol=IOU_ATOL, err_msg=f"vector step {t}")
        for i, (go, wo) in enumerate(zip(g["obs"], w["obs"])):
            assert_fingerprint(go, wo, f"vector step {t} env {i}")
