"""The SB3 plugin end to end: every preset trains, the SRM callback trains and syncs the SRM, resume."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from policies import PRESETS, SRMCallback, make_model
from policies.runs import make_training_env, resolve_config

ENV_KWARGS = {"num_images": 1, "obs_size": 10, "max_prompts": 4, "task": "synthetic-shapes"}
SHORT = {
    "ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 8, "buffer_size": 64, "batch_size": 8},
    "maskable_ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
    "recurrent_ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
}
SMALL = {"channels": 16}  # a small extractor (AlignSAMPolicy's spatial one or the vector one)


def weights(module) -> list[torch.Tensor]:
    """The tensors of a module, or of an env's SRM labeler's network."""
    module = getattr(module, "network", module)
    return [p.detach().cpu().clone() for p in module.state_dict().values()]


@pytest.mark.parametrize("algorithm", sorted(PRESETS))
def test_every_preset_trains_with_the_srm_callback(algorithm):
    env = make_vec_env("AlignSAM-v0", n_envs=2, env_kwargs=ENV_KWARGS, vec_env_cls=DummyVecEnv)
    model = make_model(algorithm, env, device="cpu", seed=0, policy_kwargs={"features_extractor_kwargs": SMALL}, **SHORT[algorithm])
    before = weights(model.policy)
    srm_before = weights(env.envs[0].unwrapped.srm)
    callback = SRMCallback(device="cpu")
    model.learn(total_timesteps=32, callback=callback)
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(model.policy)))
    assert callback.srm_steps == 16
    trained = weights(callback.srm)
    assert any(not torch.equal(a, b) for a, b in zip(srm_before, trained))
    for e in env.envs:  # every env labels with the trained weights
        assert all(torch.equal(a, b) for a, b in zip(trained, weights(e.unwrapped.srm)))


@pytest.mark.parametrize("algorithm", sorted(PRESETS))
def test_every_preset_trains_on_the_batched_env_with_compact_observations(algorithm):
    config = resolve_config({"vec_env": "batched", "n_envs": 2, "seed": 0, "env": {**ENV_KWARGS, "obs_mode": "compact"}})
    env = make_training_env(config)
    model = make_model(algorithm, env, device="cpu", seed=0, policy_kwargs={"features_extractor_kwargs": SMALL},
                       **SHORT[algorithm])
    before = weights(model.policy)
    callback = SRMCallback(device="cpu")
    model.learn(total_timesteps=32, callback=callback)
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(model.policy)))
    assert callback.srm_steps == 16
    shared = env.venv.envs[0].srm  # one SRM for the whole batch, holding the trained weights
    assert all(torch.equal(a, b) for a, b in zip(weights(callback.srm), weights(shared)))
    assert shared.version == callback.srm_steps + 1  # one load per push (and one at the start), not one per env
    buffer = model.replay_buffer if algorithm == "dqn" else model.rollout_buffer
    assert buffer.observations["mask"].shape[-2:] == (20, 20)  # masks stored, not embeddings
    assert set(buffer.observations) == {"mask", "embedding_key"}


def test_compact_observations_refuse_subprocess_workers():
    config = resolve_config({"vec_env": "subproc", "env": {**ENV_KWARGS, "obs_mode": "compact"}})
    with pytest.raises(ValueError, match="batched"):
        make_training_env(config)


@pytest.mark.parametrize("policy", ["preset", "MlpPolicy"])
def test_maskable_ppo_never_repeats_a_cell(policy):
    """The preset is the per-cell MaskableAlignSAMPolicy; SB3's MlpPolicy by name still reads the embedding through
    the plugin's extractor; both never prompt a cell twice."""
    from sb3_contrib.common.maskable.utils import get_action_masks

    from policies import MaskableAlignSAMPolicy, MaskedEmbeddingExtractor, SpatialEmbeddingExtractor
    from policies.sb3.policy import CellScores

    env = make_vec_env("AlignSAM-v0", n_envs=1, env_kwargs={**ENV_KWARGS, "max_prompts": 15})
    chosen_policy = {} if policy == "preset" else {"policy": policy}
    model = make_model("maskable_ppo", env, device="cpu", seed=0, policy_kwargs={"features_extractor_kwargs": SMALL},
                       **chosen_policy, **SHORT["maskable_ppo"])
    assert isinstance(model.policy, MaskableAlignSAMPolicy) == (policy == "preset")
    assert isinstance(model.policy.action_net, CellScores) == (policy == "preset")
    assert isinstance(model.policy.features_extractor, SpatialEmbeddingExtractor if policy == "preset"
                      else MaskedEmbeddingExtractor)
    model.learn(32)  # training samples only unprompted cells, so the masked logits are finite everywhere used
    obs = env.reset()
    chosen = []
    for _ in range(15):
        action, _ = model.predict(obs, action_masks=get_action_masks(env), deterministic=True)
        chosen.append(int(action[0]))
        obs, _, done, _ = env.step(action)
    assert len(set(chosen)) == 15 and done[0]


