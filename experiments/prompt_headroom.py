"""How much better than SRM-greedy could a prompter be? Prompting rules without learning, and an oracle.

The rules are :mod:`alignsam_gym.heuristics`' (where they moved from this script; the package's oracle decodes
its candidates through ``env.preview``, which labels them as the env does: with the SRM here, as before).

With one trained SRM (a run's ``srm.pt``) labelling every prompt, as in the paper's test protocol (SRM
initial prompts, T = 15), on a task's test split, this measures each rule's final mIoU, its IoU after
each prompt and its foreground rate:

- ``srm_greedy``: the SRM's most confident unprompted cell (the benchmark's heuristic);
- ``disagree``: the unprompted cell where the SRM's map and the current mask differ most (the SRM then
  labels it: background where the mask spills over, foreground where it falls short);
- ``mix``: disagreement plus half the SRM's confidence ``|S - 0.5|`` (prompt where the mask is wrong and the
  SRM is sure);
- ``oracle``: one-step look-ahead on the ground truth: every unprompted cell is tried (SRM label, decode)
  and the one whose mask has the highest true IoU is taken. Not a policy (it reads the ground truth); an
  upper bound for a greedy prompter with these labels and this segmenter.

    python experiments/prompt_headroom.py --srm RUN/srm.pt --task ccp-person --data-root ../shared/data/ccp \\
        --episodes 40 --json experiments/results/recipe_search/prompt_headroom_ccp_person.json
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym
import numpy as np

from alignsam_gym import ENV_ID, __version__
from alignsam_gym.atomic import write_json
from alignsam_gym.heuristics import choose
from policies.benchmarks.machine import machine
from policies.runs import load_srm_weights

RULES = ("srm_greedy", "disagree", "mix", "oracle")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--srm", required=True, help="a run's srm.pt: the SRM that labels every prompt")
    parser.add_argument("--task", default="ccp-person")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--episodes", type=int, default=40, help="test episodes per rule (seeds 0..N-1)")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--decoder", default="v2", choices=["v1", "v2"], help="the embedded decoder")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    env_kwargs = {"task": args.task, "split": "test", "num_images": 100, "init_prompts": "srm",
                  "backend_kwargs": {"decoder": args.decoder}, "device": "cpu"}
    if args.data_root:
        env_kwargs["data_root"] = args.data_root
    env = gym.make(ENV_ID, **env_kwargs)
    inner = env.unwrapped
    inner.set_srm_weights(load_srm_weights(args.srm))
    results = {}
    for rule in args.rules:
        start, finals, hits, curves = time.perf_counter(), [], [], []
        for episode in range(args.episodes):
            _, info = env.reset(seed=episode)
            curve, done = [info["iou"]], False
            while not done:
                _, _, done, _, info = env.step(choose(rule, inner, np.random.default_rng(episode)))
                hits.append(info["is_foreground"])
                curve.append(info["iou"])
            finals.append(info["iou"])
            curves.append(curve)
        results[rule] = {"miou": round(float(np.mean(finals)), 4), "foreground_rate": round(float(np.mean(hits)), 4),
                         "iou_curve": [round(float(v), 4) for v in np.mean(curves, axis=0)],
                         "wall_s": round(time.perf_counter() - start, 1)}
        print(f"{rule:12s} mIoU {results[rule]['miou']:.3f}  foreground rate {results[rule]['foreground_rate']:.3f}",
              flush=True)
    env.close()
    report = {"benchmark": "prompt_headroom", "srm": args.srm, "env": env_kwargs, "episodes": args.episodes,
              "results": results, "package_version": __version__, "command": " ".join(["python", *sys.argv]),
              "machine": machine()}
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
