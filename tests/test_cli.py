"""The alignsam command line: demo and decoder benchmark, end to end."""

from __future__ import annotations

import json

from PIL import Image

from policies.cli import main


def test_demo_writes_gif_strip_and_json(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-prompts", "3", "--task", "synthetic-shapes"]) == 0
    gif = Image.open(out / "episode.gif")
    assert gif.n_frames == 4 and gif.size == (800, 400)  # the initial state and 3 prompts
    assert Image.open(out / "episode_strip.png").size == (4 * 400, 200)
    episode = json.loads((out / "episode.json").read_text())
    assert episode["task"] == "synthetic-shapes" and episode["policy"] == "random" and len(episode["steps"]) == 3
    assert episode["return"] == sum(s["reward"] for s in episode["steps"])
    assert "final IoU" in capsys.readouterr().out


def test_demo_bad_task_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--task", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_bench_decoder_end_to_end(tmp_path, ccp_root):
    out = tmp_path / "bench.json"
    assert main(["bench", "decoder", "--data-root", str(ccp_root), "--limit", "2", "--clicks", "3",
                 "--speed-images", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "ccp-person" and result["backend_result"]["images"] == 2
    curve = result["backend_result"]["miou_per_click"]
    assert len(curve) == 3 and all(0 <= v <= 1 for v in curve)
    assert len(result["grabcut_result"]["miou_per_click"]) == 3
    assert result["decode_speed"]["decodes"] == 3 and result["decode_speed"]["ms_median"] > 0


def test_cache_build_fills_the_cache_the_env_reads(tmp_path, capsys, tiny_sam_checkpoint):
    import gymnasium as gym

    args = ["cache", "build", "--task", "synthetic-shapes", "--num-images", "2", "--backend", "sam",
            "--sam-checkpoint", str(tiny_sam_checkpoint), "--cache-dir", str(tmp_path), "--device", "cpu",
            "--batch-size", "2"]
    assert main(args) == 0
    assert "encoding 2 with sam-v1/" in capsys.readouterr().out
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 already cached" in out and "encoding 0" in out
    env = gym.make("AlignSAM-v0", backend="sam", sam_checkpoint=str(tiny_sam_checkpoint), task="synthetic-shapes",
                   num_images=2, cache_dir=str(tmp_path), device="cpu")
    env.reset(seed=0)
    env.reset(seed=1, options={"image_index": 1 - env.unwrapped.episode.image_index})
    cache = env.unwrapped.cache  # the same process-wide cache the command filled: nothing is encoded again
    assert cache.misses == 0 and cache.hits + cache.disk_hits == 2
