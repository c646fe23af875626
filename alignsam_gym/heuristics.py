"""Prompting policies without learning, the benchmark's baselines.

- ``random``: a uniformly random cell not prompted yet (the paper's "w/o RL").
- ``centre``: the unprompted cell nearest the image centre (a centre prior: objects tend to be
  framed in the middle).
- ``srm_greedy``: the unprompted cell where the SRM is most confident of foreground on the
  current state; the SRM, with no RL, choosing the positions it would label.

Each chooses among ``env.action_masks()`` (no repeated prompts), like the evaluation of trained agents.
"""

from __future__ import annotations

import numpy as np

HEURISTICS = ("random", "centre", "srm_greedy")


def centre_order(grid_size: int) -> np.ndarray:
    """Action indices sorted by the distance of their cell centre to the image centre (ties by index)."""
    centres = np.arange(grid_size) + 0.5 - grid_size / 2
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    return np.lexsort((np.arange(grid_size**2), (rows**2 + cols**2).ravel()))


def choose(policy: str, env, rng: np.random.Generator) -> int:
    """The action of heuristic ``policy`` for the unwrapped AlignSAM env ``env`` in its current state."""
    allowed = env.action_masks()
    if not allowed.any():
        raise RuntimeError("every cell is prompted already; max_prompts exceeds the grid")
    if policy == "random":
        return int(rng.choice(np.flatnonzero(allowed)))
    if policy == "centre":
        order = centre_order(env.grid_size)
        return int(order[allowed[order]][0])
    if policy == "srm_greedy":
        scores = env.srm_scores().astype(np.float64)
        scores[~allowed] = -np.inf
        return int(np.argmax(scores))
    raise ValueError(f"unknown heuristic policy {policy!r}; expected one of {list(HEURISTICS)}")
