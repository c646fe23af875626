"""``alignsam benchmark --config FILE --out DIR``: every policy on every task with the paper's metrics.

The quickstart (:mod:`policies.benchmarks.quickstart`) is a built-in config run by the same runner.

A benchmark config (YAML) names a grid::

    name: ccp-person
    backend: lite                    # every table's caption names it
    tasks: [ccp-person]
    data_root: ../shared/data/ccp    # or {task: folder}
    seeds: [0, 1, 2]
    policies: [random, centre, srm_greedy, ppo]   # heuristics and trained algorithms
    label_sources: [srm]
    branches: [default]              # SRM branch: default (the task's), implicit, explicit
    max_prompts: [15]
    images: null                     # test images per record, each played once: null = the whole test split,
                                     # N = a fixed seeded sample of N (the same for every policy and seed)
    test_images: 50                  # synthetic tasks: the size of their generated test split
    split: test                      # the evaluated split: test (the final benchmark) or val (model selection,
                                     # tuning: the training images outside the few-shot subset, never test)
    train: {total_timesteps: 4096, num_images: 50, n_envs: 4, env: {obs_size: 10},
            eval_every: 1024,        # learning curves (validation images every 1024 env steps)
            hyperparameters: {ppo: {n_steps: 128}, dqn: {...}}}  # shared, or per algorithm
    env: {clip_checkpoint: ...}      # extra env kwargs for training and test
    resources: {cpu: 1, gpu: 0}      # per trial with --ray (policies.benchmarks.ray_grid)
    upper_bound_srms: first          # the oracle under the first trained algorithm's SRM only (its full search
                                     # is the costliest evaluation; it is the normaliser, never a paired
                                     # baseline), or all
    paired_baselines: all            # the heuristics run under every trained algorithm's SRM, so every agent
                                     # pairs with them: all (every heuristic but the upper bounds) or a list;
                                     # the others run under the first trained algorithm's SRM only

For every (task, seed) each trained algorithm (``ppo``, ``a2c``, ``dqn``, ``maskable_ppo``,
``recurrent_ppo``) is trained with its SRM (``out/runs/<task>-<algorithm>-seed<seed>``), and every heuristic
is evaluated with *that* SRM too (the paper's "random + SRM"; a record's ``srm`` names whose SRM it ran
with), so each agent pairs with each baseline under the same SRM on the same images; with no trained
algorithm the heuristics run with an untrained SRM (``srm: untrained``), which the report says. A policy may
also be a path to an existing run folder (``srm: own``). Every record plays the same test images, each once
(:func:`~policies.runs.evaluation.evaluation_images`). The grid is a list of :class:`Trial` s (one trained
algorithm on one task and seed, with its records), run one after another or as Ray tasks; records are
kept in the same order either way.

Output: ``results.json`` (one record per task x policy x SRM x setting x seed with every metric, the
per-step IoU curve, the images it covers, backend, checkpoint digests, package version and wall time;
written after every trial, so an interrupted benchmark resumes where it stopped), ``results_episodes.parquet``
(one row per episode of every record: :class:`~policies.benchmarks.episode_table.EpisodeTable`), ``results.md``
(tables shaped like the paper's, paired comparisons) and ``plots/`` (IoU against prompts per task,
foreground-rate bars, and a strip of annotated frames per task).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alignsam_gym import __version__
from alignsam_gym.atomic import write_json, write_yaml
from alignsam_gym.backends import make_backend
from alignsam_gym.data.tasks import get_task
from alignsam_gym.heuristics import HEURISTICS, UPPER_BOUNDS
from policies.benchmarks.comparisons import benchmark_statistics
from policies.benchmarks.episode_table import RECORD_KEYS, EpisodeTable
from policies.benchmarks.machine import command_line, machine, package_versions, source_revision
from policies.benchmarks.report import write_report
from policies.runs import RunConfig, RunFolder, evaluate, train
from policies.configs import check_keys, load_yaml_config, make_env_kwargs
from policies.sb3.presets import PRESETS

DEFAULTS: dict[str, Any] = {
    "name": "benchmark", "backend": "lite", "backend_kwargs": {}, "tasks": ["synthetic-saliency"], "data_root": None,
    "seeds": [0], "policies": ["random", "centre", "srm_greedy", "ppo"], "label_sources": ["srm"],
    "branches": ["default"], "max_prompts": [15], "images": None, "test_images": 50, "split": "test",
    "init_prompts": "srm",
    "train": {"total_timesteps": 4096, "num_images": 50, "n_envs": 4, "env": {"obs_size": 10}},
    "frames_at": [0, 1, 3, 7, 15],
    "env": {},  # extra env kwargs for training and test, e.g. clip_checkpoint, image_size
    "resources": {"cpu": 1, "gpu": 0},  # per trial, when trials run on Ray (--ray); ignored otherwise
    "upper_bound_srms": "first",  # the ground-truth upper bounds (oracle) under the first trained SRM, or "all"
    "paired_baselines": "all",  # the heuristics under every trained SRM ("all" but the upper bounds, or a list)
}
BRANCHES = ("default", "implicit", "explicit")
#: ``train`` keys handed to each run's config as they are (learning curves, vector env, SRM settings)
TRAIN_PASSTHROUGH = ("eval_every", "eval_images", "vec_env", "srm", "init", "preset")
#: a record's ``srm`` when no run of the grid trained one (heuristics only), and for a run folder's own
UNTRAINED_SRM, OWN_SRM = "untrained", "own"


def load_benchmark_config(path: str | Path) -> dict[str, Any]:
    """Read and check a benchmark config; errors name the file and the key."""
    return load_yaml_config(path, "benchmark config", resolve_benchmark_config)


def resolve_benchmark_config(raw: dict[str, Any]) -> dict[str, Any]:
    if "episodes" in raw:
        raise ValueError("episodes is gone: an evaluation plays every test image once; set images (null: the "
                         "whole test split, N: a fixed sample of N images)")
    if "eval_episodes" in (raw.get("train") or {}):
        raise ValueError("train.eval_episodes is gone: learning curves play train.eval_images validation images")
    check_keys("config", raw, DEFAULTS)
    config = copy.deepcopy(DEFAULTS)
    for key, value in copy.deepcopy(raw).items():
        config[key] = {**config[key], **value} if isinstance(config[key], dict) and isinstance(value, dict) else value
    for key in ("tasks", "seeds", "policies", "label_sources", "branches", "max_prompts"):
        if not isinstance(config[key], list) or not config[key]:
            raise ValueError(f"{key} must be a non-empty list, got {config[key]!r}")
    if config["train"].get("preset") == "paper" and "env" not in (raw.get("train") or {}):
        config["train"]["env"] = {}  # the grid's default obs_size 10 would undo the preset's unpooled state
    # the arguments every trained run and evaluation of the grid builds on: checked together, as the env sees them
    make_env_kwargs({"backend": config["backend"], "backend_kwargs": config["backend_kwargs"]}, config["env"],
                    config["train"].get("env"))
    for task in config["tasks"]:
        get_task(task)
    for policy in config["policies"]:
        if policy not in HEURISTICS and policy not in PRESETS and not Path(policy).is_dir():
            raise ValueError(f"policy {policy!r} is neither a heuristic {list(HEURISTICS)}, an algorithm "
                             f"{sorted(PRESETS)}, nor a run folder")
    for branch in config["branches"]:
        if branch not in BRANCHES:
            raise ValueError(f"branches: {branch!r} is not one of {list(BRANCHES)}")
    if config["split"] not in ("test", "val"):
        raise ValueError(f"split must be 'test' (the final benchmark) or 'val' (model selection), got "
                         f"{config['split']!r}")
    if config["upper_bound_srms"] not in ("first", "all"):
        raise ValueError(f"upper_bound_srms must be 'first' or 'all', got {config['upper_bound_srms']!r}")
    paired = config["paired_baselines"]
    if paired != "all":
        heuristics = [p for p in config["policies"] if p in HEURISTICS and p not in UPPER_BOUNDS]
        if not isinstance(paired, list) or any(p not in heuristics for p in paired):
            raise ValueError(f"paired_baselines must be 'all' or a list of the config's heuristics {heuristics} "
                             f"(the upper bounds follow upper_bound_srms), got {paired!r}")
        if set(paired) == set(heuristics):
            config["paired_baselines"] = "all"  # the same grid, so its results resume either way
    images = config["images"]
    if images is not None and (not isinstance(images, int) or isinstance(images, bool) or images < 1):
        raise ValueError(f"images must be a positive integer or null (the whole test split), got {images!r}")
    return config


def _data_root(config: dict[str, Any], task: str) -> str | None:
    root = config["data_root"]
    if isinstance(root, dict):
        root = root.get(task)
    return None if root is None or not get_task(task).needs_data_root else str(root)


def _train_run(config: dict[str, Any], task: str, algorithm: str, seed: int, out: Path) -> RunFolder:
    """Train (or finish, or reuse) the run of ``algorithm`` on ``task`` with ``seed``."""
    run = RunFolder(out / "runs" / f"{task}-{algorithm}-seed{seed}")
    settings = config["train"]
    env = make_env_kwargs(config["env"], settings.get("env"), task=task, num_images=settings["num_images"],
                          backend=config["backend"], backend_kwargs=config["backend_kwargs"],
                          data_root=_data_root(config, task))
    run_config = RunConfig.from_dict({
        "algorithm": algorithm, "seed": seed, "total_timesteps": settings["total_timesteps"],
        "n_envs": settings["n_envs"], "env": env, "hyperparameters": _hyperparameters(settings, algorithm),
        **{key: settings[key] for key in TRAIN_PASSTHROUGH if key in settings}})
    if not run.has_model() or run.steps_done() < settings["total_timesteps"]:  # total 0: imitation alone
        train(run_config, run.path, resume=run.has_model(), verbose=False)
    return run


def _hyperparameters(settings: dict[str, Any], algorithm: str) -> dict[str, Any]:
    """``train.hyperparameters``: one mapping for every algorithm, or one per algorithm (``{ppo: {...}, dqn:
    {...}}``: every key an algorithm name; an algorithm not named takes its preset)."""
    hyperparameters = settings.get("hyperparameters") or {}
    if hyperparameters and set(hyperparameters) <= set(PRESETS):
        return dict(hyperparameters.get(algorithm) or {})
    return dict(hyperparameters)


def _record_key(record: dict[str, Any]) -> str:
    return "|".join(str(record[k]) for k in RECORD_KEYS)


@dataclass(frozen=True)
class Trial:
    """One unit of a benchmark: train ``algorithm`` on ``task`` with ``seed`` (None: nothing to train) and
    evaluate the records of ``policies``: the algorithm and every heuristic with its SRM (the paper's
    "random + SRM"; the upper bounds only in the first algorithm's trial unless ``upper_bound_srms: all``, the
    heuristics not in ``paired_baselines`` likewise); the
    first trained algorithm's trial also evaluates the run folders, with their own."""

    task: str
    seed: int
    algorithm: str | None
    policies: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.task} seed {self.seed} {self.algorithm or 'heuristics'}"


