"""The env, training throughput and soak benchmarks on tiny settings: every configuration runs and reports."""

from __future__ import annotations

import json

import pytest

from policies.benchmarks.soak import run_soak
from policies.benchmarks.env_throughput import run_env_benchmark


def test_env_benchmark_reports_every_configuration():
    result = run_env_benchmark(backends=("lite",), sizes=(1, 2), dummy_sizes=(2,), episodes=1, lite_episodes=1,
                               num_images=1, max_prompts=2, rollout_envs=1, progress=False)
    (row,) = result["results"]
    for name in ("common", "single_cached", "dummy_2", "batched_1", "batched_2"):
        assert row[name]["steps_per_s"] > 0 and row[name]["ms_per_episode"] > 0 and len(row[name]["episode_s"]) == 1
    assert row["batched_2_over_dummy_2"] > 0 and row["batched_decoder_forward"] is False
    memory = result["rollout_memory"]
    assert memory["compact"]["rollout_buffer_observation_bytes"] * 100 < memory["full"]["rollout_buffer_observation_bytes"]
    assert 0 < memory["compact_over_full_peak"] < 0.25


def test_soak_reports_memory_and_files_per_round():
    result = run_soak(rounds=3, warmup=1, episodes=1, num_envs=2, tasks=("synthetic-shapes",), num_images=1,
                      max_prompts=3, progress=False)
    assert [s["round"] for s in result["samples"]] == [0, 1, 2]
    assert result["env_steps"] == 3 * 3 * 2
    assert all(s["rss_mib"] > 0 and s["open_files"] > 0 for s in result["samples"])
    assert abs(result["open_files_growth_after_warmup"]) <= 2


def test_bench_train_compares_variants_with_the_baseline_in_one_run(tmp_path):
    from policies.cli import main

    out = tmp_path / "train.json"
    assert main(["bench", "train", "--variants", "batched", "--timesteps", "64", "--repeats", "1", "--no-profile",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["variant"]: r for r in report["results"]}
    assert set(rows) == {"baseline", "batched"} and rows["baseline"]["speedup_over_baseline"] == 1.0
    assert rows["baseline"]["same_weights_as_baseline"] is True  # a run is compared with itself
    assert rows["batched"]["steps_per_s"] > 0 and report["machine"] and report["timesteps"] == 64


def test_bench_train_variants_change_only_what_they_name():
    from policies.benchmarks.quickstart import QUICKSTART
    from policies.benchmarks.train_throughput import BASELINE, RUNNERS, VARIANTS, _config, run_train_benchmark

    base = _config("baseline", 2048, "synthetic-shadow")
    assert base["env"]["backend_kwargs"] == QUICKSTART["backend_kwargs"] and base["env"]["task"] == "synthetic-shadow"
    fast = _config("fast", 2048, "synthetic-shadow")
    assert fast["n_envs"] == 8 and fast["hyperparameters"]["n_steps"] * 8 == 128 * BASELINE["n_envs"]  # same rollout
    changed = ("n_envs", "hyperparameters")
    assert {k: v for k, v in fast.items() if k not in changed} == {k: v for k, v in base.items() if k not in changed}
    assert _config("pair", 2048, "synthetic-shadow") == base and RUNNERS["pair"] == {"threads": 1, "processes": 2}
    assert set(RUNNERS) <= set(VARIANTS)
    with pytest.raises(ValueError, match="unknown variants"):
        run_train_benchmark(variants=("warp",))


def test_bench_train_times_runs_side_by_side_and_counts_both(tmp_path):
    from policies.cli import main

    out = tmp_path / "train.json"
    assert main(["bench", "train", "--variants", "pair", "--timesteps", "64", "--repeats", "1", "--no-profile",
                 "--json", str(out)]) == 0
    rows = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    pair = rows["pair"]
    assert pair["runs_side_by_side"] == 2 and rows["baseline"]["runs_side_by_side"] == 1
    assert pair["steps_per_s"] == pytest.approx(2 * 64 / pair["median_s"], rel=0.02)
