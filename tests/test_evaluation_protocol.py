"""The benchmark protocol: validation splits, every image once, per-episode rows, paired statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alignsam_gym.data.paired import few_shot_indices, split_items
from alignsam_gym.data.tasks import make_dataset
from policies.benchmarks.comparisons import normalisers, paired_differences, score_matrices
from policies.benchmarks.episode_table import RECORD_KEYS, EpisodeTable
from policies.benchmarks.statistics import hierarchical_bootstrap_ci, paired_test
from policies.runs.evaluation import episode_seed, evaluate, evaluation_images

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILE_TASKS = [("ccp-person", "ccp", 200, 100), ("grabcut", "grabcut", 33, 17), ("duts-saliency", "duts", 300, 500)]
ENV = {"task": "synthetic-shapes", "split": "test", "num_images": 5, "max_prompts": 3, "device": "cpu"}


# ---- the validation split -------------------------------------------------------------------------------


@pytest.mark.parametrize("task, folder, train_size, test_size", FILE_TASKS)
def test_val_is_the_training_images_outside_the_few_shot_subset(task, folder, train_size, test_size):
    root = SHARED / folder
    if not root.is_dir():
        pytest.skip(f"{root} is not here")
    train, val, test = (make_dataset(task, split, 20, root, seed=3).names for split in ("train", "val", "test"))
    assert len(train) == 20 and len(val) == train_size - 20 and len(test) == test_size
    assert not set(train) & set(val) and not set(val) & set(test) and not set(train) & set(test)
    assert val == make_dataset(task, "val", 20, root, seed=3).names  # fixed
    assert set(val) != set(make_dataset(task, "val", 20, root, seed=4).names)  # the complement of its subset


@pytest.mark.parametrize("task", ["synthetic-blur", "synthetic-shapes"])
def test_synthetic_val_has_generator_seeds_of_its_own(task):
    splits = {split: make_dataset(task, split, 3) for split in ("train", "val", "test")}
    images = {split: [d[i].image.tobytes() for i in range(3)] for split, d in splits.items()}
    assert not set(images["val"]) & (set(images["train"]) | set(images["test"]))
    assert images["val"] == [make_dataset(task, "val", 3, seed=0)[i].image.tobytes() for i in range(3)]


def test_val_refuses_a_subset_that_takes_every_training_image():
    assert split_items(list("abcde"), "val", 3, seed=0) == [x for x in "abcde" if x not in
                                                            split_items(list("abcde"), "train", 3, seed=0)]
    with pytest.raises(ValueError, match="num_images=5 takes all 5 of them"):
        split_items(list("abcde"), "val", 5, seed=0)
    with pytest.raises(ValueError, match="split must be one of"):
        split_items(list("abcde"), "validation", 3, seed=0)


def test_learning_curves_read_the_validation_split():
    from policies.runs import RunConfig
    from policies.runs.training import evaluation_env

    config = RunConfig.from_dict({"env": {"task": "ccp-person", "num_images": 20, "subset_seed": 2}})
    env = evaluation_env(config)
    assert env["split"] == "val" and env["num_images"] == 20 and env["subset_seed"] == 2


def test_old_run_configs_with_eval_episodes_still_load():
    from policies.runs import RunConfig

    with pytest.warns(FutureWarning, match="eval_episodes is gone"):
        assert RunConfig.from_dict({"eval_episodes": 5, "eval_images": 7}).eval_images == 7


# ---- every image once -----------------------------------------------------------------------------------


def test_evaluation_images_are_the_split_or_a_fixed_sample_without_replacement():
    assert evaluation_images(7) == list(range(7)) and evaluation_images(7, 50) == list(range(7))
    sample = evaluation_images(100, 30, sample_seed=0)
    assert len(set(sample)) == 30 and sample == sorted(sample) and sample == evaluation_images(100, 30)
    assert sample == few_shot_indices(100, 30, 0)
    with pytest.raises(ValueError, match="images must be a positive integer"):
        evaluation_images(10, 0)
    assert episode_seed(0, 3) == episode_seed(0, 3) != episode_seed(1, 3) != episode_seed(0, 4)


def test_an_evaluation_plays_each_image_once_with_rows_that_agree_with_its_means():
    result = evaluate("srm_greedy", ENV, seed=0)
    rows = result["episodes"]
    assert [r["image_index"] for r in rows] == [0, 1, 2, 3, 4] and result["images"] == result["split_size"] == 5
    assert [r["image_id"] for r in rows] == [f"synthetic-shapes/test/{i:04d}" for i in range(5)]
    assert result["miou"] == pytest.approx(np.mean([r["final_iou"] for r in rows]))
    assert result["iou_curve"] == pytest.approx(np.mean([r["iou"] for r in rows], axis=0), abs=1e-4)
    assert result["foreground_rate"] == pytest.approx(np.mean([h for r in rows for h in r["is_foreground"]]))
    for r in rows:
        assert len(r["actions"]) == len(set(r["actions"])) == 3 and len(r["iou"]) == 4
        assert r["rewards"] == [1.0 if h else -1.0 for h in r["is_foreground"]] and r["return"] == sum(r["rewards"])
        assert r["final_iou"] == pytest.approx(r["iou"][-1], abs=1e-6)


def test_every_policy_starts_each_image_from_the_same_state_whatever_came_before():
    """Paired episodes: two policies with one seed face the same initial prompts per image, and a stochastic
    policy's episode on an image does not depend on which images were played before it."""
    env = {**ENV, "init_prompts": "random_gt"}
    first, second = (evaluate(p, env, seed=4)["episodes"] for p in ("centre", "random"))
    assert [r["iou"][0] for r in first] == [r["iou"][0] for r in second]
    sample = evaluate("random", env, seed=4, images=2, sample_seed=1)["episodes"]
    by_image = {r["image_index"]: r for r in second}
    for row in sample:
        assert row["actions"] == by_image[row["image_index"]]["actions"]
    other_seed = evaluate("random", env, seed=5)["episodes"]
    assert [r["actions"] for r in other_seed] != [r["actions"] for r in second]