def test_new_weights_reach_subprocess_workers():
    # worker processes import nothing: the namespaced id imports alignsam_gym in each of them
    env = make_vec_env("alignsam_gym:AlignSAM-v0", n_envs=2, env_kwargs=ENV_KWARGS, vec_env_cls=SubprocVecEnv)
    try:
        model = make_model("a2c", env, device="cpu", seed=0, policy_kwargs={"features_extractor_kwargs": SMALL}, n_steps=4)
        callback = SRMCallback(device="cpu")
        initial = weights(env.get_attr("srm", indices=[1])[0])
        model.learn(total_timesteps=16, callback=callback)
        in_worker = weights(env.get_attr("srm", indices=[1])[0])
        assert all(torch.equal(a, b) for a, b in zip(weights(callback.srm), in_worker))
        assert any(not torch.equal(a, b) for a, b in zip(initial, in_worker))
    finally:
        env.close()


def test_save_load_resume(tmp_path):
    env = make_vec_env("AlignSAM-v0", n_envs=2, env_kwargs=ENV_KWARGS)
    model = make_model("ppo", env, device="cpu", seed=0, policy_kwargs={"features_extractor_kwargs": SMALL}, **SHORT["ppo"])
    callback = SRMCallback(device="cpu")
    model.learn(total_timesteps=32, callback=callback)
    model.save(tmp_path / "model.zip")
    callback.save(tmp_path / "srm.pt")
    saved = weights(callback.srm)

    fresh_env = make_vec_env("AlignSAM-v0", n_envs=2, env_kwargs=ENV_KWARGS)
    resumed = type(model).load(tmp_path / "model.zip", env=fresh_env, device="cpu")
    restored = SRMCallback(device="cpu")
    restored.load(tmp_path / "srm.pt")
    resumed.learn(total_timesteps=32, callback=restored, reset_num_timesteps=False)
    assert resumed.num_timesteps == 64 and restored.srm_steps == 32  # counters continue
    assert restored.optimizer.state_dict()["state"]  # the Adam moments came back
    # A restored callback pushes the saved weights to the envs before the first step.
    check_env = make_vec_env("AlignSAM-v0", n_envs=1, env_kwargs=ENV_KWARGS)
    fresh = SRMCallback(device="cpu")
    fresh.load(tmp_path / "srm.pt")
    fresh.init_callback(type(model).load(tmp_path / "model.zip", env=check_env, device="cpu"))
    fresh.on_training_start({}, {})
    assert all(torch.equal(a, b) for a, b in zip(saved, weights(check_env.envs[0].unwrapped.srm)))
    assert fresh.srm_steps == 16
    with pytest.raises(RuntimeError, match="before training started"):
        SRMCallback().save(tmp_path / "x.pt")


def test_policy_kwargs_of_the_caller_are_not_changed():
    env = make_vec_env("AlignSAM-v0", n_envs=1, env_kwargs=ENV_KWARGS)
    kwargs = {"features_extractor_kwargs": {"channels": 16}}
    make_model("ppo", env, device="cpu", policy_kwargs=kwargs, n_steps=16, batch_size=16)
    assert kwargs == {"features_extractor_kwargs": {"channels": 16}}  # AlignSAMPolicy adds "grid" to its own copy


