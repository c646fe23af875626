"""A benchmark's trials as Ray tasks (``alignsam benchmark --ray [ADDRESS]``).

Each :class:`~policies.benchmarks.grid.Trial` (train one algorithm on one task and seed, evaluate its
records) runs as a Ray task with the resources of the config's ``resources: {cpu: N, gpu: M}``. Only
the driver writes ``results.json``, as each trial finishes, through the grid's own callback, which
never adds a record whose key is recorded already: a trial Ray retries after its worker died (up to
``max_retries`` times; its run folder resumes from its last checkpoint) can never be recorded twice.
A trial that raises is reported and the others go on; Ctrl-C cancels the outstanding trials and leaves
a ``results.json`` the next run resumes. Run folders and the embedding cache are files, so every node
must see ``--out`` and the cache at the same path (a shared filesystem): checked on every node at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from policies.ray_cluster import check_shared_paths, connect, require_ray

#: times Ray reruns a trial whose worker process or node died
MAX_RETRIES = 2


TrialResult = tuple[list[dict[str, Any]], dict[str, dict[int, np.ndarray]]]


def _trial_task(run: Callable[..., TrialResult], config: dict[str, Any], trial: Any, out: str, done: frozenset[str],
                threads: int) -> TrialResult:
    """The body of a trial's Ray task: ``run`` (the grid's ``run_trial``, pickled by reference) with torch on
    exactly the trial's CPUs, as it would be on a machine that size."""
    import torch

    torch.set_num_threads(max(1, threads))
    return run(config, trial, out, done)


def run_trials_on_ray(run: Callable[..., TrialResult], config: dict[str, Any], trials: list[Any], out: Path,
                      done: frozenset[str], finished: Callable[[Any, list[dict[str, Any]],
                                                                dict[str, dict[int, np.ndarray]]], None],
                      address: str, progress: bool = True) -> None:
    """Run ``run(config, trial, out, done)`` for each of ``trials`` (:class:`policies.benchmarks.grid.Trial`) as a
    Ray task and hand each one's results to ``finished`` as it completes.

    :raises RuntimeError: after every trial has ended, when some failed (their records are missing, the
        others are written; rerunning retries the failed ones).
    """
    ray = require_ray()
    from tqdm import tqdm

    from alignsam_gym.backends import default_cache_dir

    started = connect(address)
    try:
        cache = config["env"].get("cache_dir")
        shared = [out.resolve()]
        if cache is not False:
            cache_dir = Path(cache) if cache else default_cache_dir()
            cache_dir.mkdir(parents=True, exist_ok=True)
            shared.append(cache_dir.resolve())
        check_shared_paths(shared)
        resources = config["resources"]
        task = ray.remote(_trial_task).options(num_cpus=resources.get("cpu", 1), num_gpus=resources.get("gpu", 0),
                                               max_retries=MAX_RETRIES, retry_exceptions=False)
        threads = int(max(1, resources.get("cpu", 1)))
        pending = {task.remote(run, config, trial, str(out.resolve()), done, threads): trial for trial in trials}
        failures: list[str] = []
        bar = tqdm(total=len(trials), desc="trials", unit="trial", disable=not progress)
        try:
            while pending:
                bar.set_postfix(running=len(pending), failed=len(failures))
                ready, _ = ray.wait(list(pending), num_returns=1)
                trial = pending.pop(ready[0])
                try:
                    records, frames = ray.get(ready[0])
                except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError) as err:
                    failures.append(f"{trial.name}: {type(err).__name__}: {str(err).strip().splitlines()[-1]}")
                else:
                    finished(trial, records, frames)
                bar.update(1)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise KeyboardInterrupt(f"interrupted with {len(pending)} trials outstanding; {out} holds the finished "
                                    f"ones and the same command resumes") from None
        finally:
            bar.set_postfix(running=0, failed=len(failures))
            bar.close()
        if failures:
            raise RuntimeError(f"{len(failures)} of {len(trials)} trials failed (rerun to retry them):\n  "
                               + "\n  ".join(failures))
    finally:
        if started:
            ray.shutdown()
