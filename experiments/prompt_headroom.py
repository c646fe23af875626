"""How much better than SRM-greedy could a prompter be? Prompting rules without learning, and an oracle.

With one trained SRM (a run's ``srm.pt``) labelling every prompt, as in the paper's test protocol (SRM
initial prompts, T = 15), this plays every rule of :mod:`alignsam_gym.heuristics` on the same images of a
task's *validation* split (the training images outside the run's few-shot subset: pass the run's
``--num-images`` and ``--subset-seed``), each image once, through :func:`policies.runs.evaluate`, and reports
each rule's final mIoU, IoU after each prompt, foreground rate and its paired mIoU difference from
``srm_greedy`` per image. A tool for choosing what to build, so it never reads the test split unless asked
(``--split test``, for a final check only). ``oracle`` reads the ground truth: an upper bound, not a rule.

    python experiments/prompt_headroom.py --srm RUN/srm.pt --task ccp-person --data-root ../shared/data/ccp \
        --num-images 50 --json /tmp/prompt_headroom_ccp_person.json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from alignsam_gym import __version__
from alignsam_gym.atomic import write_json
from alignsam_gym.heuristics import HEURISTICS
from policies.benchmarks.machine import machine, source_revision
from policies.benchmarks.statistics import hierarchical_bootstrap_ci
from policies.runs import evaluate, load_srm_weights

RULES = ("srm_greedy", "disagree", "mix", "srm_lookahead", "oracle")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--srm", required=True, help="a run's srm.pt: the SRM that labels every prompt")
    parser.add_argument("--task", default="ccp-person")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--num-images", type=int, default=50, help="the run's few-shot subset size (val: the rest)")
    parser.add_argument("--subset-seed", type=int, default=0, help="the run's subset seed")
    parser.add_argument("--images", type=int, default=None, help="a fixed sample of N images (default: every one)")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=HEURISTICS)
    parser.add_argument("--decoder", default="v2", choices=["v1", "v2"], help="the embedded decoder")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    env_kwargs = {"task": args.task, "split": args.split, "num_images": args.num_images,
                  "subset_seed": args.subset_seed, "init_prompts": "srm", "backend_kwargs": {"decoder": args.decoder}}
    if args.data_root:
        env_kwargs["data_root"] = args.data_root
    srm = load_srm_weights(args.srm)
    results, finals = {}, {}
    for rule in args.rules:
        result = evaluate(rule, env_kwargs, images=args.images, seed=0, srm_weights=srm, device="cpu")
        finals[rule] = np.array([[e["final_iou"] for e in result.pop("episodes")]])
        results[rule] = {key: result[key] for key in ("miou", "foreground_rate", "iou_curve", "auc", "noc90", "images",
                                                      "split_size", "wall_s")}
        print(f"{rule:14s} mIoU {result['miou']:.3f}  foreground rate {result['foreground_rate']:.3f}", flush=True)
    if "srm_greedy" in finals:
        for rule, values in finals.items():
            difference = values - finals["srm_greedy"]
            low, high = hierarchical_bootstrap_ci(difference)
            results[rule]["minus_srm_greedy"] = {"mean": float(difference.mean()), "low": low, "high": high}
    report = {"benchmark": "prompt_headroom", "srm": args.srm, "env": env_kwargs, "results": results,
              "package_version": __version__, "command": " ".join(["python", *sys.argv]), "source": source_revision(),
              "machine": machine()}
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