def test_resume_refuses_a_run_trained_on_another_segmenter(tmp_path, capsys):
    """The embedded default decoder changed (v1 -> v2): a run trained on v1 whose config does not pin it would
    otherwise continue silently on v2. The run records its segmenter and a resume must build the same one."""
    import yaml

    from policies.runs import RunFolder, train

    config = {"algorithm": "ppo", "seed": 0, "total_timesteps": 16, "n_envs": 1, "checkpoint_every": None,
              "env": {**ENV_KWARGS, "backend_kwargs": {"decoder": "v1"}},
              "hyperparameters": {**SHORT["ppo"], "policy_kwargs": {"features_extractor_kwargs": SMALL}}}
    run = RunFolder(tmp_path / "run")
    train(config, run.path, verbose=False)
    assert run.backend_identity().startswith("lite-v1/")
    saved = yaml.safe_load(run.config_file.read_text())
    saved["env"]["backend_kwargs"] = {"decoder": "v2"}
    saved["total_timesteps"] = 32
    run.config_file.write_text(yaml.safe_dump(saved))
    model_before = run.model_file.read_bytes()
    with pytest.raises(ValueError, match="trained with the segmenter lite-v1/"):
        train(RunFolder(run.path).read_config(), run.path, resume=True, verbose=False)
    assert run.model_file.read_bytes() == model_before and run.steps_done() == 16  # nothing was touched
    # a run from before the segmenter was recorded resumes, with a warning that names what it resumes with
    run.backend_file.unlink()
    train(RunFolder(run.path).read_config(), run.path, resume=True, verbose=False)
    assert "does not record the segmenter" in capsys.readouterr().out
    assert run.steps_done() == 32 and run.backend_identity().startswith("lite-v2/")


@pytest.mark.parametrize("tear", ["model_without_state", "srm_of_another_checkpoint"])
def test_a_checkpoint_cut_short_while_saving_is_set_aside_and_the_run_starts_again(tmp_path, capsys, tear):
    """A process killed while saving (a lost Ray node, an out-of-memory kill) leaves model.zip without state.json,
    or files of two checkpoints. Resuming from that would skip training with the SRM missing or stale and record
    wrong results as if nothing happened; instead the torn files are kept aside and the run trains from step 0,
    ending where an uninterrupted run ends."""
    from policies.runs import RunFolder, train

    config = {"algorithm": "ppo", "seed": 0, "total_timesteps": 32, "n_envs": 1, "checkpoint_every": None,
              "env": ENV_KWARGS,
              "hyperparameters": {**SHORT["ppo"], "policy_kwargs": {"features_extractor_kwargs": SMALL}}}
    clean = RunFolder(tmp_path / "clean")
    train(config, clean.path, verbose=False)
    run = RunFolder(tmp_path / "torn")
    train({**config, "total_timesteps": 16}, run.path, verbose=False)
    assert run.torn_checkpoint() is None and run.steps_done() == 16
    first_srm = run.srm_file.read_bytes()
    train({**config, "total_timesteps": 32}, run.path, resume=True, verbose=False)
    if tear == "model_without_state":
        run.state_file.unlink()
        expected = "model.zip without state.json"
    else:
        run.srm_file.write_bytes(first_srm)  # srm.pt of the step-16 checkpoint beside the step-32 model
        expected = "srm.pt is not the one state.json names"
    assert run.torn_checkpoint() == expected and run.steps_done() == 0
    torn_model = run.model_file.read_bytes()
    train(config, run.path, resume=True, verbose=False)
    assert expected in capsys.readouterr().out
    assert (run.path / "torn-0" / "model.zip").read_bytes() == torn_model  # kept, not deleted
    assert run.torn_checkpoint() is None and run.steps_done() == 32
    from policies.runs import load_srm_weights

    ours, theirs = load_srm_weights(run.srm_file), load_srm_weights(clean.srm_file)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # the same run as one never interrupted


