"""The ``alignsam`` command line: one parser for every command.

- ``alignsam demo --out DIR``: one episode of ``AlignSAM-v0`` with a random policy; writes an
  annotated GIF and PNG strip of it and ``episode.json``.
- ``alignsam train --config FILE --out DIR``: train a run from a YAML config; ``alignsam train --resume RUN``
  continues an interrupted (or finished, with ``--timesteps``) run.
- ``alignsam evaluate RUN_OR_POLICY --task T [--images N] --json OUT``: every image of the split once;
  the heuristics of :mod:`alignsam_gym.heuristics` are built-in policies.
- ``alignsam quickstart --out DIR``: PPO + SRM on every embedded task against random + the same SRM.
- ``alignsam benchmark --config FILE --out DIR``: the policy benchmark (results.json, results.md, plots/).
- ``alignsam tables [--check] README.md ...``: the results tables of Markdown files, from the result files.
- ``alignsam bench decoder|episode|env|soak --json OUT``: the decoder, SAM episode, env throughput and
  soak benchmarks.
- ``alignsam cache build --task T --backend B``: precompute the embeddings of a whole task.
- ``alignsam weights list | download NAME | verify PATH``: official checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from alignsam_gym.atomic import write_json
from alignsam_gym.data.tasks import SYNTHETIC_TASKS

#: what ``ArgumentParser.add_subparsers`` returns
Subcommands = Any


def _write_result(args: argparse.Namespace, result: dict) -> int:
    """Record the command in ``result`` and write it to ``--json`` when given; the command's exit code."""
    result["command"] = args.command_line
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from policies.demo import play_demo

    summary = play_demo(args.out, task=args.task, data_root=args.data_root, seed=args.seed,
                        max_prompts=args.max_prompts, device=args.device,
                        on_step=lambda s: print(f"step {s['num_prompts']:2d}: action {s['action']:3d} reward "
                                                f"{s['reward']:+.0f} label {s['label']} IoU {s['iou']:.3f}"))
    out = Path(args.out)
    print(f"{summary['task']}: return {summary['return']:+.0f}, foreground rate {summary['foreground_rate']:.2f}, "
          f"final IoU {summary['final_iou']:.3f}; wrote {out / 'episode.gif'}, {out / 'episode_strip.png'}, "
          f"{out / 'episode.json'}")
    return 0


def cmd_bench_decoder(args: argparse.Namespace) -> int:
    from alignsam_gym.backends import make_backend
    from policies.benchmarks.decoder import run_decoder_benchmark
    from alignsam_gym.data.tasks import make_dataset

    dataset = make_dataset(args.task, split="all", data_root=args.data_root) if args.task.startswith("ccp-") \
        else make_dataset(args.task, split="test", data_root=args.data_root)
    backend = make_backend(args.backend, device="cpu", **_lite_decoder_kwargs(args))
    result = run_decoder_benchmark(backend, dataset, size=args.size, num_clicks=args.clicks, limit=args.limit,
                                   baseline=not args.no_baseline, speed_images=args.speed_images)
    curve = result["backend_result"]["miou_per_click"]
    print(f"\n{result['task']} at {args.size} px, {result['backend_result']['images']} images, mIoU after k clicks")
    print("clicks   " + " ".join(f"{k:>6d}" for k in range(1, len(curve) + 1)))
    print(f"{args.backend:8s} " + " ".join(f"{v:6.3f}" for v in curve))
    if "grabcut_result" in result:
        print("grabcut  " + " ".join(f"{v:6.3f}" for v in result["grabcut_result"]["miou_per_click"]))
    speed = result["decode_speed"]
    print(f"decode at {speed['image_size']}x{speed['image_size']}, 1 thread: median {speed['ms_median']} ms, "
          f"p95 {speed['ms_p95']} ms over {speed['decodes']} decodes")
    return _write_result(args, result)


