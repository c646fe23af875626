"""The ``alignsam`` console script: the env-side commands of :mod:`alignsam_gym.cli` plus training.

- ``alignsam train --config FILE --out DIR``: train a run from a YAML config; ``alignsam train --resume RUN``
  continues an interrupted (or finished, with ``--timesteps``) run.
- ``alignsam evaluate RUN_OR_POLICY --task T --episodes N --json OUT``: deterministic evaluation;
  ``random`` is a built-in policy.
- ``alignsam quickstart --out DIR``: PPO + SRM on every embedded task against random + the same SRM.
- ``alignsam benchmark --config FILE --out DIR``: the policy benchmark (results.json, results.md, plots/).
- ``alignsam bench env --json OUT``: env throughput (common approach, cached, DummyVecEnv, batched)
  and PPO rollout memory per observation mode.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from alignsam_gym import cli as env_cli
from alignsam_gym.bench import write_json


def cmd_train(args: argparse.Namespace) -> int:
    from policies.training import load_config, read_run_config, train

    if args.resume:
        if args.config or args.out:
            raise ValueError("--resume RUN continues RUN with its saved config.yaml; drop --config and --out")
        config, out = read_run_config(args.resume), args.resume
    else:
        if not (args.config and args.out):
            raise ValueError("a new run needs --config FILE and --out DIR (or --resume RUN to continue one)")
        config, out = load_config(args.config), args.out
    if args.timesteps is not None:
        config["total_timesteps"] = args.timesteps
    out = train(config, out, progress_bar=not args.no_progress, resume=bool(args.resume))
    print(f"wrote {out}/model.zip, {out}/srm.pt, {out}/config.yaml; TensorBoard logs in {out}/tb")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from policies.training import evaluate, load_srm_weights

    env_kwargs = {"task": args.task, "split": args.split, "num_images": args.num_images,
                  "init_prompts": args.init_prompts, "label_source": args.label_source}
    if args.data_root:
        env_kwargs["data_root"] = args.data_root
    if args.obs_mode:
        env_kwargs["obs_mode"] = args.obs_mode
    if args.obs_size:
        env_kwargs["obs_size"] = args.obs_size
    srm = load_srm_weights(args.srm) if args.srm else None
    result = evaluate(args.policy, env_kwargs, episodes=args.episodes, seed=args.seed, srm_weights=srm)
    result.update({"policy": args.policy, **env_kwargs, "seed": args.seed,
                   "command": "alignsam " + " ".join(sys.argv[1:])})
    print(f"{'policy':24s} {'task':20s} {'episodes':>8s} {'fg rate':>8s} {'mIoU':>7s} {'F-beta':>7s} "
          f"{'E-phi':>7s} {'MAE':>7s} {'BER %':>7s} {'return':>7s}")
    print(f"{args.policy[-24:]:24s} {args.task:20s} {result['episodes']:8d} {result['foreground_rate']:8.3f} "
          f"{result['miou']:7.3f} {result['f_beta']:7.3f} {result['e_measure']:7.3f} {result['mae']:7.3f} "
          f"{result['ber_dataset']:7.2f} {result['return']:7.2f}")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from policies.quickstart import QUICKSTART, run_quickstart

    report = run_quickstart(args.out, tasks=tuple(args.tasks), seeds=tuple(args.seeds),
                            timesteps=args.timesteps or QUICKSTART["timesteps"],
                            episodes=args.episodes or QUICKSTART["episodes"],
                            num_images=args.num_images or QUICKSTART["num_images"],
                            test_images=args.test_images or QUICKSTART["test_images"])
    print()
    print(open(f"{args.out}/report.md").read())
    print(f"wrote {args.out}/report.json and {args.out}/report.md in {report['wall_s']:.0f} s")
    return 0


def cmd_bench_env(args: argparse.Namespace) -> int:
    from policies.bench_env import run_env_benchmark

    result = run_env_benchmark(backends=tuple(args.backends), sizes=tuple(args.sizes), dummy_sizes=tuple(args.dummy_sizes),
                               model_type=args.model_type, sam_checkpoint=args.sam_checkpoint,
                               devices=tuple(args.devices) if args.devices else None, episodes=args.episodes,
                               lite_episodes=args.lite_episodes,
                               num_images=args.num_images)
    result["command"] = "alignsam " + " ".join(sys.argv[1:])
    print()
    for row in result["results"]:
        ratios = {k: v for k, v in row.items() if "_over_" in k}
        print(f"{row['backend']} on {row['device']}: {ratios}")
    memory = result["rollout_memory"]
    print(f"PPO rollout, compact / full observation memory: buffer {memory.get('compact_over_full_buffer')}, "
          f"tracked peak {memory.get('compact_over_full_peak')}")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from policies.benchmark import load_benchmark_config, run_benchmark

    report = run_benchmark(load_benchmark_config(args.config), args.out, progress=not args.quiet)
    print()
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md and plots/ ({len(report['results'])} records)")
    return 0


def add_training_commands(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    from alignsam_gym.data.tasks import SYNTHETIC_TASKS

    train = sub.add_parser("train", help="train an agent (+ SRM) from a YAML config")
    train.add_argument("--config", default=None, help="YAML: algorithm, seed, total_timesteps, n_envs, vec_env, env, "
                                                      "hyperparameters, srm, checkpoint_every (see experiments/configs)")
    train.add_argument("--out", default=None, help="run folder of a new run")
    train.add_argument("--resume", default=None, metavar="RUN",
                       help="continue the run folder RUN (after Ctrl-C, SIGTERM or a crash) up to its total_timesteps")
    train.add_argument("--timesteps", type=int, default=None, help="override total_timesteps (extends a resumed run)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="deterministic evaluation of a run folder, model.zip or a heuristic")
    ev.add_argument("policy", help="a run folder, a model.zip, or a heuristic: random, centre, srm_greedy")
    ev.add_argument("--task", default="synthetic-saliency")
    ev.add_argument("--data-root", default=None)
    ev.add_argument("--split", default="test")
    ev.add_argument("--num-images", type=int, default=50)
    ev.add_argument("--episodes", type=int, default=20)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--obs-size", type=int, default=None, help="as in training (quickstart: 10)")
    ev.add_argument("--obs-mode", default=None, choices=["full", "compact"], help="as in training")
    ev.add_argument("--init-prompts", default="srm", choices=["srm", "random_gt"])
    ev.add_argument("--label-source", default="srm")
    ev.add_argument("--srm", default=None, help="SRM weights (srm.pt) for the env; a run's own by default")
    ev.add_argument("--json", default=None)
    ev.set_defaults(func=cmd_evaluate)

    qs = sub.add_parser("quickstart", help="PPO + SRM vs random + SRM on every embedded task (the main job)")
    qs.add_argument("--out", default="runs/quickstart")
    qs.add_argument("--tasks", nargs="+", default=list(SYNTHETIC_TASKS))
    qs.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    qs.add_argument("--timesteps", type=int, default=None)
    qs.add_argument("--episodes", type=int, default=None)
    qs.add_argument("--num-images", type=int, default=None, help="training images per task")
    qs.add_argument("--test-images", type=int, default=None, help="test images per task")
    qs.set_defaults(func=cmd_quickstart)

    bm = sub.add_parser("benchmark", help="policies x tasks x settings x seeds with the paper's metrics, tables, plots")
    bm.add_argument("--config", required=True, help="benchmark YAML (see experiments/configs/bench_*.yaml)")
    bm.add_argument("--out", required=True, help="output folder; rerunning resumes what it holds")
    bm.add_argument("--quiet", action="store_true")
    bm.set_defaults(func=cmd_benchmark)

    env = bench_sub.add_parser("env", help="env steps/s: common approach, cached env, DummyVecEnv, batched env; "
                                          "PPO rollout memory per observation mode")
    env.add_argument("--backends", nargs="+", default=["lite", "sam"], choices=["lite", "sam"])
    env.add_argument("--sizes", nargs="+", type=int, default=[1, 8, 32], help="batched env sizes")
    env.add_argument("--dummy-sizes", nargs="+", type=int, default=[8, 32], help="DummyVecEnv sizes")
    env.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    env.add_argument("--sam-checkpoint", default=None, help="default: random weights of --model-type")
    env.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    env.add_argument("--episodes", type=int, default=2, help="timed episodes per configuration (SAM)")
    env.add_argument("--lite-episodes", type=int, default=10, help="timed episodes per configuration (lite)")
    env.add_argument("--num-images", type=int, default=4)
    env.add_argument("--json", default=None)
    env.set_defaults(func=cmd_bench_env)


def main(argv: Sequence[str] | None = None) -> int:
    return env_cli.main(argv, extend=add_training_commands)


if __name__ == "__main__":
    raise SystemExit(main())
