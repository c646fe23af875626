"""Scale-out on a local Ray instance: benchmark trials as Ray tasks, the cache built with Ray Data, RLlib PPO."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from stable_baselines3 import PPO

ray = pytest.importorskip("ray")

from policies.benchmarks.grid import run_benchmark  # noqa: E402
from policies.cli import main  # noqa: E402
from policies.ray_cluster import connect  # noqa: E402
from policies.runs import load_srm_weights  # noqa: E402

pytestmark = pytest.mark.ray

GRID = {"name": "ray-check", "tasks": ["synthetic-shapes"], "seeds": [0], "policies": ["random", "centre", "ppo"],
        "test_images": 2, "max_prompts": [4], "frames_at": [],
        "train": {"total_timesteps": 64, "num_images": 2, "n_envs": 2,
                  "env": {"obs_size": 10, "max_prompts": 4},
                  "hyperparameters": {"n_steps": 16, "batch_size": 16, "n_epochs": 1,
                                      "policy_kwargs": {"features_extractor_kwargs": {"channels": 16}}}},
        "resources": {"cpu": 2}}
# Not compared: wall time, and the files' byte digests (SB3 stores its start time in model.zip, torch.save the
# temporary file's name in its archive); the trained weights themselves are compared instead.
TIMING = {"wall_s", "checkpoints"}


@pytest.fixture(scope="module")
def local_ray():
    connect("local", num_cpus=2)
    yield
    ray.shutdown()


def _comparable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_grid_on_ray_records_what_the_sequential_run_records(tmp_path, local_ray):
    sequential = run_benchmark(GRID, tmp_path / "sequential", progress=False)
    on_ray = run_benchmark(GRID, tmp_path / "ray", progress=False, ray_address="local")
    assert len(on_ray["results"]) == 3
    assert _comparable(on_ray["results"]) == _comparable(sequential["results"])
    runs = [tmp_path / mode / "runs" / "synthetic-shapes-ppo-seed0" for mode in ("sequential", "ray")]
    srms = [load_srm_weights(run / "srm.pt") for run in runs]
    policies = [PPO.load(run / "model.zip", device="cpu").policy.state_dict() for run in runs]
    for first, second in ((srms[0], srms[1]), (policies[0], policies[1])):
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first)
    # rerunning resumes: nothing is trained or evaluated again, nothing is recorded twice
    again = run_benchmark(GRID, tmp_path / "ray", progress=False, ray_address="local")
    assert again["results"] == on_ray["results"]
    # a sequential rerun resumes the Ray run too (the resources key only says where trials run)
    assert run_benchmark({**GRID, "resources": {"cpu": 1}}, tmp_path / "ray", progress=False)["results"] == \
        on_ray["results"]


def test_cache_build_on_ray_writes_the_entries_of_the_local_build(tmp_path, local_ray):
    def entries(folder: Path) -> list[tuple[str, int]]:
        return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())

    common = ["cache", "build", "--task", "synthetic-shapes", "--num-images", "3", "--split", "test"]
    assert main([*common, "--cache-dir", str(tmp_path / "local")]) == 0
    assert main([*common, "--cache-dir", str(tmp_path / "ray"), "--ray", "--batch-size", "2"]) == 0
    assert entries(tmp_path / "ray") == entries(tmp_path / "local") and len(entries(tmp_path / "local")) == 3
    # cached images are skipped before anything is encoded
    from policies.ray_cache import build_cache_on_ray

    report = build_cache_on_ray("synthetic-shapes", "test", 3, None, "lite", {}, tmp_path / "ray", "float32", 800,
                                "cpu", "local")
    assert report == {"images": 3, "cached": 3, "encoded": 0, "seconds": 0.0}


def test_rllib_ppo_runs_one_iteration_with_two_env_runners(tmp_path, local_ray):
    config = yaml.safe_load(Path("experiments/configs/rllib_ppo_synthetic_saliency.yaml").read_text())
    config.update({"env": {**config["env"], "task": "synthetic-shapes", "num_images": 2, "max_prompts": 4},
                   "num_env_runners": 2, "train_batch_size": 32, "minibatch_size": 16, "num_epochs": 1,
                   "model": {"channels": 16}})
    path = tmp_path / "rllib.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["rllib", "--config", str(path), "--out", str(out), "--iterations", "1"]) == 0
    lines = (out / "progress.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["env_steps"] >= 32
    assert (out / "checkpoint" / "rllib_checkpoint.json").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["num_env_runners"] == 2
    assert main(["rllib", "--config", str(path), "--out", str(out), "--iterations", "1"]) == 2  # never overwritten


def _descendants(root: int) -> set[int]:
    """The PIDs of every process under ``root``, from the parent links in /proc (Ray's workers are children of the
    raylet the driver started)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # the process ended while we looked
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def test_killing_a_worker_loses_and_duplicates_no_record(tmp_path):
    """A grid run in a subprocess on Ray; one trial's worker is killed with SIGKILL mid-trial. Ray reruns the
    trial; every record is written exactly once."""
    config = {**GRID, "seeds": [0, 1], "policies": ["random", "ppo"], "resources": {"cpu": 1},
              "train": {**GRID["train"], "total_timesteps": 256}}
    config_file = tmp_path / "grid.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "policies.cli", "benchmark", "--config", str(config_file),
                                "--out", str(out), "--ray", "--quiet"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        found = [pid for pid in map(int, subprocess.run(["pgrep", "-f", "ray::_trial_task"], capture_output=True,
                                                        text=True).stdout.split())
                 if pid in _descendants(process.pid)]  # this grid's worker, never another Ray run's on the machine
        if found:
            time.sleep(2)  # into the trial's training
            killed = int(found[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    output = process.communicate(timeout=600)[0]
    assert killed is not None, output[-3000:]
    assert process.returncode == 0, output[-3000:]
    records = json.loads((out / "results.json").read_text())["results"]
    keys = [(r["task"], r["policy"], r["seed"]) for r in records]
    assert sorted(keys) == sorted({(t, p, s) for t in config["tasks"] for p in config["policies"]
                                   for s in config["seeds"]})
    assert len(keys) == len(set(keys)) == 4


def test_ctrl_c_leaves_a_resumable_results_file(tmp_path):
    """SIGINT to a Ray grid after its first trial: outstanding trials are cancelled, results.json holds the
    finished records, and the same command completes the grid without duplicating any."""
    config = {**GRID, "seeds": [0, 1, 2], "policies": ["random", "ppo"], "resources": {"cpu": 2},
              "train": {**GRID["train"], "total_timesteps": 192}}
    config_file = tmp_path / "grid.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "policies.cli", "benchmark", "--config", str(config_file), "--out", str(out),
               "--ray", "--quiet"]
    # SIGINT as a user's Ctrl-C: a suite started in the background of a non-interactive shell inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt, so the child gets the default disposition
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = out / "results.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if results.is_file() and json.loads(results.read_text())["results"]:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.2)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 130 and "interrupted" in output, output[-3000:]
    partial = json.loads(results.read_text())["results"]
    assert 0 < len(partial) < 6
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = json.loads(results.read_text())["results"]
    keys = [(r["policy"], r["seed"]) for r in records]
    assert len(keys) == len(set(keys)) == 6
    assert all(r in records for r in partial)  # the first run's records are kept as written
