"""The ``alignsam`` command line.

- ``alignsam demo --out DIR``: one episode of ``AlignSAM-v0`` with a random policy; writes an
  annotated GIF and PNG strip of it and ``episode.json``.
- ``alignsam bench decoder --data-root DIR --json OUT``: oracle-click quality and decode speed of a
  backend on a dataset task (default CCP person), with OpenCV GrabCut as the same-run baseline.
- ``alignsam bench episode --json OUT``: SAM episode time, env with cached embeddings against
  ``SamPredictor.set_image`` at every reset.
- ``alignsam bench soak --json OUT``: many episodes on every embedded task, memory and open files per round.
- ``alignsam cache build --task T --backend B``: precompute the embeddings of a whole task.
- ``alignsam weights list | download NAME | verify PATH``: official checkpoints.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from alignsam_gym.bench import write_json


def cmd_demo(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from PIL import Image

    import alignsam_gym  # noqa: F401  (registers the ids)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = {"render_mode": "rgb_array", "max_prompts": args.max_prompts, "device": args.device}
    if args.task:
        kwargs["task"] = args.task
    if args.data_root:
        kwargs["data_root"] = args.data_root
    start = time.perf_counter()
    env = gym.make("AlignSAM-v0", **kwargs)
    env.action_space.seed(args.seed)
    obs, info = env.reset(seed=args.seed)
    image_index = info["image_index"]
    frames = [env.render()]
    steps = []
    terminated = truncated = False
    while not (terminated or truncated):
        action = int(env.action_space.sample())
        obs, reward, terminated, truncated, info = env.step(action)
        frames.append(env.render())
        steps.append({"action": action, "reward": reward, **{k: v for k, v in info.items() if k != "action_mask"}})
        print(f"step {info['num_prompts']:2d}: action {action:3d} reward {reward:+.0f} "
              f"label {info['label']} IoU {info['iou']:.3f}")
    env.close()

    images = [Image.fromarray(f) for f in frames]
    images[0].save(out / "episode.gif", save_all=True, append_images=images[1:], duration=500, loop=0)
    panel = frames[0].shape[0]
    thumbs = [Image.fromarray(f).resize((panel, panel // 2)) for f in frames]
    strip = Image.new("RGB", (panel * len(thumbs[:8]), (panel // 2) * ((len(thumbs) + 7) // 8)))
    for k, thumb in enumerate(thumbs):
        strip.paste(thumb, ((k % 8) * panel, (k // 8) * (panel // 2)))
    strip.save(out / "episode_strip.png")
    rewards = [s["reward"] for s in steps]
    summary = {"task": env.unwrapped.task, "seed": args.seed, "policy": "random", "image_index": image_index,
               "return": float(np.sum(rewards)),
               "foreground_rate": float(np.mean([s["is_foreground"] for s in steps])),
               "final_iou": steps[-1]["iou"], "steps": steps, "wall_s": round(time.perf_counter() - start, 2)}
    write_json(out / "episode.json", summary)
    print(f"{summary['task']}: return {summary['return']:+.0f}, foreground rate {summary['foreground_rate']:.2f}, "
          f"final IoU {summary['final_iou']:.3f}; wrote {out / 'episode.gif'}, {out / 'episode_strip.png'}, "
          f"{out / 'episode.json'}")
    return 0


def cmd_bench_decoder(args: argparse.Namespace) -> int:
    from alignsam_gym.backends import make_backend
    from alignsam_gym.bench.decoder import run_decoder_benchmark
    from alignsam_gym.data.tasks import make_dataset

    dataset = make_dataset(args.task, split="all", data_root=args.data_root) if args.task.startswith("ccp-") \
        else make_dataset(args.task, split="test", data_root=args.data_root)
    backend = make_backend(args.backend, device="cpu")
    result = run_decoder_benchmark(backend, dataset, size=args.size, num_clicks=args.clicks, limit=args.limit,
                                   baseline=not args.no_baseline, speed_images=args.speed_images)
    result["command"] = "alignsam " + " ".join(sys.argv[1:])
    curve = result["backend_result"]["miou_per_click"]
    print(f"\n{result['task']} at {args.size} px, {result['backend_result']['images']} images, mIoU after k clicks")
    print("clicks   " + " ".join(f"{k:>6d}" for k in range(1, len(curve) + 1)))
    print(f"{args.backend:8s} " + " ".join(f"{v:6.3f}" for v in curve))
    if "grabcut_result" in result:
        print("grabcut  " + " ".join(f"{v:6.3f}" for v in result["grabcut_result"]["miou_per_click"]))
    speed = result["decode_speed"]
    print(f"decode at {speed['image_size']}x{speed['image_size']}, 1 thread: median {speed['ms_median']} ms, "
          f"p95 {speed['ms_p95']} ms over {speed['decodes']} decodes")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_bench_episode(args: argparse.Namespace) -> int:
    from alignsam_gym.bench.episode import run_episode_benchmark
    from alignsam_gym.devices import resolve_device

    result = run_episode_benchmark(model_type=args.model_type, checkpoint=args.sam_checkpoint, episodes=args.episodes,
                                   device=str(resolve_device(args.device)))
    result["command"] = "alignsam " + " ".join(sys.argv[1:])
    print(f"\nSAM {result['model_type']} ({result['weights']} weights) on {result['device']}, "
          f"{result['episodes']} episodes of reset + {result['max_prompts']} steps:")
    print(f"  SamPredictor.set_image per reset: median {result['predictor_per_reset_median_s']:.3f} s / episode")
    print(f"  AlignSAM-v0 with cached embeddings: median {result['env_cached_median_s']:.3f} s / episode "
          f"({result['env_step_ms_median']:.1f} ms / step)")
    print(f"  speed-up: {result['speedup_median']:.1f}x")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_bench_soak(args: argparse.Namespace) -> int:
    from alignsam_gym.bench.soak import run_soak

    result = run_soak(rounds=args.rounds, warmup=args.warmup, episodes=args.episodes, num_envs=args.num_envs,
                      num_images=args.num_images)
    result["command"] = "alignsam " + " ".join(sys.argv[1:])
    print(f"\n{result['env_steps']} env steps in {result['wall_s']:.0f} s; after warm-up: RSS "
          f"{result['rss_growth_after_warmup_mib']:+.1f} MiB ({result['rss_slope_after_warmup_mib_per_round']:+.2f} "
          f"MiB/round), open files {result['open_files_growth_after_warmup']:+d}")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_cache_build(args: argparse.Namespace) -> int:
    from alignsam_gym.backends import backend_arguments, shared_backend, shared_cache
    from alignsam_gym.data.prepare import prepared_sample
    from alignsam_gym.data.tasks import make_dataset

    kwargs = backend_arguments(args.backend, args.sam_checkpoint, args.sam_model_type)
    backend = shared_backend(args.backend, device=args.device, **kwargs)
    cache = shared_cache(args.cache_dir, disk_dtype=args.dtype)
    dataset = make_dataset(args.task, args.split, args.num_images, args.data_root)
    batch_size = args.batch_size or (8 if str(getattr(backend, "device", "cpu")).startswith("cuda") else 1)
    encode_batch = getattr(backend, "encode_batch", None)
    todo = [i for i in range(len(dataset)) if not cache.contains(backend, prepared_sample(dataset, i, args.image_size)[2])]
    print(f"{args.task}/{args.split}: {len(dataset)} images, {len(dataset) - len(todo)} already cached in "
          f"{cache.directory}; encoding {len(todo)} with {backend.identity}")
    start = time.perf_counter()
    for k in range(0, len(todo), batch_size):
        chunk = [prepared_sample(dataset, i, args.image_size) for i in todo[k:k + batch_size]]
        images = [image for image, _, _ in chunk]
        embeddings = encode_batch(images) if encode_batch and len(images) > 1 else [backend.encode(images[0])]
        for (_, _, digest), embedding in zip(chunk, embeddings):
            cache.put(backend, digest, embedding)
        done = min(k + batch_size, len(todo))
        elapsed = time.perf_counter() - start
        print(f"\r  [{done}/{len(todo)}] {elapsed:.1f} s, {elapsed / done:.2f} s/image", end="", flush=True)
    print()
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


#: ``extend(commands, bench_commands)``: adds subcommands (the SB3 plugin's) at the top level and under ``bench``
Extension = Callable[[argparse._SubParsersAction, argparse._SubParsersAction], None]


def build_parser(extend: Extension | None = None) -> argparse.ArgumentParser:
    """The parser of the env-side commands; ``extend(commands, bench_commands)`` adds more (the SB3
    plugin's), top-level and under ``bench``."""
    parser = argparse.ArgumentParser(prog="alignsam", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="one random-policy episode, written as an annotated GIF and PNG strip")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--task", default=None, help="task name (default: the env's default task)")
    demo.add_argument("--data-root", default=None, help="dataset folder, for file-based tasks")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--max-prompts", type=int, default=15)
    demo.add_argument("--device", default="auto")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="benchmarks that print and write JSON")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    dec = bench_sub.add_parser("decoder", help="oracle-click quality and decode speed of a backend")
    dec.add_argument("--task", default="ccp-person")
    dec.add_argument("--data-root", default=None, help="dataset folder (CCP: the folder with images/, labels/)")
    dec.add_argument("--backend", default="lite")
    dec.add_argument("--size", type=int, default=256, help="longest image side for the quality run, pixels")
    dec.add_argument("--clicks", type=int, default=10)
    dec.add_argument("--limit", type=int, default=None, help="use only the first N images")
    dec.add_argument("--speed-images", type=int, default=20, help="images for the 800x800 decode timing")
    dec.add_argument("--no-baseline", action="store_true", help="skip the GrabCut baseline")
    dec.add_argument("--json", default=None, help="write the results to this JSON file")
    dec.set_defaults(func=cmd_bench_decoder)
    epi = bench_sub.add_parser("episode", help="SAM episode time: cached env vs SamPredictor.set_image per reset")
    epi.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    epi.add_argument("--sam-checkpoint", default=None, help="real weights (default: random weights, same time)")
    epi.add_argument("--episodes", type=int, default=3)
    epi.add_argument("--device", default="auto")
    epi.add_argument("--json", default=None)
    epi.set_defaults(func=cmd_bench_episode)
    soak = bench_sub.add_parser("soak", help="many episodes on every embedded task: memory and file handles")
    soak.add_argument("--rounds", type=int, default=12)
    soak.add_argument("--warmup", type=int, default=3, help="rounds before memory must stay flat")
    soak.add_argument("--episodes", type=int, default=4, help="episodes per env per task per round")
    soak.add_argument("--num-envs", type=int, default=4)
    soak.add_argument("--num-images", type=int, default=8, help="images per task")
    soak.add_argument("--json", default=None)
    soak.set_defaults(func=cmd_bench_soak)

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
    build.add_argument("--batch-size", type=int, default=None, help="images per encoder forward (GPU: 8)")
    build.add_argument("--device", default="auto")
    build.set_defaults(func=cmd_cache_build)

    wts = sub.add_parser("weights", help="official checkpoints: list, download, verify")
    wts.add_argument("action", choices=["list", "download", "verify"])
    wts.add_argument("target", nargs="?", help="download: a registry name; verify: a file path")
    wts.add_argument("--dir", default=None, help="download folder (default: $ALIGNSAM_WEIGHTS or ~/.cache/...)")
    wts.add_argument("--json", default=None, help="verify: write the report as JSON")
    wts.set_defaults(func=cmd_weights)
    if extend is not None:
        extend(sub, bench_sub)
    return parser


def main(argv: Sequence[str] | None = None,
         extend: Extension | None = None) -> int:
    parser = build_parser(extend)
    args = parser.parse_args(argv)
    if getattr(args, "action", None) in ("download", "verify") and not args.target:
        parser.error(f"weights {args.action} needs a {'registry name' if args.action == 'download' else 'file path'}")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError) as err:
        print(f"alignsam: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