def plan_trials(config: dict[str, Any]) -> list[Trial]:
    """The trials of a resolved config, in the order the sequential runner takes them."""
    trained = [p for p in config["policies"] if p in PRESETS]
    heuristics = tuple(p for p in config["policies"] if p in HEURISTICS)
    folders = tuple(p for p in config["policies"] if p not in PRESETS and p not in HEURISTICS)
    trials = []
    for task in config["tasks"]:
        for seed in config["seeds"]:
            if not trained:
                trials.append(Trial(task, seed, None, heuristics + folders))
            for i, algorithm in enumerate(trained):
                baselines = tuple(h for h in heuristics if i == 0 or _under_every_srm(config, h))
                trials.append(Trial(task, seed, algorithm, (algorithm, *baselines, *(folders if i == 0 else ()))))
    return trials


def _under_every_srm(config: dict[str, Any], heuristic: str) -> bool:
    """Whether ``heuristic`` runs under every trained algorithm's SRM (else under the first one's only)."""
    if heuristic in UPPER_BOUNDS:
        return config["upper_bound_srms"] == "all"
    return config["paired_baselines"] == "all" or heuristic in config["paired_baselines"]


def record_srm(trial: Trial, policy: str) -> str:
    """Whose SRM a record of ``trial`` runs with: the trial's algorithm's, a run folder's own, or an untrained one."""
    if policy not in HEURISTICS and policy not in PRESETS:
        return OWN_SRM
    return trial.algorithm or UNTRAINED_SRM


