"""Scale-out on more than one node, simulated on this machine: a Ray cluster of a head node and a worker node
(``ray.cluster_utils.Cluster``, each node with its own CPUs and a resource of its own), of which the worker node
is lost mid-run. A lost machine takes every process on it at once: the node's raylet and all its children are
stopped together (SIGSTOP), checked, then killed, so nothing of the node writes another byte after the moment the
test chose. The benchmark grid and ``cache build --ray`` must still record exactly what the sequential run and the
local build record, each record or entry once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

ray = pytest.importorskip("ray")

from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from policies.benchmarks import grid  # noqa: E402
from policies.benchmarks.grid import run_benchmark  # noqa: E402
from policies.cli import main  # noqa: E402
from policies.ray_cache import build_cache_on_ray  # noqa: E402
from policies.ray_cluster import connect  # noqa: E402
from policies.runs import RunFolder, load_srm_weights  # noqa: E402
from tests.test_ray import GRID, _comparable  # noqa: E402

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
#: three 1-CPU trials, each training PPO (with its SRM) and evaluating it and the random policy with that SRM
CONFIG = {**GRID, "seeds": [0, 1, 2], "policies": ["random", "ppo"], "resources": {"cpu": 1},
          "train": {**GRID["train"], "total_timesteps": 256}}
#: the head holds one trial (or encoder actor), the worker node two, so the worker node is always busy
HEAD_CPUS, WORKER_CPUS = 1, 2
CACHE_IMAGES = 12
_run_trial = grid.run_trial


@pytest.fixture
def two_nodes(monkeypatch):
    """A head node and a worker node on this machine, the driver connected to the head; both shut down after."""
    if ray.is_initialized():
        ray.shutdown()
    # the workers import this module (the traced trial below) whatever folder pytest was started from
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": HEAD_CPUS, "resources": {"head_node": 1}, "include_dashboard": False,
        # a lost node is declared dead after ~5 s instead of ~15 s (actors on it are restarted only then)
        "_system_config": {"health_check_period_ms": 1000}})
    try:
        worker = cluster.add_node(num_cpus=WORKER_CPUS, resources={"worker_node": 1})
        connect(cluster.address)
        nodes = {name: _node_id(name) for name in ("head_node", "worker_node")}
        assert len(set(nodes.values())) == 2
        yield cluster, worker, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


def _node_id(resource: str) -> str:
    return next(n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"])


def _children(pid: int) -> dict[int, str]:
    """The direct children of ``pid``: their process titles (``ray::<task or actor>``)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_text().split("\0")[0]
            except (OSError, IndexError, ValueError):
                pass  # ended meanwhile
    return found


def _signal(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class NodeLoss(threading.Thread):
    """Loses ``node`` (all its processes at once) the first time ``when(titles)`` holds while the node is frozen;
    ``titles`` are the process titles of the node's workers by pid. ``lost`` is what ``when`` returned."""

    def __init__(self, cluster: Cluster, node: Any, when: Callable[[dict[int, str]], Any], timeout: float):
        super().__init__(daemon=True)
        self.cluster, self.node, self.when, self.deadline = cluster, node, when, time.monotonic() + timeout
        self.lost: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        frozen: list[int] = []
        try:
            raylet = self.node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
            while not self.done.is_set() and time.monotonic() < self.deadline:
                if self.when(_children(raylet)):
                    os.kill(raylet, signal.SIGSTOP)  # first, so that it starts no new process
                    children = _children(raylet)
                    frozen = [raylet, *children]
                    _signal(children, signal.SIGSTOP)
                    lost = self.when(children)  # again: nothing on the node moves any more
                    if lost:
                        _signal(children, signal.SIGKILL)
                        self.cluster.remove_node(self.node, allow_graceful=False)
                        frozen, self.lost = [], lost
                        return
                    _signal(reversed(frozen), signal.SIGCONT)
                    frozen = []
                self.done.wait(0.05)
        except BaseException as err:  # reported by the test
            self.error = err
            _signal(reversed(frozen), signal.SIGCONT)  # a node left as it was, for the fixture to shut down

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=60)


