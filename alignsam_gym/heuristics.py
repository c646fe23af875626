"""Prompting policies without learning, the benchmark's baselines, and a one-step ground-truth oracle.

- ``random``: a uniformly random cell not prompted yet (the paper's "w/o RL").
- ``centre``: the unprompted cell nearest the image centre (a centre prior: objects tend to be
  framed in the middle).
- ``srm_greedy``: the unprompted cell where the SRM is most confident of foreground on the
  current state; the SRM, with no RL, choosing the positions it would label.
- ``disagree``: the unprompted cell where the SRM's map and the current mask differ most (the SRM then
  labels it: background where the mask spills over, foreground where it falls short).
- ``mix``: disagreement plus half the SRM's confidence ``|S - 0.5|`` (prompt where the mask is wrong and
  the SRM is sure).
- ``srm_lookahead``: a model-based lookahead that reads no ground truth: the :data:`LOOKAHEAD_CANDIDATES`
  unprompted cells with the largest disagreement are tried (the env's label, all decoded in one call,
  :meth:`~alignsam_gym.envs.AlignSAMEnv.preview`), and the one whose mask agrees best with the SRM's map
  at the action points (smallest mean absolute difference) is taken.
- ``oracle``: the one-step ground-truth lookahead: every unprompted cell is tried the same way (one
  decode call) and the one whose mask has the highest true IoU is taken. It reads the ground truth: **an upper
  bound** for a greedy prompter with these labels and this segmenter, not a policy (:data:`UPPER_BOUNDS`).
  It decodes up to ``grid_size**2`` candidates per step, in one
  :meth:`~alignsam_gym.backends.base.PromptableSegmenter.decode_candidates` call (``lite`` factorises the random
  walker's system once for all of them; on CCP person, one CPU core, a step of the oracle takes about 45 ms with
  decoder v1 and 0.3 s with v2, whose per-candidate guided filter dominates; one decode per candidate took
  0.2 s and 0.6 s). :func:`oracle_action` with ``candidates=k`` tries only the ``k`` cells where the mask is most wrong:
  cheaper, but not the same bound (with SRM labels the best cell is sometimes one the mask already has right:
  on synthetic-shapes k = 16 fell up to 0.10 IoU short in a step), so the benchmark never uses it.
- ``clicker``: the standard clicker of interactive segmentation on the grid (:func:`alignsam_gym.clicks.standard_click`
  on the current mask at probability 0.5, the pixels of prompted cells excluded): the cell under the deepest point
  of the larger error region. It reads the ground truth (an upper bound, like ``oracle``) and decodes nothing, so it
  is a cheap expert to imitate; the env's labeler, not the clicker, labels its point.

Each chooses among ``env.action_masks()`` (no repeated prompts), like the evaluation of trained agents, and none
ever takes the stop action (``stop_action=True``): the rules prompt until the budget is spent. The
mask is read at the action points as the SRM's scores are (bilinearly, :func:`alignsam_gym.labels.sample_bilinear`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from alignsam_gym.clicks import standard_click
from alignsam_gym.labels import sample_bilinear
from alignsam_gym.metrics import ious

HEURISTICS = ("random", "centre", "srm_greedy", "disagree", "mix", "srm_lookahead", "oracle", "clicker")
#: baselines that read the ground truth: reported as upper bounds, never as the best heuristic to beat
UPPER_BOUNDS = ("oracle", "clicker")
#: cells ``srm_lookahead`` decodes per step (those where the SRM and the mask disagree most)
LOOKAHEAD_CANDIDATES = 8


def centre_order(grid_size: int) -> np.ndarray:
    """Action indices sorted by the distance of their cell centre to the image centre (ties by index)."""
    centres = np.arange(grid_size) + 0.5 - grid_size / 2
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    return np.lexsort((np.arange(grid_size**2), (rows**2 + cols**2).ravel()))


def mask_at_actions(env, probability: np.ndarray | None = None) -> np.ndarray:
    """``(grid_size**2,) float64``: a mask probability (default: the current mask's) at each action point,
    read as the SRM's scores are.

    :param env: the unwrapped AlignSAM env, in an episode.
    :param probability: ``(h_m, w_m)`` foreground probability.
    """
    prob = env.mask_probability if probability is None else probability
    return sample_bilinear(prob, np.asarray(env.action_points, np.float64), env.image_size)


def cell_masks(env) -> np.ndarray:
    """``(grid_size**2,) bool``: the cells not prompted yet (``env.action_masks()`` without the stop action)."""
    return env.action_masks()[:env.grid_size**2]


def _best(scores: np.ndarray, allowed: np.ndarray) -> int:
    scores = np.where(allowed, scores, -np.inf)
    return int(np.argmax(scores))


def choose(policy: str, env, rng: np.random.Generator) -> int:
    """The action of heuristic ``policy`` for the unwrapped AlignSAM env ``env`` in its current state.

    :param policy: one of :data:`HEURISTICS`.
    :param env: the unwrapped env (``gym.make(...).unwrapped``), in an episode.
    :param rng: the generator of ``random``'s draws.
    """
    allowed = cell_masks(env)
    if not allowed.any():
        raise RuntimeError("every cell is prompted already; max_prompts exceeds the grid")
    if policy == "random":
        return int(rng.choice(np.flatnonzero(allowed)))
    if policy == "centre":
        order = centre_order(env.grid_size)
        return int(order[allowed[order]][0])
    if policy not in HEURISTICS:
        raise ValueError(f"unknown heuristic policy {policy!r}; expected one of {list(HEURISTICS)}")
    srm = env.srm_scores().astype(np.float64)
    if policy == "srm_greedy":
        return _best(srm, allowed)
    disagreement = np.abs(srm - mask_at_actions(env))
    if policy == "disagree":
        return _best(disagreement, allowed)
    if policy == "mix":
        return _best(disagreement + 0.5 * np.abs(srm - 0.5), allowed)
    if policy == "srm_lookahead":
        candidates = _most(disagreement, allowed, LOOKAHEAD_CANDIDATES)
        _, logits = env.preview(candidates)
        misfit = [np.mean(np.abs(mask_at_actions(env, expit(m.astype(np.float64))) - srm)) for m in logits]
        return int(candidates[int(np.argmin(misfit))])
    if policy == "clicker":
        return clicker_action(env)
    return oracle_action(env)


def _most(scores: np.ndarray, allowed: np.ndarray, count: int | None) -> np.ndarray:
    """The ``count`` allowed actions with the highest scores (ties by index; all allowed ones when None)."""
    order = np.argsort(-np.where(allowed, scores, -np.inf), kind="stable")
    return order[:int(allowed.sum()) if count is None else min(count, int(allowed.sum()))]


def oracle_action(env, candidates: int | None = None) -> int:
    """The ``oracle``'s action: of the ``candidates`` unprompted cells where the current mask is most wrong
    (None: every unprompted cell), the one whose decoded mask has the highest true IoU.

    :param env: the unwrapped env, in an episode (its ground truth is read: an upper bound, not a policy).
    """
    cells, ious = oracle_values(env, candidates)
    return int(cells[int(np.argmax(ious))])


def oracle_values(env, candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What the ``oracle`` compares: the cells it tries (see :func:`oracle_action`; None: every unprompted cell, in
    index order) and the true IoU of the mask each would give, ``((K,) int64, (K,) float64)``."""
    allowed = cell_masks(env)
    truth, ignore = env.target_mask, env.target_ignore
    if candidates is None:
        cells = np.flatnonzero(allowed)  # the full search, in index order (ties go to the lowest index)
    else:
        cells = _most(np.abs(mask_at_actions(env, truth.astype(np.float64)) - mask_at_actions(env)), allowed,
                      candidates)
    _, logits = env.preview(cells)
    return cells, ious(logits > 0, truth, ignore)


def cell_of_pixels(shape: tuple[int, int], grid_size: int) -> np.ndarray:
    """``(H, W) int64``: the action (grid cell, row-major) each pixel of an ``(H, W)`` map lies in."""
    rows = np.arange(shape[0]) * grid_size // shape[0]
    cols = np.arange(shape[1]) * grid_size // shape[1]
    return rows[:, None] * grid_size + cols[None, :]


def clicker_action(env) -> int:
    """The ``clicker``'s action: the unprompted cell under the standard clicker's next click on the current mask
    (probability > 0.5), the pixels of prompted cells never clicked. When no error is left outside the prompted
    cells, the unprompted cell where the mask is most wrong at the action point (ties by index).

    :param env: the unwrapped env, in an episode (its ground truth is read: an upper bound, not a policy).
    """
    allowed = cell_masks(env)
    truth, ignore, probability = env.target_mask, env.target_ignore, env.mask_probability
    cells = cell_of_pixels(truth.shape, env.grid_size)
    pred, open_pixels = probability > 0.5, allowed[cells]
    errors = (pred != truth) & open_pixels
    if ignore is not None:
        errors &= ~ignore
    if errors.any():
        row, col, _ = standard_click(pred, truth, ignore, ~open_pixels)
        return int(cells[row, col])
    wrong = np.abs(mask_at_actions(env, truth.astype(np.float64)) - mask_at_actions(env))
    return _best(wrong, allowed)