def cmd_bench_clicks(args: argparse.Namespace) -> int:
    from alignsam_gym.backends import backend_arguments, make_backend
    from alignsam_gym.data.tasks import make_dataset
    from policies.benchmarks.clicks import plot_curves, run_clicks_benchmark

    dataset = make_dataset(args.dataset, split="all", data_root=args.data_root)
    backend = make_backend(args.backend, device=args.device,
                           **backend_arguments(args.backend, args.sam_checkpoint, args.sam_model_type,
                                               _lite_decoder_kwargs(args)))
    result = run_clicks_benchmark(backend, dataset, max_clicks=args.max_clicks, limit=args.limit,
                                  baseline=not args.no_baseline, progress=not args.quiet)
    rows = [(args.backend, result)] + ([("grabcut", result["grabcut"])] if "grabcut" in result else [])
    print(f"\n{args.dataset}: {result['images']} items, {args.max_clicks} clicks, standard protocol")
    print(f"{'':10s} {'NoC@85':>7s} {'NoC@90':>7s} {'NoF@85':>7s} {'NoF@90':>7s} {'IoU@1':>6s} {'IoU@3':>6s} "
          f"{'IoU@5':>6s} {'s/click':>8s}")
    for name, r in rows:
        at = r["miou_at"]
        print(f"{name:10s} {r['noc85']:7.2f} {r['noc90']:7.2f} {r['nof85']:7d} {r['nof90']:7d} {at[0]:6.3f} "
              f"{at[min(2, len(at) - 1)]:6.3f} {at[min(4, len(at) - 1)]:6.3f} {r['seconds_per_click']:8.4f}")
    if args.plot:
        plot_curves(result, args.plot)
        print(f"wrote {args.plot}")
    return _write_result(args, result)


def cmd_bench_episode(args: argparse.Namespace) -> int:
    from policies.benchmarks.episode import run_episode_benchmark
    from alignsam_gym.devices import resolve_device

    result = run_episode_benchmark(model_type=args.model_type, checkpoint=args.sam_checkpoint, episodes=args.episodes,
                                   device=str(resolve_device(args.device)))
    print(f"\nSAM {result['model_type']} ({result['weights']} weights) on {result['device']}, "
          f"{result['episodes']} episodes of reset + {result['max_prompts']} steps:")
    print(f"  SamPredictor.set_image per reset: median {result['predictor_per_reset_median_s']:.3f} s / episode")
    print(f"  AlignSAM-v0 with cached embeddings: median {result['env_cached_median_s']:.3f} s / episode "
          f"({result['env_step_ms_median']:.1f} ms / step)")
    print(f"  speed-up: {result['speedup_median']:.1f}x")
    return _write_result(args, result)


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from policies.benchmarks.soak import run_soak

    result = run_soak(rounds=args.rounds, warmup=args.warmup, episodes=args.episodes, num_envs=args.num_envs,
                      num_images=args.num_images)
    print(f"\n{result['env_steps']} env steps in {result['wall_s']:.0f} s; after warm-up: RSS "
          f"{result['rss_growth_after_warmup_mib']:+.1f} MiB ({result['rss_slope_after_warmup_mib_per_round']:+.2f} "
          f"MiB/round), open files {result['open_files_growth_after_warmup']:+d}")
    return _write_result(args, result)


def cmd_cache_build(args: argparse.Namespace) -> int:
    from alignsam_gym.backends import backend_arguments, shared_backend, shared_cache
    from alignsam_gym.data.tasks import make_dataset
    from alignsam_gym.precompute import encode_dataset, missing_images

    kwargs = backend_arguments(args.backend, args.sam_checkpoint, args.sam_model_type)
    if args.ray is not None:
        from policies.ray_cache import build_cache_on_ray

        def ray_progress(done: int, total: int, seconds: float) -> None:
            print(f"\r  [{done}/{total}] {seconds:.1f} s on Ray", end="", flush=True)

        report = build_cache_on_ray(args.task, args.split, args.num_images, args.data_root, args.backend, kwargs,
                                    args.cache_dir, args.dtype, args.image_size, args.device, args.ray,
                                    batch_size=args.batch_size or 4, concurrency=args.concurrency,
                                    progress=ray_progress)
        print(f"\n{args.task}/{args.split}: {report['images']} images, {report['cached']} already cached, "
              f"{report['encoded']} encoded on Ray in {report['seconds']:.1f} s")
        return 0
    backend = shared_backend(args.backend, device=args.device, **kwargs)
    cache = shared_cache(args.cache_dir, disk_dtype=args.dtype)
    dataset = make_dataset(args.task, args.split, args.num_images, args.data_root)
    todo = missing_images(cache, backend, dataset, args.image_size)
    print(f"{args.task}/{args.split}: {len(dataset)} images, {len(dataset) - len(todo)} already cached in "
          f"{cache.directory}; encoding {len(todo)} with {backend.identity}")

    def progress(done: int, total: int, seconds: float) -> None:
        print(f"\r  [{done}/{total}] {seconds:.1f} s, {seconds / done:.2f} s/image", end="", flush=True)

    report = encode_dataset(cache, backend, dataset, args.image_size, args.batch_size, progress, todo)
    print(f"\n{report.encoded} encoded in {report.seconds:.1f} s (batch size {report.batch_size})")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from alignsam_gym.backends import weights

    if args.action == "list":
        print(f"weights folder: {weights.weights_dir()} (set ${weights.WEIGHTS_ENV} to change it)")
        for w in weights.REGISTRY.values():
            size = f"{w.size / 2**20:.0f} MiB" if w.size else "size not published"
            installed = (weights.weights_dir() / w.filename).is_file()
            print(f"  {w.name:22s} {w.filename:22s} {size:>20s}  {'installed' if installed else '-':9s} {w.description}")
            print(f"  {'':22s} {w.url}\n  {'':22s} sha256 {w.sha256}")
        return 0
    if args.action == "download":
        path = weights.download(args.target, directory=args.dir)
        print(f"installed {path}")
        return 0
    report = weights.identify(args.target)
    if args.json:
        write_json(args.json, report)
    for key, value in report.items():
        print(f"{key:15s} {value}")
    return 0 if report["registry"] or report["sam_model_type"] else 1