def trial_records(config: dict[str, Any], trial: Trial) -> list[dict[str, Any]]:
    """The record keys (task, policy, SRM, setting, seed) a trial produces, in report order."""
    return [{"task": trial.task, "policy": policy, "srm": record_srm(trial, policy), "label_source": label_source,
             "branch": branch, "max_prompts": max_prompts, "seed": trial.seed}
            for policy in config["policies"] if policy in trial.policies
            for label_source in config["label_sources"] for branch in config["branches"]
            for max_prompts in config["max_prompts"]]


def run_trial(config: dict[str, Any], trial: Trial, out: str | Path, done: frozenset[str] = frozenset()
              ) -> tuple[list[dict[str, Any]], dict[str, dict[int, np.ndarray]]]:
    """Train the trial's algorithm (or resume or reuse its run folder) and evaluate its records not in ``done``.

    :return: the new records, and the first seed's frames per policy (for the report's strips).
    """
    out = Path(out)
    trained = [p for p in config["policies"] if p in PRESETS]
    run = _train_run(config, trial.task, trial.algorithm, trial.seed, out) if trial.algorithm else None
    srm = run.srm_weights() if run is not None else None
    records, frames = [], {}
    for record in trial_records(config, trial):
        if _record_key(record) in done:
            continue
        policy, label_source, branch = record["policy"], record["label_source"], record["branch"]
        source = str(run.path) if policy == trial.algorithm else policy
        run_dir = RunFolder(source) if policy not in HEURISTICS else run
        # val: the training images outside the run's few-shot subset (so the training subset's size)
        size = config["test_images"] if config["split"] == "test" else config["train"]["num_images"]
        env = make_env_kwargs({"task": trial.task, "split": config["split"], "num_images": size,
                               "backend": config["backend"], "backend_kwargs": config["backend_kwargs"],
                               "label_source": label_source, "init_prompts": config["init_prompts"]},
                              config["env"], config["train"].get("env"), max_prompts=record["max_prompts"],
                              srm_branch=None if branch == "default" else branch,
                              data_root=_data_root(config, trial.task))
        # frames of the first seed: each agent's, and the baselines' under the first trained SRM
        shown = policy == trial.algorithm or trial.algorithm in (None, *trained[:1])
        want_frames = tuple(config["frames_at"]) if trial.seed == config["seeds"][0] and shown else ()
        metrics = evaluate(source, env, images=config["images"], seed=trial.seed,
                           srm_weights=srm if policy in HEURISTICS else None, frames_at=want_frames)
        if "frames" in metrics:
            shots = metrics.pop("frames")
            if label_source == config["label_sources"][0] and branch == config["branches"][0]:
                frames[policy] = shots
        record.update(metrics)
        record.update({
            "backend": config["backend"], "init_prompts": config["init_prompts"],
            "srm_trained": srm is not None or policy not in HEURISTICS,
            "checkpoints": run_dir.digests() if run_dir else {"model": None, "srm": None},
            "package_version": __version__})
        curve = run.read_curve() if policy == trial.algorithm else []
        if curve:
            record["curve"] = curve  # validation mIoU / foreground rate against env steps
        imitation = run.read_imitation() if policy == trial.algorithm else None
        if imitation:  # the imitation phase in brief: the expert's cost per labelled state, each round's fit
            record["imitation"] = {
                "expert": imitation["expert"], "states": imitation["states"], "wall_s": imitation["wall_s"],
                "rounds": [{"round": r["round"], "beta": r["beta"], "states": r["states"],
                            "learner_agreement": r.get("learner_agreement"), **r["cloning"][-1]}
                           for r in imitation["rounds"]]}
        records.append(record)
    return records, frames