# ---- per-episode rows -----------------------------------------------------------------------------------


def _rows(policy: str, srm: str, seed: int, values: list[float]) -> list[dict]:
    key = {"task": "t", "policy": policy, "srm": srm, "label_source": "srm", "branch": "default", "max_prompts": 2,
           "seed": seed}
    return EpisodeTable.rows_of(key, [
        {"image_index": i, "image_id": f"img{i}", "actions": [i, i + 1], "labels": [1, 0], "rewards": [1.0, -1.0],
         "is_foreground": [True, False], "iou": [0.0, 0.5, v], "foreground_rate": 0.5, "return": 0.0, "auc": 0.5,
         "noc85": 3, "noc90": 3, "final_iou": v, "f_beta": v, "f_adaptive": v, "e_measure": v, "mae": 0.1, "ber": 5.0}
        for i, v in enumerate(values)])


def test_the_episode_table_round_trips_and_keeps_only_the_rows_of_given_records(tmp_path):
    table = EpisodeTable(tmp_path / "results_episodes.parquet")
    assert table.read() == []
    rows = _rows("ppo", "ppo", 0, [0.7, 0.8]) + _rows("random", "ppo", 0, [0.6, 0.9])
    table.write(rows)
    back = table.read()
    assert len(back) == 4 and back[0]["actions"] == [0, 1] and back[3]["final_iou"] == pytest.approx(0.9)
    assert back[0]["iou"] == pytest.approx([0.0, 0.5, 0.7])
    assert [p.name for p in tmp_path.iterdir()] == ["results_episodes.parquet"]  # no temporary file left
    record = {k: rows[0][k] for k in RECORD_KEYS}
    assert len(table.read([record])) == 2
    (tmp_path / "results_episodes.parquet").write_bytes(b"PAR1 torn")
    with pytest.raises(ValueError, match="results_episodes.parquet: unreadable per-episode table"):
        table.read()


# ---- paired statistics ----------------------------------------------------------------------------------


def test_paired_differences_pair_image_by_image_under_the_agent_srm():
    rows = (_rows("ppo", "ppo", 0, [0.7, 0.8]) + _rows("random", "ppo", 0, [0.6, 0.9])
            + _rows("random", "a2c", 0, [0.0, 0.0]))  # random under another SRM is not ppo's baseline
    seeds, mine, theirs = paired_differences(rows, "t", "ppo", "random")
    assert seeds == [0] and mine.tolist() == [[0.7, 0.8]] and theirs.tolist() == [[0.6, 0.9]]
    assert paired_differences(rows, "t", "ppo", "centre") is None
    broken = _rows("ppo", "ppo", 0, [0.7, 0.8]) + _rows("random", "ppo", 0, [0.6])
    with pytest.raises(ValueError, match="played different images"):
        paired_differences(broken, "t", "ppo", "random")


def test_hierarchical_bootstrap_interval():
    assert hierarchical_bootstrap_ci(np.full((3, 10), 0.25)) == pytest.approx((0.25, 0.25))
    rng = np.random.default_rng(0)
    values = 0.1 + rng.normal(0, 0.2, size=(5, 200))
    low, high = hierarchical_bootstrap_ci(values, rng=np.random.default_rng(1))
    assert low < values.mean() < high and 0.02 < high - low < 0.12  # about 4 standard errors wide
    # an image effect shared by every seed (a hard image is hard for each SRM) is not averaged away
    shared = np.tile(rng.normal(0, 0.3, size=200), (5, 1))
    narrow = hierarchical_bootstrap_ci(shared + rng.normal(0, 0.01, size=(5, 200)), rng=np.random.default_rng(1))
    assert narrow[1] - narrow[0] > 3.92 * 0.3 / np.sqrt(200) * 0.8
    # seed-to-seed variation widens it: resampling the seeds is part of the uncertainty
    shifted = values + np.array([[-0.2], [-0.1], [0.0], [0.1], [0.2]])
    wide = hierarchical_bootstrap_ci(shifted, rng=np.random.default_rng(1))
    assert wide[1] - wide[0] > 2 * (high - low)
    assert hierarchical_bootstrap_ci(values, rng=np.random.default_rng(1)) == (low, high)  # reproducible
    with pytest.raises(ValueError, match="non-empty"):
        hierarchical_bootstrap_ci(np.zeros((0, 3)))