def cmd_train(args: argparse.Namespace) -> int:
    from policies.runs import RunConfig, RunFolder, train
    from policies.sb3.presets import RUN_PRESETS

    if args.preset is not None and args.preset not in RUN_PRESETS:
        raise ValueError(f"--preset must be one of {list(RUN_PRESETS)}, got {args.preset!r}")
    if args.resume:
        if args.config or args.out or args.preset:
            raise ValueError("--resume RUN continues RUN with its saved config.yaml; drop --config, --out and "
                             "--preset")
        config, run = RunFolder(args.resume).read_config(), RunFolder(args.resume)
    else:
        if not (args.config and args.out):
            raise ValueError("a new run needs --config FILE and --out DIR (or --resume RUN to continue one)")
        config, run = RunConfig.load(args.config, preset=args.preset), RunFolder(args.out)
    if args.timesteps is not None:
        config = config.with_changes(total_timesteps=args.timesteps)
    if args.device is not None:
        config = config.with_changes(device=args.device)
    train(config, run.path, progress_bar=not args.no_progress, resume=bool(args.resume))
    print(f"wrote {run.model_file}, {run.srm_file}, {run.config_file}; TensorBoard logs in {run.tensorboard_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from policies.runs import evaluate, load_srm_weights

    env_kwargs = _env_kwargs(args)
    srm = load_srm_weights(args.srm) if args.srm else None
    result = evaluate(args.policy, env_kwargs, images=args.images, seed=args.seed, srm_weights=srm,
                      device=args.device)
    result.update({"policy": args.policy, **env_kwargs, "seed": args.seed})
    print(f"{'policy':24s} {'task':20s} {'images':>8s} {'fg rate':>8s} {'mIoU':>7s} {'F-beta':>7s} "
          f"{'E-phi':>7s} {'MAE':>7s} {'BER %':>7s} {'return':>7s}")
    print(f"{args.policy[-24:]:24s} {args.task:20s} {result['images']:8d} {result['foreground_rate']:8.3f} "
          f"{result['miou']:7.3f} {result['f_beta']:7.3f} {result['e_measure']:7.3f} {result['mae']:7.3f} "
          f"{result['ber_dataset']:7.2f} {result['return']:7.2f}")
    return _write_result(args, result)


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The env keyword arguments of ``evaluate`` and ``record`` (see :func:`_add_env_options`)."""
    from policies.configs import make_env_kwargs

    return make_env_kwargs(task=args.task, split=args.split, num_images=args.num_images,
                           init_prompts=args.init_prompts, label_source=args.label_source, data_root=args.data_root,
                           obs_mode=args.obs_mode, obs_size=args.obs_size)


def cmd_rllib(args: argparse.Namespace) -> int:
    from policies.rllib.training import RLlibConfig, train_rllib
    from policies.configs import load_yaml_config

    config = load_yaml_config(args.config, "RLlib config", RLlibConfig.from_dict)
    records = train_rllib(config, args.out, iterations=args.iterations, address=args.ray)
    for record in records:
        print(f"iteration {record['iteration']}: {record['env_steps']} env steps, episode return "
              f"{record['episode_return_mean']}, {record['wall_s']:.1f} s")
    print(f"wrote {args.out}/config.yaml, progress.jsonl and checkpoint/")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from policies.recording import record_dataset

    env_kwargs = _env_kwargs(args)
    if args.srm:
        env_kwargs["srm_checkpoint"] = args.srm
    dataset = record_dataset(args.policy, args.dataset_id, env_kwargs, episodes=args.episodes, seed=args.seed,
                             device=args.device, datasets_path=args.datasets_path)
    print(f"wrote Minari dataset {args.dataset_id}: {dataset.total_episodes} episodes, {dataset.total_steps} steps, "
          f"in {Path(dataset.storage.data_path).parent}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from policies.benchmarks.quickstart import REPORT_NAME, run_quickstart

    report = run_quickstart(args.out, tasks=args.tasks, seeds=args.seeds, timesteps=args.timesteps,
                            images=args.images, num_images=args.num_images, test_images=args.test_images,
                            lite_decoder=args.lite_decoder)
    out = Path(args.out)
    print()
    print((out / f"{REPORT_NAME}.md").read_text())
    print(f"wrote {out / REPORT_NAME}.json, {out / REPORT_NAME}.md and plots/ in {report['wall_s_this_session']:.0f} s")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from policies.benchmarks.train_throughput import run_train_benchmark

    report = run_train_benchmark(variants=tuple(args.variants), timesteps=args.timesteps, repeats=args.repeats,
                                 task=args.task, profile=not args.no_profile)
    for row in report["results"]:
        print(f"{row['variant']:16s} {row['steps_per_s']:7.1f} steps/s  x{row['speedup_over_baseline']:.2f}  "
              f"same weights as baseline: {row['same_weights_as_baseline']}")
    if "baseline_profile" in report:
        print("baseline profile:", report["baseline_profile"])
    return _write_result(args, report)


def cmd_bench_env(args: argparse.Namespace) -> int:
    from policies.benchmarks.env_throughput import run_env_benchmark

    result = run_env_benchmark(backends=tuple(args.backends), sizes=tuple(args.sizes), dummy_sizes=tuple(args.dummy_sizes),
                               model_type=args.model_type, sam_checkpoint=args.sam_checkpoint,
                               devices=tuple(args.devices) if args.devices else None, episodes=args.episodes,
                               lite_episodes=args.lite_episodes,
                               num_images=args.num_images)
    print()
    for row in result["results"]:
        ratios = {k: v for k, v in row.items() if "_over_" in k}
        print(f"{row['backend']} on {row['device']}: {ratios}")
    memory = result["rollout_memory"]
    print(f"PPO rollout, compact / full observation memory: buffer {memory.get('compact_over_full_buffer')}, "
          f"tracked peak {memory.get('compact_over_full_peak')}")
    return _write_result(args, result)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from policies.benchmarks.grid import load_benchmark_config, run_benchmark

    report = run_benchmark(load_benchmark_config(args.config), args.out, progress=not args.quiet, ray_address=args.ray)
    print()
    print((Path(args.out) / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md and plots/ ({len(report['results'])} records)")
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from policies.benchmarks.tables import update_tables

    stale = update_tables(args.files, check=args.check)
    for path in stale:
        print(f"{path}: {'differs from its result files' if args.check else 're-rendered'}")
    return 1 if args.check and stale else 0


def _add_demo(sub: Subcommands) -> None:
    """``alignsam demo``."""
    demo = sub.add_parser("demo", help="one random-policy episode, written as an annotated GIF and PNG strip")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--task", default=None, help="task name (default: the env's default task)")
    demo.add_argument("--data-root", default=None, help="dataset folder, for file-based tasks")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--max-prompts", type=int, default=15)
    _add_device(demo, "auto")
    demo.set_defaults(func=cmd_demo)


def _add_json(parser: argparse.ArgumentParser, what: str = "the results") -> None:
    """``--json FILE``: where a command writes what it measured (declared once for every command)."""
    parser.add_argument("--json", default=None, metavar="FILE", help=f"write {what} to this JSON file")


def _add_device(parser: argparse.ArgumentParser, default: str | None = "auto", what: str = "the models'") -> None:
    """``--device``: where a command runs its models (declared once for every command)."""
    parser.add_argument("--device", default=default, help=f"{what} device: auto (CUDA when present), cpu, cuda or "
                                                          f"cuda:N (default: {default or 'as configured'})")


def _add_lite_decoder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lite-decoder", default=None, choices=["v1", "v2"],
                        help="the embedded backend's decoder version (default v2; v1: package 0.1's, weights floored)")


def _lite_decoder_kwargs(args: argparse.Namespace) -> dict[str, str]:
    """``{"decoder": ...}`` when ``--lite-decoder`` was given (an error for another backend)."""
    if args.lite_decoder is None:
        return {}
    if args.backend != "lite":
        raise SystemExit(f"--lite-decoder applies to --backend lite, not {args.backend!r}")
    return {"decoder": args.lite_decoder}


def _add_benches(sub: Subcommands) -> None:
    """``alignsam bench decoder|episode|soak|env``."""
    bench = sub.add_parser("bench", help="benchmarks that print and write JSON")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    dec = bench_sub.add_parser("decoder", help="oracle-click quality and decode speed of a backend")
    dec.add_argument("--task", default="ccp-person")
    dec.add_argument("--data-root", default=None, help="dataset folder (CCP: the folder with images/, labels/)")
    dec.add_argument("--backend", default="lite")
    _add_lite_decoder(dec)
    dec.add_argument("--size", type=int, default=256, help="longest image side for the quality run, pixels")
    dec.add_argument("--clicks", type=int, default=10)
    dec.add_argument("--limit", type=int, default=None, help="use only the first N images")
    dec.add_argument("--speed-images", type=int, default=20, help="images for the 800x800 decode timing")
    dec.add_argument("--no-baseline", action="store_true", help="skip the GrabCut baseline")
    _add_json(dec)
    dec.set_defaults(func=cmd_bench_decoder)
    clk = bench_sub.add_parser("clicks", help="the standard click protocol (NoC@85/90, mIoU@k) on a standard set")
    clk.add_argument("--dataset", required=True, help="grabcut, berkeley, davis, coco-mval, sbd (or any file task)")
    clk.add_argument("--data-root", required=True, help="the dataset's folder, in its distributed layout")
    clk.add_argument("--backend", default="lite")
    _add_lite_decoder(clk)
    clk.add_argument("--sam-checkpoint", default=None)
    clk.add_argument("--sam-model-type", default=None)
    _add_device(clk, "cpu")
    clk.add_argument("--max-clicks", type=int, default=20)
    clk.add_argument("--limit", type=int, default=None, help="only the first N items")
    clk.add_argument("--no-baseline", action="store_true", help="skip OpenCV GrabCut")
    clk.add_argument("--quiet", action="store_true")
    clk.add_argument("--plot", default=None, help="write the mIoU-against-clicks curve to this PNG")
    _add_json(clk)
    clk.set_defaults(func=cmd_bench_clicks)
    epi = bench_sub.add_parser("episode", help="SAM episode time: cached env vs SamPredictor.set_image per reset")
    epi.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    epi.add_argument("--sam-checkpoint", default=None, help="real weights (default: random weights, same time)")
    epi.add_argument("--episodes", type=int, default=3)
    _add_device(epi, "auto")
    _add_json(epi)
    epi.set_defaults(func=cmd_bench_episode)
    soak = bench_sub.add_parser("soak", help="many episodes on every embedded task: memory and file handles")
    soak.add_argument("--rounds", type=int, default=12)
    soak.add_argument("--warmup", type=int, default=3, help="rounds before memory must stay flat")
    soak.add_argument("--episodes", type=int, default=4, help="episodes per env per task per round")
    soak.add_argument("--num-envs", type=int, default=4)
    soak.add_argument("--num-images", type=int, default=8, help="images per task")
    _add_json(soak)
    soak.set_defaults(func=cmd_bench_soak)

    trn = bench_sub.add_parser("train", help="PPO + SRM training steps/s: variants against the baseline, one run")
    trn.add_argument("--variants", nargs="+", default=["batched", "batched_compact", "subproc", "threads1"],
                     help="changes to time against the baseline: batched, batched_compact, subproc, threads1, "
                          "epochs4, envs8, narrow, fast, pair, fast_pair "
                          "(policies.benchmarks.train_throughput.VARIANTS)")
    trn.add_argument("--timesteps", type=int, default=2048)
    trn.add_argument("--repeats", type=int, default=3, help="timed runs per variant, interleaved")
    trn.add_argument("--task", default="synthetic-saliency")
    trn.add_argument("--no-profile", action="store_true", help="skip the profile of one baseline run")
    _add_json(trn)
    trn.set_defaults(func=cmd_bench_train)

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
    _add_json(env)
    env.set_defaults(func=cmd_bench_env)


def _add_cache(sub: Subcommands) -> None:
    """``alignsam cache build``."""
    cache = sub.add_parser("cache", help="the embedding cache")
    cache_sub = cache.add_subparsers(dest="cache", required=True)
    build = cache_sub.add_parser("build", help="encode every image of a task into the cache")
    build.add_argument("--task", required=True)
    build.add_argument("--split", default="train")
    build.add_argument("--num-images", type=int, default=50)
    build.add_argument("--data-root", default=None)
    build.add_argument("--backend", default="lite")
    build.add_argument("--sam-checkpoint", default=None)
    build.add_argument("--sam-model-type", default=None)
    build.add_argument("--image-size", type=int, default=800, help="as the env's image_size (default 800)")
    build.add_argument("--cache-dir", default=None, help="default: $ALIGNSAM_CACHE or ~/.cache/alignsam-gym")
    build.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="features on disk")
    build.add_argument("--batch-size", type=int, default=None,
                       help="images per encoder forward (GPU default 8, halved on out-of-memory; CPU 1)")
    _add_device(build, "auto")
    build.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="encode with Ray Data actors (GPU actors when the cluster has GPUs): alone, a local "
                            "instance; 'auto' or ray://host:10001 joins a cluster (the cache must be shared)")
    build.add_argument("--concurrency", type=int, default=2, help="encoder actors with --ray (default 2)")
    build.set_defaults(func=cmd_cache_build)


def _add_weights(sub: Subcommands) -> None:
    """``alignsam weights``."""
    wts = sub.add_parser("weights", help="official checkpoints: list, download, verify")
    wts.add_argument("action", choices=["list", "download", "verify"])
    wts.add_argument("target", nargs="?", help="download: a registry name; verify: a file path")
    wts.add_argument("--dir", default=None, help="download folder (default: $ALIGNSAM_WEIGHTS or ~/.cache/...)")
    _add_json(wts, "the verify report")
    wts.set_defaults(func=cmd_weights)


def _add_runs(sub: Subcommands) -> None:
    """``alignsam train`` and ``alignsam evaluate``."""
    train = sub.add_parser("train", help="train an agent (+ SRM) from a YAML config")
    train.add_argument("--config", default=None, help="YAML: algorithm, seed, total_timesteps, n_envs, vec_env, env, "
                                                      "hyperparameters, srm, checkpoint_every (see experiments/configs)")
    train.add_argument("--out", default=None, help="run folder of a new run")
    train.add_argument("--resume", default=None, metavar="RUN",
                       help="continue the run folder RUN (after Ctrl-C, SIGTERM or a crash) up to its total_timesteps")
    train.add_argument("--timesteps", type=int, default=None, help="override total_timesteps (extends a resumed run)")
    _add_device(train, None, "override the config's")
    train.add_argument("--preset", default=None,
                       help="paper: the paper's PPO schedule and env settings under the config's own keys "
                            "(the config's preset key; docs: Differences from the paper)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="deterministic evaluation of a run folder, model.zip or a heuristic")
    ev.add_argument("policy", help=POLICY_HELP)
    _add_env_options(ev)
    ev.add_argument("--images", type=int, default=None,
                    help="images of the split to play, each once (default: every one; fewer: a fixed seeded sample)")
    _add_json(ev, "the metrics and one row per episode")
    ev.set_defaults(func=cmd_evaluate)

    rl = sub.add_parser("rllib", help="train RLlib's PPO (new API stack) on AlignSAM-v0 (the [ray] extra)")
    rl.add_argument("--config", required=True, help="RLlib run YAML (see experiments/configs/rllib_ppo_*.yaml)")
    rl.add_argument("--out", required=True, help="a new run folder")
    rl.add_argument("--iterations", type=int, default=None, help="override the config's iterations")
    rl.add_argument("--ray", default=None, metavar="ADDRESS", help="join a Ray cluster (default: a local instance)")
    rl.set_defaults(func=cmd_rllib)

    rec = sub.add_parser("record", help="episodes of a run or a heuristic as a Minari dataset (the [minari] extra)")
    rec.add_argument("--policy", required=True, help=POLICY_HELP)
    _add_env_options(rec)
    rec.add_argument("--episodes", type=int, default=20)
    rec.add_argument("--dataset-id", required=True, help="Minari id, e.g. alignsam/grabcut/srm_greedy-v0")
    rec.add_argument("--datasets-path", default=None,
                     help="Minari's datasets folder (default $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    rec.set_defaults(func=cmd_record)


#: every name of alignsam_gym.heuristics.HEURISTICS (text here: building the parser imports no torch; a test checks)
POLICY_HELP = ("a run folder, a model.zip, or a heuristic: random, centre, srm_greedy, disagree, mix, srm_lookahead, "
               "oracle, clicker (upper bounds: they read the ground truth)")


def _add_env_options(parser: argparse.ArgumentParser) -> None:
    """The env options of ``evaluate`` and ``record``."""
    parser.add_argument("--task", default="synthetic-saliency")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--num-images", type=int, default=50,
                        help="training images (the few-shot subset; val is the rest of the training images)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--obs-size", type=int, default=None, help="default: as the run was trained")
    parser.add_argument("--obs-mode", default=None, choices=["full", "compact"],
                        help="default: as the run was trained (record: compact for a heuristic)")
    parser.add_argument("--init-prompts", default="srm", choices=["srm", "random_gt"])
    parser.add_argument("--label-source", default="srm")
    parser.add_argument("--srm", default=None, help="SRM weights (srm.pt) for the env; a run's own by default")
    _add_device(parser, "auto", "the policy's and the env's")


def _add_grids(sub: Subcommands) -> None:
    """``alignsam quickstart`` and ``alignsam benchmark``."""
    qs = sub.add_parser("quickstart", help="PPO + SRM vs random + SRM on every embedded task (the main job)")
    qs.add_argument("--out", default="runs/quickstart")
    qs.add_argument("--tasks", nargs="+", default=None, help=f"default: {' '.join(SYNTHETIC_TASKS)}")
    qs.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1")
    qs.add_argument("--timesteps", type=int, default=None)
    qs.add_argument("--images", type=int, default=None, help="test images per record (default: every one)")
    qs.add_argument("--num-images", type=int, default=None, help="training images per task")
    qs.add_argument("--test-images", type=int, default=None, help="test images per task")
    qs.add_argument("--lite-decoder", default=None, choices=["v1", "v2"],
                    help="the embedded decoder (default here v1, the quickstart's measured setting; see the README)")
    qs.set_defaults(func=cmd_quickstart)

    bm = sub.add_parser("benchmark", help="policies x tasks x settings x seeds with the paper's metrics, tables, plots")
    bm.add_argument("--config", required=True, help="benchmark YAML (see experiments/configs/bench_*.yaml)")
    bm.add_argument("--out", required=True, help="output folder; rerunning resumes what it holds")
    bm.add_argument("--quiet", action="store_true")
    bm.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                    help="run every trial as a Ray task: alone, a local Ray instance; 'auto' or ray://host:10001 "
                         "joins a cluster (--out and the embedding cache must be on a filesystem every node shares)")
    bm.set_defaults(func=cmd_benchmark)

    tb = sub.add_parser("tables", help="re-render the results tables of Markdown files from their result files")
    tb.add_argument("files", nargs="+", help="Markdown files with <!-- results: PATH --> blocks (e.g. README.md)")
    tb.add_argument("--check", action="store_true", help="write nothing; exit 1 when a table differs")
    tb.set_defaults(func=cmd_tables)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``alignsam`` command."""
    parser = argparse.ArgumentParser(prog="alignsam", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_runs, _add_grids, _add_benches, _add_cache, _add_weights):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = " ".join(["alignsam", *(sys.argv[1:] if argv is None else argv)])
    if getattr(args, "action", None) in ("download", "verify") and not args.target:
        parser.error(f"weights {args.action} needs a {'registry name' if args.action == 'download' else 'file path'}")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError) as err:
        print(f"alignsam: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"alignsam: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
