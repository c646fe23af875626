"""The ``alignsam`` command line.

- ``alignsam demo --out DIR``: one episode of ``AlignSAM-v0`` with a random policy; writes an
  annotated GIF and PNG strip of it and ``episode.json``.
- ``alignsam bench decoder --data-root DIR --json OUT``: oracle-click quality and decode speed of a
  backend on a dataset task (default CCP person), with OpenCV GrabCut as the same-run baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np


def _write_json(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


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
        steps.append({"action": action, "reward": reward, **info})
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
    _write_json(out / "episode.json", summary)
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
        _write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"alignsam: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