def _report_order(config: dict[str, Any]) -> dict[str, int]:
    """Each record key's position in the report (the sequential runner's order), whatever order trials end in."""
    return {_record_key(r): i for i, r in enumerate(r for t in plan_trials(config) for r in trial_records(config, t))}


#: config keys added after results were first written, with the value that reproduces those results
LATER_KEYS = {"upper_bound_srms": "first", "split": "test", "paired_baselines": "all"}


def _scheduling_free(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the keys that only say where trials run (``resources``): a benchmark run sequentially
    and one run on Ray record the same thing, so either resumes the other. A key added later (:data:`LATER_KEYS`)
    takes the value its earlier results were computed with."""
    return {k: v for k, v in {**LATER_KEYS, **config}.items() if k != "resources"}


def backend_identity(config: dict[str, Any]) -> str | None:
    """The identity of the config's backend on the CPU (what its records were computed with), or None when
    the backend cannot be built here (for example a checkpoint only the workers have)."""
    try:
        return make_backend(config["backend"], device="cpu", **config["backend_kwargs"]).identity
    except (ValueError, OSError):
        return None


def _recorded_identity(previous: dict[str, Any]) -> str | None:
    """The backend identity a results file was written with. Files from before it was recorded: ``lite``
    then had one decoder, v1 (its identity is known); for other backends it is unknown (None)."""
    if "backend_identity" in previous:
        return previous["backend_identity"]
    if (previous.get("config") or {}).get("backend") == "lite":
        return backend_identity({"backend": "lite", "backend_kwargs": {"decoder": "v1"}})
    return None


def run_benchmark(config: dict[str, Any], out: str | Path, progress: bool = True,
                  report_name: str = "results", ray_address: str | None = None) -> dict[str, Any]:
    """Run the grid of ``config`` into ``out`` (resuming what ``out/<report_name>.json`` already holds);
    write ``<report_name>.json``, ``<report_name>.md`` and ``plots/``.

    :param ray_address: run every trial as a Ray task (:mod:`policies.benchmarks.ray_grid`): ``"local"`` starts
        a local Ray instance, ``"auto"`` or ``"ray://host:10001"`` joins a cluster. None: one after another here.
    """
    config = resolve_benchmark_config(config)
    identity = backend_identity(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / f"{report_name}.json"
    table = EpisodeTable(out / f"{report_name}_episodes.parquet")
    records: list[dict[str, Any]] = []
    earlier_wall = 0.0  # the wall time of the sessions that wrote what results_file holds
    earlier_commands: list[str] = []  # and their commands
    if results_file.is_file():
        try:
            previous = json.loads(results_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{results_file}: unreadable ({err}); move it away to start over") from err
        if _scheduling_free(previous.get("config") or {}) != _scheduling_free(config):
            raise ValueError(f"{results_file} holds a benchmark of another config; choose another --out (or "
                             "restore that config) so its records are not mixed with new ones")
        recorded = _recorded_identity(previous)
        if recorded is not None and identity is not None and recorded != identity:
            raise ValueError(f"{results_file} was computed with backend {recorded}, this config now builds {identity} "
                             "(a new default decoder?); choose another --out, or pin the recorded one in "
                             "backend_kwargs (lite: {decoder: v1}), so its records are not mixed with new ones")
        records = previous.get("results", [])
        earlier_wall = float(previous.get("wall_s_total", previous.get("wall_s_this_session", 0.0)) or 0.0)
        earlier_commands = list(previous.get("commands") or ([previous["command"]] if "command" in previous else []))
    rows = table.read(records)  # rows of records results.json does not list (a crash between the writes) go
    counted = Counter(_record_key(r) for r in rows)
    short = [_record_key(r) for r in records if counted.get(_record_key(r), 0) != r.get("images")]
    if short:
        raise ValueError(f"{table.path} lacks the episodes of {len(short)} records of {results_file} (first: "
                         f"{short[0]}); choose another --out, or move both files away to start over")
    write_yaml(out / "config.yaml", config)  # after the check: never overwritten
    order = _report_order(config)
    done = {_record_key(r) for r in records}
    todo = [t for t in plan_trials(config) if any(_record_key(r) not in done for r in trial_records(config, t))]
    start = time.perf_counter()
    frames: dict[str, dict[str, dict[int, np.ndarray]]] = {}

    def finished(trial: Trial, new_records: list[dict[str, Any]], shots: dict[str, dict[int, np.ndarray]]) -> None:
        """Add a trial's records (never one whose key is recorded already) and write the results file."""
        fresh = [r for r in new_records if _record_key(r) not in done]
        for record in fresh:
            rows.extend(EpisodeTable.rows_of(record, record.pop("episodes")))
        records.extend(fresh)
        done.update(_record_key(r) for r in fresh)
        records.sort(key=lambda r: order.get(_record_key(r), len(order)))
        frames.setdefault(trial.task, {}).update(shots)
        table.write(rows)  # the episodes first: results.json never lists a record whose rows are not stored
        write_json(results_file, {"config": config, "backend_identity": identity, "results": records})
        if progress:
            for record in fresh:
                print(f"[{len(done)}/{len(order)}] {record['task']} seed {record['seed']} {record['policy']} "
                      f"{record['label_source']} {record['branch']} T={record['max_prompts']}: mIoU "
                      f"{record['miou']:.3f}, foreground rate {record['foreground_rate']:.3f} "
                      f"({record['wall_s']:.0f} s)", flush=True)

    if ray_address is None:
        for trial in todo:
            finished(trial, *run_trial(config, trial, out, frozenset(done)))
    else:
        from policies.benchmarks.ray_grid import run_trials_on_ray

        run_trials_on_ray(run_trial, config, todo, out, frozenset(done), finished, ray_address, progress)
    report = {"config": config, "backend_identity": identity, "results": records, "summary": summarize(records),
              "statistics": benchmark_statistics(config, records, rows),
              "wall_s_this_session": round(time.perf_counter() - start, 1),
              "wall_s_total": round(earlier_wall + time.perf_counter() - start, 1), "package_version": __version__,
              "command": command_line(), "commands": [*earlier_commands, command_line()],
              "source": source_revision(), "packages": package_versions(),
              "machine": machine()}
    write_json(results_file, report)
    write_report(report, out, frames, report_name)
    return report


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per task and policy: the mean over seeds (and settings) of the foreground rate and mIoU."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for record in records:
        summary.setdefault(record["task"], {}).setdefault(record["policy"], {})
    for task, policies in summary.items():
        for policy in policies:
            rows = [r for r in records if r["task"] == task and r["policy"] == policy]
            policies[policy] = {"foreground_rate": float(np.mean([r["foreground_rate"] for r in rows])),
                                "miou": float(np.mean([r["miou"] for r in rows])), "records": len(rows)}
    return summary