def test_a_save_killed_between_its_files_is_recognised_as_torn(tmp_path, monkeypatch):
    """A real save cut short: the process dies (here: KeyboardInterrupt from os.replace) after the first of the
    checkpoint's files has been moved into place. The folder then holds files of two checkpoints and no
    half-written file; torn_checkpoint names the file that does not belong."""
    import alignsam_gym.atomic
    from policies.runs import RunFolder

    env = make_vec_env("AlignSAM-v0", n_envs=1, env_kwargs=ENV_KWARGS)
    model = make_model("ppo", env, device="cpu", seed=0, policy_kwargs={"features_extractor_kwargs": SMALL},
                       **SHORT["ppo"])
    callback = SRMCallback(device="cpu")
    model.learn(total_timesteps=16, callback=callback)
    run = RunFolder(tmp_path / "run")
    run.save_checkpoint(model, callback)
    assert run.torn_checkpoint() is None and run.steps_done() == 16
    model.learn(total_timesteps=16, callback=callback, reset_num_timesteps=False)

    real_replace, moved = alignsam_gym.atomic.os.replace, []

    def dies_on_the_second_move(src, dst):  # into place: onto a file's own name, not a hidden temporary
        if not Path(dst).name.startswith("."):
            if moved:
                raise KeyboardInterrupt("killed mid-save")
            moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(alignsam_gym.atomic.os, "replace", dies_on_the_second_move)
    with pytest.raises(KeyboardInterrupt):
        run.save_checkpoint(model, callback)
    monkeypatch.undo()
    assert [Path(p).name for p in moved] == ["rng.pt"]  # moved last-in first: rng.pt, then srm.pt, model.zip
    assert run.torn_checkpoint() == "rng.pt is not the one state.json names" and run.steps_done() == 0
    assert not [p.name for p in run.path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_the_paper_preset_trains_on_whole_episodes_with_the_papers_schedule(tmp_path):
    """``preset: paper``: one update after each batch of whole episodes (n_steps = T), K = 20, plain returns, no
    entropy bonus, the budget's end bootstrapped (truncated), the state unpooled; the config's own keys win."""
    import yaml

    from policies.runs import RunConfig, RunFolder, train

    raw = {"algorithm": "ppo", "preset": "paper", "total_timesteps": 8, "n_envs": 2, "checkpoint_every": None,
           "env": {"task": "synthetic-shapes", "num_images": 1, "max_prompts": 4},
           "hyperparameters": {"policy_kwargs": {"features_extractor_kwargs": SMALL}}}
    config = RunConfig.from_dict(raw)
    assert config.env["budget_end"] == "truncated" and config.env["obs_size"] is None
    assert config.env["num_images"] == 1 and config.env["max_prompts"] == 4  # the config's own env keys win
    assert {k: config.hyperparameters[k] for k in ("n_steps", "batch_size", "n_epochs", "gae_lambda", "ent_coef")} \
        == {"n_steps": 4, "batch_size": 8, "n_epochs": 20, "gae_lambda": 1.0, "ent_coef": 0.0}
    assert RunConfig.from_dict(config.to_dict()) == config  # a saved config resolves to itself (resume)
    run = RunFolder(tmp_path / "run")
    train(config, run.path, verbose=False)
    saved = yaml.safe_load(run.config_file.read_text())
    assert saved["preset"] == "paper" and saved["hyperparameters"]["n_epochs"] == 20
    assert run.steps_done() == 8  # one rollout: one 4-prompt episode in each of the 2 envs
    with pytest.raises(ValueError, match="preset 'paper' is the paper's PPO schedule"):
        RunConfig.from_dict({"algorithm": "dqn", "preset": "paper"})
    with pytest.raises(ValueError, match=r"preset must be one of \['default', 'paper'\], got 'papers'"):
        RunConfig.from_dict({"preset": "papers"})