def test_paired_test_finds_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, size=(3, 100))
    assert paired_test(noise) > 0.05
    assert paired_test(noise + 0.05) < 1e-3
    assert paired_test(np.zeros((2, 10))) == 1.0


def test_normalised_scores_put_random_at_zero_and_the_oracle_at_one():
    base = {"label_source": "srm", "branch": "default", "max_prompts": 2, "srm": "ppo"}
    records = [{**base, "task": t, "policy": p, "seed": s, "miou": v}
               for t, scores in (("a", {"random": 0.2, "oracle": 0.6, "ppo": 0.5}),
                                 ("b", {"random": 0.8, "oracle": 0.9, "ppo": 0.8}))
               for p, v in scores.items() for s in (0, 1)]
    scale = normalisers(records)
    assert scale == {"a": {"random": 0.2, "oracle": 0.6}, "b": {"random": 0.8, "oracle": 0.9}}
    tasks, scores = score_matrices(records, "miou", scale)
    assert tasks == ["a", "b"]
    np.testing.assert_allclose(scores["random"], 0.0, atol=1e-12)
    np.testing.assert_allclose(scores["oracle"], 1.0)
    np.testing.assert_allclose(scores["ppo"], [[0.75, 0.0], [0.75, 0.0]], atol=1e-12)


def test_the_best_heuristic_is_chosen_on_the_normalised_score():
    """Raw mIoU lets the task with the widest range decide (here "wide": centre leads by 0.10 of a 0.6 range,
    mix by 0.05 of 0.1 on "narrow"); normalised, mix leads (0.5 against 1/6 ahead)."""
    from policies.benchmarks.comparisons import benchmark_statistics

    base = {"label_source": "srm", "branch": "default", "max_prompts": 2, "srm": "ppo", "foreground_rate": 0.5}
    scores = {"wide": {"random": 0.2, "oracle": 0.8, "centre": 0.5, "mix": 0.4, "ppo": 0.3},
              "narrow": {"random": 0.8, "oracle": 0.9, "centre": 0.8, "mix": 0.85, "ppo": 0.8}}
    records = [{**base, "task": t, "policy": p, "seed": s, "miou": v + 0.001 * s}
               for t, by_policy in scores.items() for p, v in by_policy.items() for s in (0, 1, 2)]
    config = {"label_sources": ["srm"], "branches": ["default"], "max_prompts": [2]}
    stats = benchmark_statistics(config, records, repetitions=50)
    assert np.mean([scores[t]["centre"] for t in scores]) > np.mean([scores[t]["mix"] for t in scores])
    assert stats["score"] == "normalised_miou" and stats["best_heuristic"] == "mix"
    assert "mix" not in stats["probability_of_improvement"]


def test_aggregates_take_every_heuristic_under_the_srms_all_heuristics_ran_with():
    """With paired_baselines or upper_bound_srms: first, some heuristics ran under more SRMs than others; the
    aggregates (normaliser, IQM, best heuristic) read each heuristic under the common SRMs only, agents under
    their own, and the paired comparisons keep every record."""
    from policies.benchmarks.comparisons import aggregate_records, benchmark_statistics

    base = {"label_source": "srm", "branch": "default", "max_prompts": 2}
    runs = [("random", "ppo", 0.2), ("oracle", "ppo", 0.6), ("mix", "ppo", 0.4), ("ppo", "ppo", 0.5),
            ("mix", "a2c", 0.1), ("a2c", "a2c", 0.3)]
    records = [{**base, "task": "a", "policy": p, "srm": srm, "seed": s, "miou": v + 0.01 * s,
                "foreground_rate": 0.5} for p, srm, v in runs for s in (0, 1, 2)]
    kept = aggregate_records(records)
    assert {(r["policy"], r["srm"]) for r in kept} == {(p, srm) for p, srm, _ in runs} - {("mix", "a2c")}
    config = {"label_sources": ["srm"], "branches": ["default"], "max_prompts": [2]}
    stats = benchmark_statistics(config, records, repetitions=50)
    assert stats["normalisation"]["a"]["random"] == pytest.approx(0.21)
    assert stats["per_task_miou"]["mix"]["a"]["mean"] == pytest.approx(0.41)  # not the mean with a2c's SRM, 0.26
    every = [r for r in records if (r["policy"], r["srm"]) != ("oracle", "ppo")]
    assert len(aggregate_records(every)) == len(every) - 3  # mix under a2c's SRM, random without: still left out
    same = [r for r in records if r["policy"] in ("mix", "ppo", "a2c")]
    assert aggregate_records(same) == same  # one heuristic: every SRM it ran with is common
