"""The on-disk embedding cache: hits across instances and processes, invalidation, damage, concurrency."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

from alignsam_gym.backends import EmbeddingCache, image_digest, shared_cache
from alignsam_gym.backends.sam import SamBackend
from tests.conftest import save_tiny_sam


class CountingSam(SamBackend):
    """The SAM backend on a tiny checkpoint, counting its encodes."""

    def __init__(self, checkpoint):
        super().__init__(checkpoint, device="cpu")
        self.encodes = 0

    def encode(self, image):
        self.encodes += 1
        return super().encode(image)


@pytest.fixture
def backend(tiny_sam_checkpoint):
    return CountingSam(tiny_sam_checkpoint)


IMAGE = np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8)


def test_disk_entry_is_reused_by_a_new_cache(tmp_path, backend):
    first = EmbeddingCache(directory=tmp_path).encode(backend, IMAGE)
    files = list(tmp_path.rglob("*.safetensors"))
    assert len(files) == 1 and files[0].name == f"{image_digest(IMAGE)}.safetensors"
    fresh = EmbeddingCache(directory=tmp_path)
    again = fresh.encode(backend, IMAGE)
    assert backend.encodes == 1 and (fresh.disk_hits, fresh.misses) == (1, 0)
    np.testing.assert_array_equal(again.features, first.features)
    assert again.mask_shape == first.mask_shape and again.image_shape == first.image_shape
    assert fresh.encode(backend, IMAGE) is again and fresh.hits == 1  # then from memory


def test_lite_decoder_state_round_trips(tmp_path):
    from alignsam_gym.backends.lite import LiteBackend

    lite = LiteBackend(encoder_size=320, device="cpu")
    stored = EmbeddingCache(directory=tmp_path).encode(lite, IMAGE)
    loaded = EmbeddingCache(directory=tmp_path).encode(lite, IMAGE)
    assert stored.decoder_state.keys() == loaded.decoder_state.keys()
    points, labels = np.array([[40.0, 40.0], [120.0, 60.0]]), np.array([1, 0])
    np.testing.assert_array_equal(lite.decode(stored, points, labels), lite.decode(loaded, points, labels))


def test_float16_on_disk(tmp_path, backend):
    full = EmbeddingCache(directory=tmp_path / "f32").encode(backend, IMAGE)
    EmbeddingCache(directory=tmp_path / "f16", disk_dtype="float16").encode(backend, IMAGE)
    half = EmbeddingCache(directory=tmp_path / "f16").encode(backend, IMAGE)
    assert half.features.dtype == np.float32
    np.testing.assert_allclose(half.features, full.features, rtol=2e-3, atol=2e-3)
    size = {d: next((tmp_path / d).rglob("*.safetensors")).stat().st_size for d in ("f32", "f16")}
    assert size["f16"] < 0.6 * size["f32"]
    with pytest.raises(ValueError, match="disk_dtype must be one of"):
        EmbeddingCache(disk_dtype="int8")


def test_new_checkpoint_invalidates(tmp_path, backend):
    cache = EmbeddingCache(directory=tmp_path)
    cache.encode(backend, IMAGE)
    other = CountingSam(save_tiny_sam(tmp_path / "other.pth", seed=5))
    cache.encode(other, IMAGE)
    assert other.encodes == 1 and len(list(tmp_path.rglob("*.safetensors"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_entry_is_discarded_and_recomputed(tmp_path, backend, damage):
    first = EmbeddingCache(directory=tmp_path).encode(backend, IMAGE)
    path = next(tmp_path.rglob("*.safetensors"))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-100] ^= 0xFF  # inside the feature bytes: only the checksum can tell
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    fresh = EmbeddingCache(directory=tmp_path)
    with pytest.warns(RuntimeWarning, match=f"discarding damaged embedding cache entry .*{path.name}"):
        again = fresh.encode(backend, IMAGE)
    assert fresh.misses == 1 and backend.encodes == 2
    np.testing.assert_allclose(again.features, first.features, rtol=1e-5, atol=1e-5)
    assert EmbeddingCache(directory=tmp_path).encode(backend, IMAGE) is not None and backend.encodes == 2


def test_stray_temporary_file_from_a_crashed_writer_is_ignored(tmp_path, backend):
    cache = EmbeddingCache(directory=tmp_path)
    target = cache.path_for(backend.identity, image_digest(IMAGE))
    target.parent.mkdir(parents=True)
    (target.parent / f".{target.stem}.crashed.tmp").write_bytes(b"half a file")
    cache.encode(backend, IMAGE)
    assert target.is_file() and backend.encodes == 1


def test_two_processes_writing_the_same_key(tmp_path, tiny_sam_checkpoint):
    script = textwrap.dedent(f"""
        import numpy as np
        from alignsam_gym.backends import EmbeddingCache
        from alignsam_gym.backends.sam import SamBackend
        image = np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8)
        cache = EmbeddingCache(directory={str(tmp_path / 'cache')!r})
        emb = cache.encode(SamBackend({str(tiny_sam_checkpoint)!r}, device="cpu"), image)
        print(float(emb.features.sum()))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert outputs[0][0] == outputs[1][0]
    files = list((tmp_path / "cache").rglob("*"))
    assert [f.suffix for f in files if f.is_file()] == [".safetensors"]  # one entry, no temporary left
    reader = EmbeddingCache(directory=tmp_path / "cache")
    reader.encode(CountingSam(tiny_sam_checkpoint), IMAGE)
    assert reader.disk_hits == 1


def test_envs_share_the_default_disk_cache(tmp_path, monkeypatch, tiny_sam_checkpoint):
    monkeypatch.setenv("ALIGNSAM_CACHE", str(tmp_path))
    env = gym.make("AlignSAM-v0", backend="sam", sam_checkpoint=str(tiny_sam_checkpoint), num_images=1,
                   task="synthetic-mirror", device="cpu")
    env.reset(seed=0)
    assert env.unwrapped.cache is shared_cache(None) and len(list(tmp_path.rglob("*.safetensors"))) == 1
    memory_only = gym.make("AlignSAM-v0", backend="sam", sam_checkpoint=str(tiny_sam_checkpoint), num_images=1,
                           task="synthetic-mirror", device="cpu", cache_dir=False)
    assert memory_only.unwrapped.cache.directory is None
