"""The baselines of alignsam_gym.heuristics: each chooses an unprompted cell by its definition; the env's one-step
preview is what a step would give; the oracle takes the best true IoU and is marked an upper bound."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy.special import expit

from alignsam_gym.clicks import standard_click
from alignsam_gym.heuristics import (HEURISTICS, LOOKAHEAD_CANDIDATES, UPPER_BOUNDS, cell_of_pixels, choose,
                                     mask_at_actions, oracle_action)
from alignsam_gym.metrics import iou

KWARGS = {"task": "synthetic-shapes", "num_images": 2, "split": "test", "init_prompts": "srm", "max_prompts": 6,
          "device": "cpu"}


@pytest.fixture(scope="module")
def env():
    env = gym.make("AlignSAM-v0", **KWARGS)
    yield env
    env.close()


def _play(env, policy: str, steps: int = 3) -> list[int]:
    inner = env.unwrapped
    env.reset(seed=0, options={"image_index": 1})
    rng, actions = np.random.default_rng(0), []
    for _ in range(steps):
        action = choose(policy, inner, rng)
        assert inner.action_masks()[action], f"{policy} chose the prompted cell {action}"
        actions.append(action)
        env.step(action)
    return actions


@pytest.mark.parametrize("policy", HEURISTICS)
def test_every_heuristic_prompts_distinct_unprompted_cells(env, policy):
    actions = _play(env, policy)
    assert len(set(actions)) == len(actions)


def test_the_preview_is_what_a_step_gives_and_changes_nothing(env):
    inner = env.unwrapped
    env.reset(seed=0, options={"image_index": 0})
    env.step(44)
    before = inner.mask_probability
    labels, logits = inner.preview([12, 55, 87])
    assert labels.shape == (3,) and logits.shape == (3, *before.shape)
    np.testing.assert_array_equal(inner.mask_probability, before)  # the episode is untouched
    assert not inner.action_masks()[44] and inner.action_masks()[[12, 55, 87]].all()
    _, _, _, _, info = env.step(55)
    assert info["label"] == labels[1]
    assert info["iou"] == pytest.approx(iou(logits[1] > 0, inner.target_mask, inner.target_ignore), abs=1e-12)
    with pytest.raises(ValueError, match="action must be an integer"):
        inner.preview([100])
    labels, logits = inner.preview([])
    assert labels.shape == (0,) and logits.shape == (0, *before.shape)


def test_disagree_and_mix_take_the_largest_score_of_their_definition(env):
    inner = env.unwrapped
    env.reset(seed=0, options={"image_index": 1})
    env.step(0)
    srm = inner.srm_scores().astype(np.float64)
    gap = np.abs(srm - mask_at_actions(inner))
    allowed = inner.action_masks()
    rng = np.random.default_rng(0)
    for policy, scores in (("disagree", gap), ("mix", gap + 0.5 * np.abs(srm - 0.5))):
        chosen = choose(policy, inner, rng)
        assert scores[chosen] == scores[allowed].max() and allowed[chosen]


def test_the_lookahead_tries_the_most_disagreeing_cells_and_keeps_the_one_closest_to_the_srm(env):
    inner = env.unwrapped
    env.reset(seed=0, options={"image_index": 1})
    env.step(0)
    srm = inner.srm_scores().astype(np.float64)
    gap = np.where(inner.action_masks(), np.abs(srm - mask_at_actions(inner)), -np.inf)
    candidates = np.argsort(-gap, kind="stable")[:LOOKAHEAD_CANDIDATES]
    _, logits = inner.preview(candidates)
    misfit = [np.mean(np.abs(mask_at_actions(inner, expit(m.astype(np.float64))) - srm)) for m in logits]
    assert choose("srm_lookahead", inner, np.random.default_rng(0)) == candidates[int(np.argmin(misfit))]


def test_the_oracle_reaches_the_best_one_step_iou_and_is_an_upper_bound(env):
    inner = env.unwrapped
    env.reset(seed=0, options={"image_index": 1})
    env.step(0)
    allowed = np.flatnonzero(inner.action_masks())
    _, logits = inner.preview(allowed)
    best = max(iou(m > 0, inner.target_mask, inner.target_ignore) for m in logits)
    # restricted to the cells the mask gets most wrong: the best of those, never better than the full search
    error = np.abs(mask_at_actions(inner, inner.target_mask.astype(np.float64)) - mask_at_actions(inner))
    few = np.argsort(-np.where(inner.action_masks(), error, -np.inf), kind="stable")[:4]
    _, few_logits = inner.preview(few)
    few_ious = [iou(m > 0, inner.target_mask, inner.target_ignore) for m in few_logits]
    assert oracle_action(inner, candidates=4) == few[int(np.argmax(few_ious))] and max(few_ious) <= best
    _, _, _, _, info = env.step(choose("oracle", inner, np.random.default_rng(0)))
    assert info["iou"] == pytest.approx(best, abs=1e-12)
    assert UPPER_BOUNDS == ("oracle", "clicker") and set(UPPER_BOUNDS) <= set(HEURISTICS)


def test_cells_of_pixels_tile_the_map_row_major():
    cells = cell_of_pixels((6, 4), 2)
    np.testing.assert_array_equal(cells, [[0, 0, 1, 1]] * 3 + [[2, 2, 3, 3]] * 3)


def test_the_clicker_takes_the_cell_under_the_standard_click_never_a_prompted_one(env):
    inner = env.unwrapped
    env.reset(seed=0, options={"image_index": 1})
    truth, pred = inner.target_mask, inner.mask_probability > 0.5
    cells = cell_of_pixels(truth.shape, inner.grid_size)
    row, col, _ = standard_click(pred, truth, inner.target_ignore, np.zeros_like(truth))
    first = int(cells[row, col])
    assert choose("clicker", inner, np.random.default_rng(0)) == first
    # once that cell is prompted its pixels are never clicked again: the next click lies elsewhere
    env.step(first)
    truth, pred = inner.target_mask, inner.mask_probability > 0.5
    row, col, _ = standard_click(pred, truth, inner.target_ignore, cells == first)
    second = choose("clicker", inner, np.random.default_rng(0))
    assert second != first and second == int(cells[row, col]) and inner.action_masks()[second]


@pytest.mark.parametrize("policy", ["disagree", "mix", "srm_lookahead", "oracle", "clicker"])
def test_the_new_baselines_run_through_evaluate(policy):
    from policies.runs import evaluate

    result = evaluate(policy, {**KWARGS, "num_images": 2}, seed=0, device="cpu")
    assert result["images"] == 2 and 0.0 <= result["miou"] <= 1.0 and len(result["iou_curve"]) == 7


def test_unknown_heuristics_are_named(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="unknown heuristic policy 'greedy'"):
        choose("greedy", env.unwrapped, np.random.default_rng(0))


def test_the_command_line_names_every_heuristic():
    from policies.cli import POLICY_HELP

    assert all(name in POLICY_HELP for name in HEURISTICS)


def test_a_benchmark_reports_the_oracle_as_an_upper_bound_not_the_heuristic_to_beat(tmp_path):
    from policies.benchmarks.grid import run_benchmark

    config = {"name": "bounds", "tasks": ["synthetic-shapes"], "seeds": [0, 1], "test_images": 2,
              "policies": ["random", "mix", "oracle"], "max_prompts": [3], "frames_at": []}
    report = run_benchmark(config, tmp_path / "out", progress=False)
    miou = {r["policy"]: r["miou"] for r in report["results"] if r["seed"] == 0}
    assert miou["oracle"] >= max(miou["random"], miou["mix"])  # it reads the ground truth
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "`oracle`: **an upper bound, not a policy**" in markdown
    assert report["statistics"]["best_heuristic"] in ("random", "mix")
    # every record carries the prompt-efficiency metrics, and results.md their table
    for r in report["results"]:
        assert 1 <= r["noc85"] <= r["noc90"] <= 4 and r["auc"] == pytest.approx(sum(r["iou_curve"][1:]) / 3, abs=1e-3)
    assert "| task | policy | mIoU@1 | mIoU@3 | AUC | NoC@85 | NoC@90 |" in markdown


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_sample_bilinear_of_many_points_equals_each_point_alone(dtype):
    """The vectorised read (SRM scores, a lookahead's masks at the action points) is bit-identical to the scalar
    reading the reference episodes were recorded with (below, as it was), in the map's own precision, so labels at
    the 0.5 threshold do not move."""
    from alignsam_gym.labels import sample_bilinear

    def scalar(grid, point, image_size):  # the implementation before the vectorised one
        h, w = grid.shape
        x = float(point[0]) * w / image_size - 0.5
        y = float(point[1]) * h / image_size - 0.5
        x0, y0 = int(np.clip(np.floor(x), 0, w - 1)), int(np.clip(np.floor(y), 0, h - 1))
        x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
        fx, fy = float(np.clip(x - x0, 0, 1)), float(np.clip(y - y0, 0, 1))
        top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
        bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
        return float(top * (1 - fy) + bottom * fy)

    rng = np.random.default_rng(0)
    for h, w, size in [(20, 20, 256), (7, 13, 100), (1, 5, 64)]:
        grid = (rng.random((h, w)) * 3).astype(dtype)
        points = np.concatenate([rng.uniform(-10, size + 10, (30, 2)), [[0.0, 0.0], [size, size]]])
        many = sample_bilinear(grid, points, size)
        assert many.shape == (len(points),) and many.dtype == np.float64
        alone = [sample_bilinear(grid, p, size) for p in points]
        assert all(isinstance(v, float) for v in alone)
        np.testing.assert_array_equal(many, alone)
        np.testing.assert_array_equal(many, [scalar(grid, p, size) for p in points])
    grid = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    assert sample_bilinear(grid, np.array([32.0, 32.0]), 64) == 1.5  # the centre: the mean of the four cells
    assert sample_bilinear(grid, np.array([0.0, 0.0]), 64) == 0.0  # clamped at the border
