"""The GPU path, checked where a CPU can show it: device parsing, no CUDA query before workers fork, the
SRM on its device with outputs brought back (the ``meta`` device stands in for CUDA), one model per
physical device, the device in the cache identity, batched upscaling, out-of-memory halving, device
plumbing from a run config, the SRM callback's host synchronisations."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from alignsam_gym.devices import DeviceSpec, cuda_device_count, device_tag, parse_device

HAS_CUDA = cuda_device_count() > 0


@pytest.mark.parametrize("given, expected", [("auto", "auto"), ("cpu", "cpu"), (torch.device("cpu"), "cpu"),
                                             ("meta", "meta")])
def test_device_arguments_are_parsed_without_resolving_auto(given, expected):
    assert parse_device(given) == expected
    assert DeviceSpec(given).resolved == (expected != "auto")


@pytest.mark.parametrize("bad", ["gpu", "cuda0", "auto:1", "cpu:x", ""])
def test_bad_device_arguments_name_what_is_expected(bad):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu' or 'cuda"):
        parse_device(bad)


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU-only message")
@pytest.mark.parametrize("cuda", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_on_a_machine_without_it_fails_when_asked_for(cuda):
    with pytest.raises(ValueError, match="CUDA is not available"):
        DeviceSpec(cuda)


def test_out_of_range_cuda_devices_fail_at_once(monkeypatch):
    from alignsam_gym import devices

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 2)
    assert parse_device("cuda") == parse_device("cuda:0") == "cuda:0"  # one key for one physical device
    assert parse_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        parse_device("cuda:2")


def test_envs_used_with_device_auto_leave_forked_children_able_to_use_cuda():
    """gym.make_vec(..., 'async'), SubprocVecEnv and data loaders fork after an env was built and often after
    it was reset. The probe is real: a fork after torch.cuda.is_available() is marked bad (on this CPU machine
    too: without NVML, torch asks the CUDA runtime), a fork after building, resetting and stepping envs with
    the default device "auto" (a standalone env and the batched vector env, the SAM backend too) is not."""
    script = textwrap.dedent("""
        import os, torch, gymnasium as gym, alignsam_gym
        from alignsam_gym.envs.vector import AlignSAMVectorEnv
        def child_is_bad():
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(w, b"1" if torch.cuda._is_in_bad_fork() else b"0"); os._exit(0)
            os.waitpid(pid, 0)
            return os.read(r, 1) == b"1"
        seen = []
        env = gym.make("AlignSAM-v0", num_images=1)               # default device "auto"
        vec = AlignSAMVectorEnv(2, num_images=1, backend="sam", sam_checkpoint=os.environ["TINY_SAM"])
        seen.append(child_is_bad())
        env.reset(seed=0)
        env.step(0)
        seen.append(child_is_bad())
        vec.reset(seed=0)
        vec.step([1, 2])
        seen.append(child_is_bad())
        torch.cuda.is_available()
        seen.append(child_is_bad())
        print(*seen)
    """)
    from tests.conftest import save_tiny_sam
    import tempfile
    from pathlib import Path

    checkpoint = save_tiny_sam(Path(tempfile.mkdtemp()) / "tiny.pth")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TINY_SAM": str(checkpoint)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False", "True"], out.stdout + out.stderr


def test_cuda_device_count_never_asks_the_cuda_runtime(monkeypatch):
    """NVML's count when torch has it; without NVML, 0 when no driver library loads, else the driver's
    count from a child process; torch.cuda.device_count() (the runtime, in this process) only once CUDA
    is initialised anyway."""
    from alignsam_gym import devices

    def runtime_asked():
        raise AssertionError("asked the CUDA runtime in this process")

    monkeypatch.setattr(torch.cuda, "device_count", runtime_asked)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.version, "hip", None)
    try:
        _check_cuda_device_count_probes(monkeypatch, devices)
    finally:
        devices.cuda_device_count.cache_clear()  # no fake count left for the other tests


def _check_cuda_device_count_probes(monkeypatch, devices) -> None:
    for nvml, loadable, child, expected in [(2, False, None, 2), (0, True, None, 0), (-1, False, None, 0),
                                            (-1, True, "3\n", 3), (-1, True, "", 0)]:
        devices.cuda_device_count.cache_clear()
        monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda nvml=nvml: nvml)
        monkeypatch.setattr(devices, "_driver_loadable", lambda loadable=loadable: loadable)
        calls = []

        def fake_run(args, child=child, **kwargs):
            calls.append(args)
            return subprocess.CompletedProcess(args, 0, stdout=child, stderr="")

        monkeypatch.setattr(devices.subprocess, "run", fake_run)
        assert devices.cuda_device_count() == expected, (nvml, loadable, child)
        assert bool(calls) == (child is not None)
        if calls:
            assert calls[0][:2] == [sys.executable, "-c"] and "cuDeviceGetCount" in calls[0][2]


def test_the_srm_runs_where_its_device_says_and_brings_outputs_back(make_env):
    """On 'meta' (a stand-in for CUDA) the forward must get meta inputs; the output then has to be copied
    back to the host, which is what fails on meta, after the forward ran."""
    env = make_env(task="synthetic-saliency")
    env.reset(seed=0)
    labeler = env.unwrapped.srm
    labeler.device_spec = DeviceSpec("meta")
    with pytest.raises(NotImplementedError, match="meta"):  # the copy back to the host, after the forward
        labeler.probabilities([env.unwrapped.episode])
    assert next(labeler.network.parameters()).device.type == "meta"
    terms = labeler._image_terms(env.unwrapped.episode)  # noqa: SLF001  (what the forward was given)
    assert {t.device.type for t in terms.values()} == {"meta"}


def test_one_model_per_physical_device(tiny_sam_checkpoint):
    from alignsam_gym.backends.sam import SamBackend

    a = SamBackend(tiny_sam_checkpoint, device="cpu", decoder_cache_size=1)
    b = SamBackend(tiny_sam_checkpoint, device=torch.device("cpu"), decoder_cache_size=3)
    assert a is not b and a.model() is b.model()


def test_the_cache_identity_names_the_device_except_on_the_cpu(tiny_sam_checkpoint):
    from alignsam_gym.backends.lite import LiteBackend
    from alignsam_gym.backends.sam import SamBackend

    assert device_tag(torch.device("cpu")) == ""
    assert device_tag(torch.device("meta")) == "/meta"
    cpu, meta = SamBackend(tiny_sam_checkpoint, device="cpu"), SamBackend(tiny_sam_checkpoint, device="meta")
    assert meta.identity == cpu.identity + "/meta"
    assert LiteBackend(device="meta").identity == LiteBackend(device="cpu").identity + "/meta"
    assert "cuda" not in cpu.identity and "/cpu" not in cpu.identity  # CPU caches keep their keys


def test_batched_upscaling_equals_the_loop(tiny_sam_checkpoint):
    from alignsam_gym.backends import sam_decoder
    from alignsam_gym.backends.sam import load_sam

    model, _ = load_sam(tiny_sam_checkpoint)
    upscaling = model.mask_decoder.output_upscaling
    generator = torch.Generator().manual_seed(0)
    c = model.mask_decoder.transformer_dim
    tokens = torch.randn(3, 8 * 8, c, generator=generator)
    hyper = torch.randn(3, 2, c // 8, generator=generator)
    with torch.no_grad():
        loop = sam_decoder._upscaled_masks(upscaling, tokens, hyper, 8, 8, batched=False)  # noqa: SLF001
        batched = sam_decoder._upscaled_masks(upscaling, tokens, hyper, 8, 8, batched=True)  # noqa: SLF001
    assert batched.shape == (3, 2, 32, 32)
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-5)


def test_a_batch_that_runs_out_of_memory_is_halved_and_retried(tmp_path):
    from alignsam_gym.backends.embedding_cache import EmbeddingCache
    from alignsam_gym.backends.lite import LiteBackend
    from alignsam_gym.data.tasks import make_dataset
    from alignsam_gym.precompute import encode_dataset

    class SmallCard(LiteBackend):
        """Runs out of memory on batches of more than two images."""

        def encode_batch(self, images):
            if len(images) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return [self.encode(image) for image in images]

    backend = SmallCard(device="cpu")
    dataset = make_dataset("synthetic-shapes", "test", 5)
    cache = EmbeddingCache(directory=tmp_path)
    report = encode_dataset(cache, backend, dataset, image_size=128, batch_size=8)
    assert (report.images, report.cached, report.encoded, report.batch_size) == (5, 0, 5, 2)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 5
    again = encode_dataset(cache, backend, dataset, image_size=128, batch_size=8)
    assert (again.cached, again.encoded) == (5, 0)  # skipped before anything is encoded


def test_a_run_configs_device_reaches_the_backend():
    from policies.runs import RunConfig, make_training_env

    config = RunConfig.from_dict({"vec_env": "batched", "n_envs": 1, "device": "cpu",
                                  "env": {"task": "synthetic-shapes", "num_images": 1}})
    env = make_training_env(config)
    assert env.get_attr("backend")[0].device_spec.spec == "cpu"
    assert env.get_attr("srm")[0].device_spec.spec == "cpu"
    env.close()


def test_subprocess_workers_on_cuda_are_warned_about(monkeypatch):
    import importlib

    train_module = importlib.import_module("policies.runs.training")

    monkeypatch.setattr(train_module, "cuda_device_count", lambda: 1)
    from alignsam_gym import devices

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 1)
    assert train_module._may_use_cuda("auto") and train_module._may_use_cuda("cuda:0")  # noqa: SLF001
    assert not train_module._may_use_cuda("cpu")  # noqa: SLF001


def test_the_srm_callback_logs_once_per_rollout_without_per_step_syncs():
    from stable_baselines3.common.logger import Logger

    from policies import SRMCallback, make_model
    from policies.sb3.vec_env import AlignSAMVecEnv

    env = AlignSAMVecEnv(2, task="synthetic-shapes", num_images=1, obs_size=10, max_prompts=4)
    model = make_model("ppo", env, device="cpu", seed=0, n_steps=8, batch_size=8, n_epochs=1)
    recorded = []

    class Recording(Logger):
        def record(self, key, value, exclude=None):
            if key.startswith("srm/"):
                recorded.append((key, value))
            super().record(key, value, exclude)

    model.set_logger(Recording(folder=None, output_formats=[]))
    callback = SRMCallback(device="cpu")
    model.learn(32, callback=callback)
    rollouts = 32 // (8 * 2)
    keys = [k for k, _ in recorded]
    assert keys.count("srm/loss") == keys.count("srm/iou") == rollouts  # once per rollout, not per step
    assert all(np.isfinite(v) and v >= 0 for _, v in recorded)


@pytest.mark.skipif(HAS_CUDA, reason="checks what the script says without a GPU")
def test_the_gpu_check_runs_without_a_gpu_and_says_so(tmp_path):
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "experiments" / "gpu_check.py"), "--json", str(tmp_path / "g.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "g.json").read_text())
    assert result["gpu"] is False and "no CUDA device" in result["note"]


def test_batches_of_a_backend_without_encode_batch_cache_every_image(tmp_path):
    """The lite backend has no batched encoder: a batch of 3 is three encodes, and all three are cached
    (before the shared encode_into_cache, only each batch's first image was)."""
    from alignsam_gym.backends.embedding_cache import EmbeddingCache
    from alignsam_gym.backends.lite import LiteBackend
    from alignsam_gym.data.tasks import make_dataset
    from alignsam_gym.precompute import encode_dataset, missing_images

    backend = LiteBackend(device="cpu")
    dataset = make_dataset("synthetic-shapes", "test", 5)
    cache = EmbeddingCache(directory=tmp_path)
    report = encode_dataset(cache, backend, dataset, image_size=128, batch_size=3)
    assert (report.encoded, report.batch_size) == (5, 3)
    assert len(list(tmp_path.rglob("*.safetensors"))) == 5
    assert missing_images(EmbeddingCache(directory=tmp_path), backend, dataset, 128) == []
