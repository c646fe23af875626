"""How decoder v1's weight floor (``GraphParamsV1.min_weight``) was chosen: sensitivity against quality.

Without a floor, v1's edge weights span ``exp(-82)`` to 1 and its linear solve is decided by rounding where they
mix, so another CPU's kernels (last-place changes of the encoder's output) give other masks. For each floor this
plays every image of three synthetic tasks' test splits (12 each) with 15 random prompts (seeded per image) and
ground-truth labels, from the SRM's initial prompts, and reports

- ``miou``: the mean IoU after the last prompt (quality; the floor changes which regions a prompt reaches);
- ``max_change``: the largest change of any mask probability when every edge energy of the final state is
  multiplied by ``1 + 1e-7 * N(0, 1)`` (three draws per image): what another CPU's kernels can do to a mask.

    python experiments/decoder_v1_floor.py --json experiments/results/decoder_v1_floor.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

TASKS = ("synthetic-mirror", "synthetic-saliency", "synthetic-shapes")
FLOORS = (0.0, 1e-10, 1e-12, 1e-13, 1e-14, 1e-16, 1e-18)
IMAGES = 12
PROMPTS = 15
PERTURBATION = 1e-7


def measure(task: str, floor: float) -> dict[str, float]:
    """Mean final IoU and the largest probability change under perturbed energies, for one task and floor.

    :param task: an embedded task.
    :param floor: ``GraphParamsV1.min_weight`` (0: none).
    """
    import gymnasium as gym

    import alignsam_gym  # noqa: F401  (registers the env)
    from alignsam_gym.backends.base import ImageEmbedding

    env = gym.make("AlignSAM-v0", task=task, split="test", num_images=IMAGES, label_source="gt", init_prompts="srm",
                   backend_kwargs={"decoder": "v1", "graph": {"min_weight": floor}}, device="cpu")
    inner = env.unwrapped
    backend = inner.core.backend
    noise = np.random.default_rng(0)
    finals, worst = [], 0.0
    for index in range(IMAGES):
        rng = np.random.default_rng(index)
        env.reset(seed=index, options={"image_index": index})
        for _ in range(PROMPTS):
            _, _, _, _, info = env.step(int(rng.choice(np.flatnonzero(inner.action_masks()))))
        finals.append(float(info["iou"]))
        episode = inner.episode
        points, labels = episode.prompt_arrays()
        embedding = episode.embedding
        base = 1 / (1 + np.exp(-backend.decode(embedding, points, labels).astype(np.float64)))
        energy = embedding.decoder_state["edge_energy"].astype(np.float64)
        for _ in range(3):
            state = {**embedding.decoder_state, "edge_energy": (energy * (1 + PERTURBATION * noise.standard_normal(
                energy.shape))).astype(np.float32)}
            perturbed = ImageEmbedding(features=embedding.features, image_shape=embedding.image_shape,
                                       mask_shape=embedding.mask_shape, decoder_state=state)
            probability = 1 / (1 + np.exp(-backend.decode(perturbed, points, labels).astype(np.float64)))
            worst = max(worst, float(np.abs(probability - base).max()))
    env.close()
    return {"miou": float(np.mean(finals)), "max_change": worst}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the table")
    args = parser.parse_args(argv)
    rows = []
    for floor in FLOORS:
        row = {"min_weight": floor, **{task: measure(task, floor) for task in TASKS}}
        rows.append(row)
        print(f"min_weight {floor:g}: " + ", ".join(f"{t} mIoU {row[t]['miou']:.3f} max change "
                                                     f"{row[t]['max_change']:.1e}" for t in TASKS), flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    result = {"command": " ".join(["python", "experiments/decoder_v1_floor.py", *(argv or sys.argv[1:])]),
              "commit": commit, "tasks": TASKS, "images": IMAGES, "prompts": PROMPTS, "perturbation": PERTURBATION,
              "rows": rows}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
