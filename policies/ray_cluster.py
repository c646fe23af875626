"""Joining Ray and checking that every node sees the files a distributed job shares (the ``[ray]`` extra)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def require_ray():
    """The ``ray`` module, or an error that says which extra installs it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("--ray needs Ray: pip install 'alignsam-gym[ray]'") from err
    return ray


def connect(address: str, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` (``"local"``: start a local instance with ``num_cpus`` CPUs, default
    all); True when this call started Ray (and so should shut it down). The ``ALIGNSAM_*`` environment
    variables (cache and checkpoint paths) travel to the workers."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("ALIGNSAM_")}}
    local = address == "local"
    ray.init(address=None if local else address, num_cpus=num_cpus if local else None, include_dashboard=False,
             logging_level="ERROR", runtime_env=runtime_env)
    return True


def check_shared_paths(paths: list[Path]) -> None:
    """Fail unless every alive Ray node sees each of ``paths`` (written by the driver just before).

    :raises RuntimeError: naming the node and the path it cannot see.
    """
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probes = []
    for path in paths:
        probe = path / f".alignsam-ray-probe-{uuid.uuid4().hex}"
        probe.write_text("visible\n")
        probes.append(probe)

    @ray.remote(num_cpus=0)
    def visible(files: list[str]) -> list[bool]:
        return [Path(f).is_file() for f in files]

    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        checks = [visible.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                  .remote([str(p) for p in probes]) for n in nodes]
        for node, seen in zip(nodes, ray.get(checks)):
            for path, ok in zip(paths, seen):
                if not ok:
                    raise RuntimeError(f"Ray node {node.get('NodeManagerAddress')} cannot see {path}: with --ray the "
                                       f"output folder and the embedding cache must be on a filesystem every node "
                                       f"shares, at the same path")
    finally:
        for probe in probes:
            probe.unlink(missing_ok=True)
