"""The policy benchmark end to end on a tiny grid, and the heuristic policies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from alignsam_gym.heuristics import centre_order, choose
from policies.benchmarks.grid import load_benchmark_config
from policies.cli import main

TINY = {
    "name": "tiny", "tasks": ["synthetic-shapes"], "seeds": [0], "policies": ["random", "centre", "srm_greedy", "ppo"],
    "label_sources": ["srm", "positive"], "max_prompts": [2, 3], "test_images": 2,
    "frames_at": [0, 1, 3],
    "train": {"total_timesteps": 32, "num_images": 1, "n_envs": 2,
              "env": {"obs_size": 10},
              "hyperparameters": {"n_steps": 16, "batch_size": 16, "n_epochs": 1,
                                  "policy_kwargs": {"features_extractor_kwargs": {"channels": 16}}}},
}
METRICS = ("miou", "foreground_rate", "f_beta", "f_adaptive", "e_measure", "mae", "ber", "ber_dataset", "iou_curve")


def test_benchmark_end_to_end_and_resume(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    assert main(["benchmark", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "results.json").read_text())
    records = report["results"]
    assert len(records) == 4 * 2 * 2
    for r in records:
        assert all(k in r for k in METRICS) and 0 <= r["miou"] <= 1 and 0 <= r["foreground_rate"] <= 1
        assert len(r["iou_curve"]) == r["max_prompts"] + 1 and r["backend"] == "lite"
        assert r["images"] == r["split_size"] == 2 and r["split"] == "test"  # the whole test split, once each
        assert r["checkpoints"]["srm"] is not None and r["srm"] == "ppo"  # the heuristics use the PPO run's SRM
    # one row per episode beside results.json, agreeing with the records' means
    rows = pd.read_parquet(out / "results_episodes.parquet")
    assert len(rows) == 2 * len(records)
    for r in records:
        mine = rows[(rows.policy == r["policy"]) & (rows.label_source == r["label_source"])
                    & (rows.max_prompts == r["max_prompts"])]
        assert sorted(mine.image_index) == [0, 1] and set(mine.image_id) == {"synthetic-shapes/test/0000",
                                                                             "synthetic-shapes/test/0001"}
        assert mine.final_iou.mean() == pytest.approx(r["miou"])
        assert np.mean(np.stack(mine.iou.to_list()), axis=0) == pytest.approx(r["iou_curve"], abs=1e-4)
        assert all(len(a) == r["max_prompts"] for a in mine.actions)
    ppo = next(r for r in records if r["policy"] == "ppo")
    assert ppo["checkpoints"]["model"] is not None and ppo["package_version"]
    md = (out / "results.md").read_text()
    assert "Backend `lite`, label source `srm`" in md and "not comparable with the paper's SAM numbers" in md
    assert "mIoU by label source" in md and "mIoU by prompt budget" in md
    assert "## Findings" in md and "`synthetic-shapes`, `ppo`: " in md  # a plain sentence per learned policy
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"iou_vs_prompts_synthetic-shapes.png", "foreground_rate.png", "frames_synthetic-shapes.jpg"} <= plots
    capsys.readouterr()
    # rerunning resumes: nothing is evaluated or trained again
    assert main(["benchmark", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["results"] == records
    assert len(pd.read_parquet(out / "results_episodes.parquet")) == len(rows)  # not duplicated
    config.write_text(yaml.safe_dump({**TINY, "images": 1}))
    assert main(["benchmark", "--config", str(config), "--out", str(out), "--quiet"]) == 2
    assert "holds a benchmark of another config" in capsys.readouterr().err
    assert yaml.safe_load((out / "config.yaml").read_text())["images"] is None  # the record of the run stays


def test_a_benchmark_is_not_resumed_with_another_backend(tmp_path, capsys):
    """Records computed with one decoder are never mixed with another's: a results file records the backend
    identity; one from before identities were recorded (``lite`` then meant decoder v1) resumes only with v1."""
    heuristics = {**TINY, "policies": ["random"], "label_sources": ["srm"], "max_prompts": [2],
                  "test_images": 1}
    config, out = tmp_path / "tiny.yaml", tmp_path / "out"
    config.write_text(yaml.safe_dump(heuristics))
    assert main(["benchmark", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["backend_identity"].startswith("lite-v2/")
    legacy = {"config": report["config"], "results": []}  # a file written before identities were recorded
    (out / "results.json").write_text(json.dumps(legacy))
    capsys.readouterr()
    assert main(["benchmark", "--config", str(config), "--out", str(out), "--quiet"]) == 2
    assert "was computed with backend lite-v1/" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text()) == legacy  # untouched
    pinned = {**heuristics, "backend_kwargs": {"decoder": "v1"}}
    config.write_text(yaml.safe_dump(pinned))
    (out / "results.json").write_text(json.dumps({**legacy, "config": {**legacy["config"], **pinned}}))
    assert main(["benchmark", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["backend_identity"].startswith("lite-v1/")


def test_bad_benchmark_configs_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "policies": ["random", "telepathy"]}))
    with pytest.raises(ValueError, match=r"bad\.yaml: policy 'telepathy' is neither"):
        load_benchmark_config(path)
    path.write_text(yaml.safe_dump({**TINY, "seed": 3}))
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown config keys \['seed'\]"):
        load_benchmark_config(path)
    path.write_text(yaml.safe_dump({**TINY, "env": {"max_prompt": 3}}))  # a misspelt env argument, caught on load
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown env keys \['max_prompt'\]"):
        load_benchmark_config(path)
    path.write_text(yaml.safe_dump({**TINY, "train": {**TINY.get("train", {}), "env": {"obs_size": 0}}}))
    with pytest.raises(ValueError, match=r"bad\.yaml: env: obs_size must be an integer >= 1, got 0"):
        load_benchmark_config(path)
    path.write_text(yaml.safe_dump({**TINY, "tasks": ["coco-cat"]}))
    with pytest.raises(ValueError, match="unknown task 'coco-cat'"):
        load_benchmark_config(path)
    path.write_text(yaml.safe_dump({**TINY, "split": "train"}))
    with pytest.raises(ValueError, match=r"bad\.yaml: split must be 'test' .* or 'val'"):
        load_benchmark_config(path)


def test_a_validation_benchmark_clones_an_agent_and_never_reads_the_test_split(tmp_path):
    """split: val plays the validation images (the training images outside the few-shot subset); train.init
    reaches the run, total_timesteps 0 is imitation alone, and the record carries the imitation phase."""
    from policies.benchmarks.grid import run_benchmark

    config = {"name": "val", "tasks": ["synthetic-shapes"], "seeds": [0], "policies": ["maskable_ppo", "srm_greedy"],
              "split": "val", "images": 2, "max_prompts": [3], "frames_at": [],
              "train": {"total_timesteps": 0, "num_images": 3, "n_envs": 2, "env": {"obs_size": 10, "max_prompts": 3},
                        "init": {"imitation": {"expert": "clicker", "demonstration_states": 8, "epochs": 1}},
                        "hyperparameters": {"policy_kwargs": {"features_extractor_kwargs": {"channels": 8}}}}}
    report = run_benchmark(config, tmp_path, progress=False)
    assert {r["split"] for r in report["results"]} == {"val"} and all(r["images"] == 2 for r in report["results"])
    agent = next(r for r in report["results"] if r["policy"] == "maskable_ppo")
    assert agent["imitation"]["expert"]["name"] == "clicker" and agent["imitation"]["states"] == 8
    markdown = (tmp_path / "results.md").read_text()
    assert "validation images, each once" in markdown and "## Imitation" in markdown


def test_centre_order_starts_in_the_middle():
    order = centre_order(10)
    assert set(order[:4]) == {44, 45, 54, 55} and sorted(order) == list(range(100))
    assert set(order[-4:]) == {0, 9, 90, 99}


def test_heuristics_choose_unprompted_cells(make_env):
    env = make_env(task="synthetic-saliency", max_prompts=5)
    env.reset(seed=0)
    inner = env.unwrapped
    rng = np.random.default_rng(0)
    assert choose("centre", inner, rng) == 44
    env.step(44)
    assert choose("centre", inner, rng) in (45, 54, 55)
    scores = inner.srm_scores()
    best = choose("srm_greedy", inner, rng)
    assert best != 44 and scores[best] == scores[inner.action_masks()].max()
    for _ in range(20):
        assert inner.action_masks()[choose("random", inner, rng)]
    with pytest.raises(ValueError, match="unknown heuristic policy 'teacher'"):
        choose("teacher", inner, rng)


def test_voc_tasks_get_a_class_mean_table():
    from policies.benchmarks.grid import resolve_benchmark_config
    from policies.benchmarks.report import markdown

    config = resolve_benchmark_config({"tasks": ["voc-cat", "voc-dog"], "seeds": [0, 1], "policies": ["random"]})
    base = {"policy": "random", "label_source": "srm", "branch": "default", "max_prompts": 15, "foreground_rate": 0.5,
            "f_beta": 0.5, "f_adaptive": 0.5, "e_measure": 0.5, "mae": 0.1, "ber_dataset": 10.0, "iou_curve": [0.1]}
    records = [{**base, "task": "voc-cat", "seed": 0, "miou": 0.2}, {**base, "task": "voc-cat", "seed": 1, "miou": 0.4},
               {**base, "task": "voc-dog", "seed": 0, "miou": 0.9}]
    md = markdown({"config": config, "results": records})
    assert "| random | 0.600 | 2 |" in md  # mean of the class means 0.3 and 0.9


def test_grid_statistics_curves_and_per_algorithm_hyperparameters(tmp_path):
    """Two seeds: the report carries interval estimates, the trained records their learning curves, and each
    algorithm its own hyper-parameters."""
    from policies.benchmarks.grid import run_benchmark

    config = {"name": "stats", "tasks": ["synthetic-shapes"], "seeds": [0, 1], "policies": ["random", "ppo", "a2c"],
              "test_images": 2, "max_prompts": [4], "frames_at": [],
              "train": {"total_timesteps": 32, "num_images": 2, "n_envs": 2, "eval_every": 16,
                        "eval_images": 1, "env": {"obs_size": 10, "max_prompts": 4},
                        "hyperparameters": {"ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
                                            "a2c": {"n_steps": 4}}}}
    report = run_benchmark(config, tmp_path, progress=False)
    stats = report["statistics"]
    assert set(stats["miou"]) == {"random", "ppo", "a2c"} and stats["best_heuristic"] == "random"
    for row in stats["miou"].values():
        assert row["iqm_low"] <= row["iqm"] <= row["iqm_high"] and row["runs"] == 2 and row["tasks"] == 1
    assert set(stats["probability_of_improvement"]) == {"ppo", "a2c"}
    # random ran under each agent's SRM; each agent is paired with it under its own, on both seeds' images
    assert sorted((r["srm"], r["seed"]) for r in report["results"] if r["policy"] == "random") == [
        ("a2c", 0), ("a2c", 1), ("ppo", 0), ("ppo", 1)]
    paired = {(c["agent"], c["baseline"], c["metric"]): c for c in stats["paired"]}
    assert set(paired) == {(a, "random", m) for a in ("ppo", "a2c") for m in ("miou", "foreground_rate")}
    for c in paired.values():
        assert c["seeds"] == 2 and c["images"] == 2 and c["low"] <= c["difference"] <= c["high"]
        assert c["difference"] == pytest.approx(c["agent_mean"] - c["baseline_mean"]) and 0 <= c["p_value"] <= 1
    trained = [r for r in report["results"] if r["policy"] != "random"]
    assert all([p["env_steps"] for p in r["curve"]] == [0, 16, 32] for r in trained)
    from policies.runs import RunFolder

    assert RunFolder(tmp_path / "runs" / "synthetic-shapes-a2c-seed0").read_config().hyperparameters == {"n_steps": 4}
    assert (tmp_path / "plots" / "performance_profile.png").is_file()
    assert (tmp_path / "plots" / "learning_curves_synthetic-shapes.png").is_file()
    assert "## Aggregate statistics" in (tmp_path / "results.md").read_text()
    assert "## Paired comparisons" in (tmp_path / "results.md").read_text()


def test_upper_bounds_run_under_the_first_trained_srm_unless_asked(tmp_path):
    """The oracle is the normaliser, never a paired baseline: by default it runs once per task and seed."""
    from policies.benchmarks.grid import plan_trials, resolve_benchmark_config

    raw = {"tasks": ["synthetic-shapes"], "seeds": [0, 1], "policies": ["random", "oracle", "ppo", "a2c"]}
    first = {(t.seed, t.algorithm): t.policies for t in plan_trials(resolve_benchmark_config(raw))}
    assert first[(0, "ppo")] == ("ppo", "random", "oracle") and first[(0, "a2c")] == ("a2c", "random")
    every = {(t.seed, t.algorithm): t.policies
             for t in plan_trials(resolve_benchmark_config({**raw, "upper_bound_srms": "all"}))}
    assert every[(1, "a2c")] == ("a2c", "random", "oracle")
    with pytest.raises(ValueError, match="upper_bound_srms must be 'first' or 'all'"):
        resolve_benchmark_config({**raw, "upper_bound_srms": "some"})


def test_paired_baselines_run_under_every_srm_the_others_under_the_first():
    """``paired_baselines`` names the heuristics every agent is paired with (run under each trained SRM); the rest
    run once per task and seed, under the first trained algorithm's SRM, like the oracle."""
    from policies.benchmarks.grid import plan_trials, resolve_benchmark_config

    raw = {"tasks": ["synthetic-shapes"], "seeds": [0], "paired_baselines": ["mix"],
           "policies": ["random", "centre", "mix", "oracle", "ppo", "a2c", "dqn"]}
    trials = {t.algorithm: t.policies for t in plan_trials(resolve_benchmark_config(raw))}
    assert trials == {"ppo": ("ppo", "random", "centre", "mix", "oracle"), "a2c": ("a2c", "mix"),
                      "dqn": ("dqn", "mix")}
    default = {t.algorithm: t.policies for t in plan_trials(resolve_benchmark_config({**raw, "paired_baselines": "all"}))}
    assert default["dqn"] == ("dqn", "random", "centre", "mix")
    named = resolve_benchmark_config({**raw, "paired_baselines": ["mix", "centre", "random"]})
    assert named["paired_baselines"] == "all"  # every heuristic named: the same grid as "all"
    for bad in (["oracle"], ["disagree"], "some"):
        with pytest.raises(ValueError, match="paired_baselines must be 'all' or a list of the config's heuristics"):
            resolve_benchmark_config({**raw, "paired_baselines": bad})


@pytest.mark.parametrize("count", [3, 10, 12, 20])
def test_every_policy_of_a_report_gets_a_style_of_its_own(count):
    from policies.benchmarks.report import policy_styles

    names = [f"policy{i}" for i in range(count)]
    styles = policy_styles(names)
    assert list(styles) == names
    assert len({(tuple(s["color"]), s["linestyle"]) for s in styles.values()}) == count  # none look alike
    assert policy_styles(names[:2]) == {n: styles[n] for n in names[:2]}  # a policy keeps its style in a subset
