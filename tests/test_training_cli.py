"""alignsam train / evaluate / quickstart end to end, on tiny settings."""

from __future__ import annotations

import json

import pytest
import yaml

from policies.cli import main

TINY = {"algorithm": "ppo", "seed": 0, "total_timesteps": 64, "n_envs": 2,
        "env": {"task": "synthetic-shapes", "num_images": 1, "obs_size": 10, "max_prompts": 4},
        "hyperparameters": {"n_steps": 16, "batch_size": 16, "n_epochs": 1,
                            "policy_kwargs": {"features_extractor_kwargs": {"channels": 16}}}}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_train_resume_and_evaluate(tmp_path, config_file, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(config_file), "--out", str(run), "--no-progress"]) == 0
    assert {"model.zip", "srm.pt", "config.yaml", "tb", "train_images.txt"} <= {p.name for p in run.iterdir()}
    assert (run / "train_images.txt").read_text().split() == ["synthetic-shapes/train/0000"]
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["srm"]["enabled"] is True and resolved["vec_env"] == "dummy"  # defaults filled in
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    assert main(["train", "--config", str(config_file), "--out", str(run), "--no-progress"]) == 2
    assert "already holds a trained run" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--no-progress", "--timesteps", "128"]) == 0
    from stable_baselines3 import PPO

    assert PPO.load(run / "model.zip", device="cpu").num_timesteps == 128

    for policy in (str(run), "random"):
        out = tmp_path / f"eval-{len(policy)}.json"
        assert main(["evaluate", policy, "--task", "synthetic-shapes", "--num-images", "3", "--images", "2",
                     "--obs-size", "10", "--json", str(out)]) == 0
        result = json.loads(out.read_text())
        assert 0 <= result["foreground_rate"] <= 1 and 0 <= result["miou"] <= 1
        assert len(result["iou_curve"]) == 16 and result["images"] == 2 and result["split"] == "test"
        # one row per episode: every image of the sample once, each with its steps and the IoU after them
        assert len(result["episodes"]) == 2 and len({e["image_index"] for e in result["episodes"]}) == 2
        assert all(len(e["actions"]) == 15 and len(e["iou"]) == 16 for e in result["episodes"])


def test_evaluate_observes_as_the_run_was_trained(tmp_path):
    """A run trained on another observation (E and M as channels, plus the SRM's map) is evaluated on that
    observation without the user repeating the env options: the run's config supplies them."""
    config = {**TINY, "env": {**TINY["env"], "observation": "channels", "observe_srm": True},
              "hyperparameters": {**TINY["hyperparameters"], "policy_kwargs": {
                  "cell_hidden": 8, "features_extractor_kwargs": {"channels": 16, "passthrough": 2}}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run, out = tmp_path / "run", tmp_path / "eval.json"
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(run), "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--task", "synthetic-shapes", "--num-images", "3", "--images", "2",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["images"] == 2


def test_bad_config_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"algorithm": "ppo", "learning_rate": 1}))
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "unknown config keys ['learning_rate']" in capsys.readouterr().err
    bad.write_text("- a list")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "bad.yaml: a run config is a YAML mapping" in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({"env": {"task": "synthetic-shapes", "reward": "iou"}}))  # the env's check, on load
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "bad.yaml: env: reward must be one of ['foreground', 'iou_gain', 'foreground+iou'], got 'iou'" \
        in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was built


def test_quickstart_writes_the_report(tmp_path):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--tasks", "synthetic-shapes", "--seeds", "0", "--timesteps", "64",
                 "--images", "2", "--num-images", "1", "--test-images", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [(r["task"], r["policy"], r["seed"]) for r in report["results"]] == [
        ("synthetic-shapes", "ppo", 0), ("synthetic-shapes", "random", 0)]
    for record in report["results"]:
        assert 0 <= record["foreground_rate"] <= 1 and 0 <= record["miou"] <= 1
        assert record["backend"] == "lite" and record["label_source"] == "srm" and len(record["iou_curve"]) == 16
        assert record["srm_branch"] == "implicit" and record["images"] == 2 and record["split_size"] == 3
    assert "synthetic-shapes" in (out / "report.md").read_text()


def test_training_logs_episode_images_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from policies.runs import train

    config = {**TINY, "total_timesteps": 64, "log_frames_every": 32,
              "env": {**TINY["env"], "num_images": 2}}
    run = train(config, tmp_path / "run", verbose=False)
    images, scalars = set(), set()
    for events in run.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0})
        acc.Reload()
        images.update(acc.Tags()["images"])
        scalars.update(acc.Tags()["scalars"])
        if "episode/frames" in acc.Tags()["images"]:
            frames = acc.Images("episode/frames")
    assert {"episode/frames", "episode/iou_curve"} <= images, images
    assert "episode/final_iou" in scalars and {"srm/loss", "srm/iou"} <= scalars
    # max_prompts 4: the frames after 0, 1 and 3 prompts, each 800x400 (image | ground truth)
    assert len(frames) == 2 and frames[0].width == 800 and frames[0].height == 3 * 400


def test_record_a_trained_run_as_a_minari_dataset(tmp_path, config_file):
    """`alignsam record` plays a trained run (observations as it was trained: full, obs_size 10) and Minari
    reads the dataset back; evaluate also takes the run's observation settings without being told."""
    minari = pytest.importorskip("minari")
    run = tmp_path / "run"
    assert main(["train", "--config", str(config_file), "--out", str(run), "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--task", "synthetic-shapes", "--num-images", "1", "--images", "1"]) == 0
    assert main(["record", "--policy", str(run), "--task", "synthetic-shapes", "--num-images", "1", "--episodes", "2",
                 "--dataset-id", "alignsam/synthetic-shapes/ppo-v0", "--datasets-path", str(tmp_path / "minari")]) == 0
    dataset = minari.load_dataset("alignsam/synthetic-shapes/ppo-v0")
    assert dataset.total_episodes == 2 and dataset.total_steps == 2 * 15
    episode = next(iter(dataset.iterate_episodes([0])))
    assert episode.observations.shape == (16, 432, 10, 10)


def test_the_preset_flag_selects_the_papers_schedule(tmp_path, capsys):
    """``--preset paper`` puts the paper's settings under the config's own keys (here TINY's n_steps and
    batch_size), and a resumed run keeps the preset it was trained with."""
    config = {**TINY, "total_timesteps": 16}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(run), "--no-progress",
                 "--preset", "paper"]) == 0
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["preset"] == "paper" and resolved["env"]["budget_end"] == "truncated"
    assert resolved["hyperparameters"]["n_steps"] == 16 and resolved["hyperparameters"]["n_epochs"] == 1
    assert resolved["hyperparameters"]["gae_lambda"] == 1.0 and resolved["hyperparameters"]["ent_coef"] == 0.0
    assert main(["train", "--resume", str(run), "--preset", "paper"]) == 2
    assert "drop --config, --out and --preset" in capsys.readouterr().err