def _within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` on a thread, failing the test when it has not returned after ``seconds`` (a hung Ray run)."""
    outcome: dict[str, Any] = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s: the run hangs after the node loss")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _one_thread(call: Callable[[], Any]) -> Any:
    """``call()`` with torch on one thread, as in the 1-CPU Ray tasks and actors (float sums depend on the count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return call()
    finally:
        torch.set_num_threads(threads)


def traced_run_trial(config: dict[str, Any], trial: grid.Trial, out: str, done: frozenset[str] = frozenset()):
    """``grid.run_trial``, first noting which node and process this attempt runs on (``<out>/../attempts``)."""
    notes = Path(out).parent / "attempts"
    notes.mkdir(exist_ok=True)
    note = {"seed": trial.seed, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
            "time_ns": time.time_ns()}
    tmp = notes / f".{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(note))
    tmp.rename(notes / f"{tmp.name[1:]}.json")
    return _run_trial(config, trial, out, done)


def _attempts(folder: Path) -> list[dict[str, Any]]:
    """The attempts noted by :func:`traced_run_trial`, in the order they began."""
    notes = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(notes, key=lambda note: note["time_ns"])


def test_grid_on_two_nodes_losing_one_mid_run_records_what_the_sequential_run_records(tmp_path, two_nodes,
                                                                                      monkeypatch):
    cluster, worker, nodes = two_nodes
    sequential = _one_thread(lambda: run_benchmark(CONFIG, tmp_path / "sequential", progress=False))
    out = tmp_path / "ray"

    def training_on_the_worker(titles: dict[int, str]):
        """The seeds of the worker node's trials, once each of them has begun (noted its process), one is training,
        and none is between its first and last checkpoint file (model.zip written, state.json not yet: a torn
        checkpoint, which the retry sets aside and trains again from step 0; tests/test_training.py covers it)."""
        busy = {pid for pid, title in titles.items() if title == "ray::_trial_task"}
        noted = {a["pid"]: a["seed"] for a in _attempts(tmp_path / "attempts") if a["node"] == nodes["worker_node"]}
        if not busy or not busy <= noted.keys():
            return None
        runs = [RunFolder(out / "runs" / f"synthetic-shapes-ppo-seed{noted[pid]}") for pid in busy]
        training = [r for r in runs if r.train_images_file.is_file() and not r.model_file.exists()]
        torn = [r for r in runs if r.model_file.exists() and not r.state_file.exists()]
        return sorted(noted[pid] for pid in busy) if training and not torn else None

    monkeypatch.setattr(grid, "run_trial", traced_run_trial)
    loss = NodeLoss(cluster, worker, training_on_the_worker, timeout=300)
    loss.start()
    try:
        on_ray = _within(480, lambda: run_benchmark(CONFIG, out, progress=False, ray_address=cluster.address))
    finally:
        loss.stop()
    assert loss.error is None, loss.error
    assert loss.lost, "the worker node was never lost while it trained a trial"

    # every record once, none missing, written as the sequential run writes them
    written = json.loads((out / "results.json").read_text())["results"]
    keys = [(r["task"], r["policy"], r["seed"]) for r in written]
    assert len(keys) == len(set(keys)) == 6
    assert set(keys) == {("synthetic-shapes", p, s) for p in CONFIG["policies"] for s in CONFIG["seeds"]}
    assert written == on_ray["results"]
    assert _comparable(on_ray["results"]) == _comparable(sequential["results"])
    for seed in CONFIG["seeds"]:
        runs = [tmp_path / mode / "runs" / f"synthetic-shapes-ppo-seed{seed}" for mode in ("sequential", "ray")]
        srms = [load_srm_weights(run / "srm.pt") for run in runs]
        policies = [PPO.load(run / "model.zip", device="cpu").policy.state_dict() for run in runs]
        for first, second in ((srms[0], srms[1]), (policies[0], policies[1])):
            assert first.keys() == second.keys()
            assert all(torch.equal(first[k], second[k]) for k in first), f"seed {seed}"

    # the trials lost with the worker node ran again, to the end, on the head node
    attempts = _attempts(tmp_path / "attempts")
    for seed in loss.lost:
        ran_on = [a["node"] for a in attempts if a["seed"] == seed]
        assert ran_on == [nodes["worker_node"], nodes["head_node"]], (seed, ran_on)
    assert len(attempts) == len(CONFIG["seeds"]) + len(loss.lost), (loss.lost, attempts)


def _entries(folder: Path) -> dict[str, tuple[dict[str, str], dict[str, np.ndarray]]]:
    """The cache's entries by relative path: metadata and arrays (the files' bytes are not compared: safetensors
    writes the metadata in no fixed order). A write cut by the node loss may leave its hidden temporary file,
    which no reader ever opens; it is not an entry."""
    from safetensors import safe_open

    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            with safe_open(str(path), framework="numpy") as f:
                found[str(path.relative_to(folder))] = (f.metadata(), {k: f.get_tensor(k) for k in f.keys()})
    return found


def test_cache_build_on_two_nodes_losing_one_mid_build_writes_the_local_build(tmp_path, two_nodes, capsys):
    cluster, worker, _ = two_nodes
    common = ["cache", "build", "--task", "synthetic-shapes", "--num-images", str(CACHE_IMAGES), "--split", "test",
              "--batch-size", "1"]
    assert _one_thread(lambda: main([*common, "--cache-dir", str(tmp_path / "local")])) == 0
    local = _entries(tmp_path / "local")
    assert len(local) == CACHE_IMAGES
    capsys.readouterr()

    def encoding_on_the_worker(titles: dict[int, str]):
        """Encoder actors of the worker node in the middle of a batch, with the cache still incomplete."""
        busy = [p for p, t in titles.items() if t.startswith("ray::MapWorker(") and t.endswith(".submit")]
        written = [p for p in (tmp_path / "ray").rglob("*.safetensors") if not p.name.startswith(".")] \
            if (tmp_path / "ray").is_dir() else []
        return busy if busy and len(written) < CACHE_IMAGES else None

    loss = NodeLoss(cluster, worker, encoding_on_the_worker, timeout=300)
    loss.start()
    try:
        code = _within(480, lambda: main([*common, "--cache-dir", str(tmp_path / "ray"), "--ray", cluster.address]))
    finally:
        loss.stop()
    assert loss.error is None, loss.error
    assert loss.lost, "the worker node was never lost while it encoded"
    assert code == 0
    assert f"{CACHE_IMAGES} images, 0 already cached, {CACHE_IMAGES} encoded on Ray" in capsys.readouterr().out

    built = _entries(tmp_path / "ray")
    assert sorted(built) == sorted(local)  # one entry per image, named by its digest: none missing, none extra
    for name, (metadata, arrays) in built.items():
        assert metadata == local[name][0], name
        assert arrays.keys() == local[name][1].keys(), name
        assert all(np.array_equal(arrays[k], local[name][1][k]) for k in arrays), name
    # every image is cached now: the surviving node skips them all before encoding anything
    report = build_cache_on_ray("synthetic-shapes", "test", CACHE_IMAGES, None, "lite", {}, tmp_path / "ray",
                                "float32", 800, "cpu", cluster.address)
    assert report == {"images": CACHE_IMAGES, "cached": CACHE_IMAGES, "encoded": 0, "seconds": 0.0}
