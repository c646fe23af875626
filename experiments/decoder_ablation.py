"""What each step of the embedded decoder v2 buys, under the standard click protocol.

Runs ``alignsam bench clicks``'s protocol (20 clicks, full-resolution IoU, no GrabCut baseline) with the
``lite`` backend in several configurations on one dataset and writes one JSON with a summary per
configuration: v1 (package 0.1), v2 (the default), and v2 without each of its switchable steps.

    python experiments/decoder_ablation.py --dataset grabcut --data-root ../shared/data/grabcut \\
        --json experiments/results/decoder_ablation_grabcut.json
    python experiments/decoder_ablation.py --dataset ccp-person --data-root ../shared/data/ccp --limit 50 \\
        --json experiments/results/decoder_ablation_ccp_person.json
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from alignsam_gym import __version__
from alignsam_gym.atomic import write_json
from alignsam_gym.backends.lite import LiteBackend
from alignsam_gym.backends.superpixel_graph import GraphParams
from alignsam_gym.data.tasks import make_dataset
from policies.benchmarks.clicks import run_clicks_benchmark
from policies.benchmarks.machine import machine

#: name -> LiteBackend keyword arguments
CONFIGS: dict[str, dict[str, Any]] = {
    "v1 (package 0.1)": {"decoder": "v1"},
    "v2 (default)": {},
    "v2 without the guided filter": {"graph": GraphParams(refine_radius=0)},
    "v2 with one scale (800)": {"graph": GraphParams(n_segments=(800,))},
    "v2 without the first click's exponent": {"graph": GraphParams(exponent_no_background=1.0)},
    "v2 with a fixed border prior": {"graph": GraphParams(prior_per_foreground=False)},
    "v2 with v1's border prior (0.01)": {"graph": GraphParams(border_prior=0.01)},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a task that reads files: grabcut, ccp-person, ...")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--json", required=True, help="write the results here")
    args = parser.parse_args()

    dataset = make_dataset(args.dataset, split="all", data_root=args.data_root)
    rows = []
    start = time.perf_counter()
    for name, kwargs in CONFIGS.items():
        backend = LiteBackend(device="cpu", **kwargs)
        result = run_clicks_benchmark(backend, dataset, limit=args.limit, baseline=False, progress=False)
        row = {"name": name, "backend_identity": backend.identity,
               **{k: result[k] for k in ("images", "noc85", "noc90", "nof85", "nof90", "miou_at",
                                         "seconds_per_click")}}
        rows.append(row)
        at = row["miou_at"]
        print(f"{name:40s} NoC@85 {row['noc85']:5.2f} NoC@90 {row['noc90']:5.2f} NoF@90 {row['nof90']:3d} "
              f"mIoU@1 {at[0]:.3f} @5 {at[4]:.3f} @10 {at[9]:.3f} {1000 * row['seconds_per_click']:.1f} ms/click",
              flush=True)
    write_json(args.json, {"benchmark": "decoder-ablation", "dataset": args.dataset, "limit": args.limit,
                           "max_clicks": 20, "configs": rows, "wall_s": round(time.perf_counter() - start, 1),
                           "machine": machine(), "command": " ".join(["python", *sys.argv]),
                           "package_version": __version__})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
