"""Imitation (policies.imitation): the BC loss is the cross-entropy to the expert's action, DAgger visits states
with the scheduled mixture and aggregates every one the expert labelled, and a run config's init: {imitation}
clones the policy before RL, on a hand-made env and on the AlignSAM env."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from policies.imitation import (CloningSettings, Demonstrations, HeuristicExpert, ImitationSettings,
                                KickstartCallback, StateVisitor, beta_schedule, clone, dagger, imitation_loss,
                                warm_up_critic)
from policies.imitation.cloning import discounted_returns, policy_actions
from policies.runs import RunConfig, RunFolder, evaluate, train
from policies.sb3 import AlignSAMDQNPolicy, AlignSAMPolicy, MaskableAlignSAMPolicy
from policies.sb3.acting import action_scores

GRID = 3
SMALL = {"features_extractor_kwargs": {"channels": 8, "cell_channels": 4}}


class PointingEnv(gym.Env):
    """A hand-made env: the observation shows one target cell of a 3x3 grid (a one-hot map, the target drawn
    anew every step); prompting it pays +1, any other cell -1; three steps an episode; no cell twice."""

    observation_space = spaces.Box(0.0, 1.0, (1, GRID, GRID), np.float32)
    action_space = spaces.Discrete(GRID * GRID)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.prompted = np.zeros(GRID * GRID, bool)
        self.steps = 0
        return self._draw(), {}

    def _draw(self) -> np.ndarray:
        self.target = int(self.np_random.choice(np.flatnonzero(~self.prompted)))
        obs = np.zeros((1, GRID, GRID), np.float32)
        obs.flat[self.target] = 1.0
        return obs

    def step(self, action):
        reward = 1.0 if int(action) == self.target else -1.0
        self.prompted[int(action)] = True
        self.steps += 1
        return self._draw(), reward, self.steps == 3, False, {}

    def action_masks(self) -> np.ndarray:
        return ~self.prompted


def pointing_env(n: int = 2, seed: int = 0) -> DummyVecEnv:
    env = DummyVecEnv([PointingEnv for _ in range(n)])
    env.seed(seed)
    return env


def expert_of(env: DummyVecEnv):
    return lambda: np.array([e.unwrapped.target for e in env.envs], np.int64)


def make_policy(cls):
    obs, act = PointingEnv.observation_space, PointingEnv.action_space
    torch.manual_seed(0)
    return cls(obs, act, lambda _: 1e-3, **SMALL)


@pytest.mark.parametrize("cls", [AlignSAMPolicy, MaskableAlignSAMPolicy, AlignSAMDQNPolicy])
def test_the_loss_is_the_cross_entropy_to_the_experts_action(cls):
    policy = make_policy(cls)
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.random((5, 1, GRID, GRID)), dtype=torch.float32)
    expert = torch.as_tensor([0, 4, 8, 2, 4])
    masks = torch.ones(5, GRID * GRID, dtype=torch.bool)
    masks[:, 1] = masks[:, 3] = False  # cells prompted before
    scores = action_scores(policy, obs).detach()
    plain = -torch.log_softmax(scores, 1)[torch.arange(5), expert].mean()
    allowed = scores.masked_fill(~masks, float("-inf"))
    masked = -torch.log_softmax(allowed, 1)[torch.arange(5), expert].mean()
    loss, hits = imitation_loss(policy, obs, expert)
    assert loss.item() == pytest.approx(float(plain), rel=1e-6)
    loss, hits = imitation_loss(policy, obs, expert, masks)
    assert loss.item() == pytest.approx(float(masked), rel=1e-6) and float(masked) < float(plain)
    assert int(hits) == int((allowed.argmax(1) == expert).sum())
    if cls is AlignSAMDQNPolicy:  # DQN's scores are its online Q-values
        torch.testing.assert_close(scores, policy.q_net(obs).detach())


def visited(n_states: int, seed: int = 0) -> Demonstrations:
    env = pointing_env(seed=seed)
    return StateVisitor(env).visit(n_states, expert_of(env), None, 1.0, np.random.default_rng(seed))


@pytest.mark.parametrize("cls", [AlignSAMPolicy, MaskableAlignSAMPolicy, AlignSAMDQNPolicy])
def test_cloning_fits_an_expert_the_observation_reveals(cls):
    policy = make_policy(cls)
    history = clone(policy, visited(120), CloningSettings(epochs=40, batch_size=32, learning_rate=1e-2))
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["accuracy"] == 1.0
    held_out = visited(30, seed=1)  # states it never saw
    actions = policy_actions(policy, held_out.observations, held_out.action_masks, True, np.random.default_rng(0))
    np.testing.assert_array_equal(actions, held_out.expert_actions)
    if cls is AlignSAMDQNPolicy:  # the target network starts from the cloned Q-function
        for a, b in zip(policy.q_net.parameters(), policy.q_net_target.parameters()):
            torch.testing.assert_close(a, b)


def test_beta_schedule_is_one_then_decays_geometrically():
    assert [beta_schedule(i, 0.5, 0.5) for i in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert [beta_schedule(i, 0.8, 1.0) for i in range(3)] == [1.0, 0.8, 0.8]
    with pytest.raises(ValueError, match="beta and beta_decay must lie in"):
        beta_schedule(1, 1.5, 0.5)
    with pytest.raises(ValueError, match="round_index"):
        beta_schedule(-1, 0.5, 0.5)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_the_visitor_takes_the_experts_action_with_probability_beta_and_labels_every_state(beta):
    env = pointing_env(n=2)
    first_allowed = lambda obs, masks: masks.argmax(1).astype(np.int64)  # noqa: E731  a learner that never points
    targets = []
    expert = expert_of(env)

    def recording_expert():
        targets.append(expert())
        return targets[-1]

    data = StateVisitor(env).visit(12, recording_expert, first_allowed, beta, np.random.default_rng(7))
    assert len(data) == 12 and data.env_index.tolist() == [0, 1] * 6
    np.testing.assert_array_equal(data.expert_actions, np.concatenate(targets))  # every visited state labelled
    draws = np.random.default_rng(7).random((6, 2)).ravel()  # the visitor's seeded draws, step by step
    expert_turn = np.ones(12, bool) if beta == 1.0 else draws < beta
    np.testing.assert_array_equal(data.taken_actions[expert_turn], data.expert_actions[expert_turn])
    learner = data.action_masks.argmax(1)
    np.testing.assert_array_equal(data.taken_actions[~expert_turn], learner[~expert_turn])
    assert data.dones.sum() == 4  # two episodes of three steps in each env
    assert data.action_masks[np.arange(12), data.taken_actions].all()  # taken cells were allowed


def test_dagger_aggregates_every_round_and_improves_the_learner():
    env = pointing_env(n=2)
    policy = PPO(AlignSAMPolicy, env, policy_kwargs=SMALL, device="cpu", seed=0).policy
    data, log = dagger(policy, StateVisitor(env), expert_of(env), rounds=2, states=20, beta=0.5, beta_decay=0.5,
                       round_zero_states=10, cloning=CloningSettings(epochs=30, batch_size=16, learning_rate=1e-2))
    assert [r["beta"] for r in log] == [1.0, 0.5, 0.25]
    assert [r["states"] for r in log] == [10, 20, 20] and len(data) == 50 and log[-1]["aggregated"] == 50
    assert log[-1]["learner_agreement"] >= log[1]["learner_agreement"] and log[-1]["cloning"][-1]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="a learner is needed"):
        StateVisitor(env).visit(2, expert_of(env), None, 0.5, np.random.default_rng(0))


def test_discounted_returns_follow_each_envs_episodes():
    rewards = np.array([1, 2, 1, 2, 1, 2], np.float32)  # env 0: 1, 1, 1; env 1: 2, 2, 2
    dones = np.array([False, False, True, True, False, False])
    env_index = np.array([0, 1, 0, 1, 0, 1])
    returns = discounted_returns(rewards, dones, env_index, gamma=0.5)
    # env 0's episode ends at its second row: 1 + 0.5 * 1; env 1's at its second: 2 + 0.5 * 2; third rows unfinished
    np.testing.assert_allclose(returns[:4], [1.5, 3.0, 1.0, 2.0])
    assert np.isnan(returns[4:]).all()


def test_the_critic_warm_up_fits_returns_and_leaves_the_actor_alone():
    env = pointing_env(n=2)
    policy = PPO(AlignSAMPolicy, env, policy_kwargs=SMALL, device="cpu", seed=0).policy
    data = StateVisitor(env).visit(60, expert_of(env), None, 1.0, np.random.default_rng(0))  # return 1 + 1 + 1 ...
    obs = torch.as_tensor(data.observations)
    before = action_scores(policy, obs).detach()
    errors = warm_up_critic(policy, data, gamma=1.0, epochs=60, batch_size=16, learning_rate=1e-2)
    # the observation does not show the step, so the best value is the mean return (3, 2 or 1 to go): the
    # critic's error falls to about the returns' variance
    returns = discounted_returns(data.rewards, data.dones, data.env_index, 1.0)
    assert errors[-1] < 1.1 * np.nanvar(returns) < 0.5 * errors[0]
    torch.testing.assert_close(action_scores(policy, obs).detach(), before)


def test_demonstrations_round_trip_and_refuse_bad_rows(tmp_path):
    data = visited(6)
    data.save(tmp_path / "demo.npz")
    loaded = Demonstrations.load(tmp_path / "demo.npz")
    for name in ("observations", "action_masks", "expert_actions", "taken_actions", "rewards", "dones", "env_index"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name))
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="bad.npz: not a demonstrations file"):
        Demonstrations.load(tmp_path / "bad.npz")
    masks = data.action_masks.copy()
    masks[0, data.expert_actions[0]] = False
    with pytest.raises(ValueError, match="row 0: the expert's action .* is a masked"):
        Demonstrations(data.observations, masks, data.expert_actions, data.taken_actions, data.rewards, data.dones,
                       data.env_index)
    with pytest.raises(ValueError, match="differ in length"):
        Demonstrations(data.observations[:3], data.action_masks, data.expert_actions, data.taken_actions,
                       data.rewards, data.dones, data.env_index)


@pytest.mark.parametrize("raw, message", [
    ({"imitation": {"expert": "teacher"}}, "expert must be one of"),
    ({"imitation": {"rounds": 2}}, r"unknown init.imitation keys \['rounds'\]"),
    ({"imitation": {"dagger_rounds": -1}}, "dagger_rounds must be an integer >= 0"),
    ({"pretrained": "x"}, r"unknown init keys \['pretrained'\]"),
    ({"imitation": {"expert": "clicker", "temperature": 0.1}}, "values no cells"),
    ({"imitation": {"temperature": 0}}, "temperature must be a positive number"),
])
def test_bad_imitation_settings_are_named(raw, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict({"init": raw})


@pytest.mark.parametrize("changes, message", [({"vec_env": "subproc"}, "not 'subproc'"),
                                              ({"algorithm": "recurrent_ppo"}, "recurrent_ppo")])
def test_imitation_refuses_runs_it_cannot_clone(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict({"init": {"imitation": {}}, **changes})


ENV = {"task": "synthetic-shapes", "num_images": 2, "obs_size": 10, "max_prompts": 4, "observation": "channels",
       "observe_srm": True}


@pytest.mark.parametrize("algorithm", ["maskable_ppo", "dqn"])
def test_a_run_clones_the_expert_before_rl_and_resumes_from_the_cloned_policy(tmp_path, algorithm):
    short = {"maskable_ppo": {"n_steps": 8, "batch_size": 8, "n_epochs": 1},
             "dqn": {"learning_starts": 4, "buffer_size": 64, "batch_size": 8}}[algorithm]
    config = {"algorithm": algorithm, "n_envs": 2, "total_timesteps": 0, "device": "cpu", "checkpoint_every": None,
              "env": ENV, "hyperparameters": {**short, "policy_kwargs": SMALL},
              "init": {"imitation": {"expert": "clicker", "demonstration_states": 16, "dagger_rounds": 1,
                                     "dagger_states": 8, "epochs": 2, "critic_warmup_states": 8}}}
    run = RunFolder(train(config, tmp_path / "run", verbose=False))
    record = run.read_imitation()
    assert [r["states"] for r in record["rounds"]] == [16, 8] and record["states"] == 24
    assert record["expert"]["name"] == "clicker" and record["expert"]["states"] == 24  # the critic's rollouts: none
    assert record["expert"]["seconds_per_state"] > 0
    assert ("critic" in record) == (algorithm == "maskable_ppo")  # DQN has no critic to warm up
    assert run.steps_done() == 0 and run.srm_file.is_file()  # the SRM trained on the visited states
    cloned = run.model_file.read_bytes()
    evaluated = evaluate(str(run.path), {**ENV, "split": "val"}, seed=0, device="cpu")
    assert evaluated["images"] == 2 and 0.0 <= evaluated["miou"] <= 1.0
    train({**config, "total_timesteps": 16}, run.path, resume=True, verbose=False)  # RL from the cloned start
    assert run.steps_done() == 16 and run.model_file.read_bytes() != cloned
    assert run.read_imitation() == record  # imitation is not repeated on resume
    assert json.loads(json.dumps(run.read_config().to_dict()))["init"]["imitation"]["expert"] == "clicker"


def test_the_heuristic_expert_labels_the_alignsam_envs_and_times_itself():
    from policies.runs import make_training_env

    env = make_training_env(RunConfig.from_dict({"n_envs": 2, "device": "cpu", "env": ENV}))
    env.reset()
    expert = HeuristicExpert("clicker", env)
    actions = expert()
    assert actions.shape == (2,) and all(m[a] for m, a in zip(env.env_method("action_masks"), actions))
    assert expert.states == 2 and expert.seconds_per_state > 0
    with pytest.raises(ValueError, match="expert must be one of"):
        HeuristicExpert("teacher", env)
    env.close()


def test_the_soft_loss_is_the_cross_entropy_to_the_softmax_of_the_experts_values():
    policy = make_policy(AlignSAMPolicy)
    rng = np.random.default_rng(1)
    obs = torch.as_tensor(rng.random((4, 1, GRID, GRID)), dtype=torch.float32)
    masks = torch.ones(4, GRID * GRID, dtype=torch.bool)
    masks[:, 0] = False
    values = torch.as_tensor(rng.random((4, GRID * GRID)), dtype=torch.float32)
    values[:, 0] = float("nan")  # a prompted cell: the expert tried it not
    values[3] = float("nan")  # a row without values keeps the expert's action
    expert = torch.as_tensor([int(torch.nan_to_num(v, -1.0).argmax()) for v in values[:3]] + [5])
    log_p = torch.log_softmax(action_scores(policy, obs).detach().masked_fill(~masks, float("-inf")), 1)
    target = torch.softmax(torch.nan_to_num(values[:3], float("-inf")) / 0.1, 1)
    expected = (-(target[:, 1:] * log_p[:3, 1:]).sum(1).sum() - log_p[3, 5]) / 4
    loss, _ = imitation_loss(policy, obs, expert, masks, values, temperature=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    hard, _ = imitation_loss(policy, obs, expert, masks)
    sharp, _ = imitation_loss(policy, obs, expert, masks, values, temperature=1e-6)  # the softmax becomes one-hot
    assert sharp.item() == pytest.approx(hard.item(), rel=1e-4)


def test_the_oracle_expert_keeps_the_iou_of_every_cell_it_compared():
    from alignsam_gym.heuristics import oracle_values
    from policies.runs import make_training_env

    env = make_training_env(RunConfig.from_dict({"n_envs": 2, "device": "cpu", "env": ENV}))
    env.reset()
    expert = HeuristicExpert("oracle", env)
    actions = expert()
    for i, e in enumerate(inner.unwrapped for inner in env.envs):
        cells, ious = oracle_values(e)
        np.testing.assert_allclose(expert.values[i, cells], ious, rtol=1e-6)
        assert np.isnan(np.delete(expert.values[i], cells)).all() and actions[i] == cells[int(np.argmax(ious))]
    env.close()


def test_an_agent_that_stops_keeps_its_mask_for_the_prompts_it_did_not_take():
    from policies.runs.training import make_training_env
    from policies.sb3.presets import make_model

    env_kwargs = {**ENV, "stop_action": True}
    env = make_training_env(RunConfig.from_dict({"n_envs": 1, "device": "cpu", "env": env_kwargs}))
    model = make_model("maskable_ppo", env, device="cpu", seed=0, policy_kwargs=SMALL)
    scores = action_scores(model.policy, torch.as_tensor(env.reset()))
    assert scores.shape == (1, 101)  # a logit per cell and one for stopping
    with torch.no_grad():  # an agent that always stops after its first prompt... here: at once
        model.policy.action_net.stop_score.bias.fill_(1e4)
    result = evaluate("stopping agent", {**env_kwargs, "split": "val"}, seed=0, device="cpu", model=model,
                      algorithm="maskable_ppo")
    for row in result["episodes"]:
        assert row["actions"] == [] and row["iou"] == [row["iou"][0]] * 5 and np.isnan(row["foreground_rate"])
    assert result["iou_curve"] == [result["iou_curve"][0]] * 5
    env.close()


class RecordingKickstart(KickstartCallback):
    """Keeps what each imitation step was given, and beside it the masks MaskablePPO's rollout buffer held when the
    rollout ended (the buffer is emptied for the next rollout before the imitation step)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen, self.buffer_masks = [], []

    def _on_rollout_end(self):
        masks = getattr(self.model.rollout_buffer, "action_masks", None)
        self.buffer_masks.append(None if masks is None else masks.reshape(-1, masks.shape[-1]).copy())
        super()._on_rollout_end()

    def imitate(self, observations, expert_actions, action_masks, expert_values, weight):
        self.seen.append((observations.copy(), expert_actions.copy(), action_masks.copy(), self.buffer_masks[-1]))
        return super().imitate(observations, expert_actions, action_masks, expert_values, weight)


@pytest.mark.parametrize("algorithm", ["ppo", "maskable_ppo"])
def test_kickstarting_labels_every_state_of_each_rollout_in_the_buffers_order(algorithm):
    from sb3_contrib import MaskablePPO

    env = pointing_env(n=2)
    cls, policy = (PPO, AlignSAMPolicy) if algorithm == "ppo" else (MaskablePPO, MaskableAlignSAMPolicy)
    # rollouts of 4 steps and episodes of 3: rollouts start mid-episode, with the state labelled at the last one's end
    model = cls(policy, env, n_steps=4, batch_size=8, n_epochs=1, policy_kwargs=SMALL, device="cpu", seed=0)
    kick = RecordingKickstart(expert_of(env), weight=1.0, decay=0.5)
    model.learn(32, callback=kick)  # 4 rollouts of 4 steps x 2 envs
    model.learn(16, callback=kick)  # learn() again resets the envs: nothing labelled before is reused
    assert len(kick.seen) == 6
    for obs, expert, masks, buffer_masks in kick.seen:
        assert obs.shape == (8, 1, GRID, GRID)
        # the one-hot observation the buffer stored shows the target the expert named: each label belongs to the
        # state the agent acted in, not the one after it
        np.testing.assert_array_equal(obs.reshape(8, -1).argmax(1), expert)
        assert masks[np.arange(8), expert].all()
        if buffer_masks is not None:  # MaskablePPO's buffer keeps the masks it sampled with: the same rows
            np.testing.assert_array_equal(masks, buffer_masks.astype(bool))
    assert [u["weight"] for u in kick.history] == [1.0, 0.5, 0.25, 0.125, 1.0, 0.5]
    assert [u["step"] for u in kick.history] == [8, 16, 24, 32, 8, 16]


def test_the_imitation_step_follows_each_rl_update_on_its_rollout():
    env = pointing_env(n=2)
    model = PPO(AlignSAMPolicy, env, n_steps=4, batch_size=8, n_epochs=1, policy_kwargs=SMALL, device="cpu", seed=0)
    events = []
    rl_update = model.train
    model.train = lambda: (events.append("rl"), rl_update())[1]

    class Ordered(KickstartCallback):
        def imitate(self, *args, **kwargs):
            events.append("imitation")
            return super().imitate(*args, **kwargs)

    model.learn(24, callback=Ordered(expert_of(env), weight=1.0, decay=1.0))
    # after PPO's update, not before it: PPO's ratio is taken against the policy that sampled the rollout
    assert events == ["rl", "imitation"] * 3


def test_the_kickstart_weight_is_a_function_of_the_steps_done():
    env = pointing_env(n=2)
    model = PPO(AlignSAMPolicy, env, n_steps=4, batch_size=8, policy_kwargs=SMALL, device="cpu", seed=0)
    kick = KickstartCallback(expert_of(env), weight=2.0, decay=0.5)
    kick.init_callback(model)
    assert [kick.weight_at(t) for t in (0, 8, 16)] == [2.0, 1.0, 0.5]
    assert kick.weight_at(12) == pytest.approx(2.0 * 0.5 ** 1.5)  # a run resumed mid-rollout continues the schedule


@pytest.mark.parametrize("raw, message", [
    ({"algorithm": "dqn", "init": {"imitation": {"kickstart_weight": 1.0}}}, "kickstart_weight labels on-policy"),
    ({"init": {"imitation": {"kickstart_weight": -1}}}, "kickstart_weight must be 0 .off. or a finite number"),
    ({"init": {"imitation": {"kickstart_weight": 1e-4}}}, r"below it the term is off"),
    ({"init": {"imitation": {"kickstart_decay": 0}}}, r"kickstart_decay must lie in \(0, 1\]"),
])
def test_bad_kickstart_settings_are_named(raw, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(raw)


def test_a_kickstarted_run_records_every_update_and_resumes_the_schedule(tmp_path):
    config = {"algorithm": "maskable_ppo", "n_envs": 2, "total_timesteps": 32, "device": "cpu",
              "checkpoint_every": None, "env": ENV,
              "hyperparameters": {"n_steps": 8, "batch_size": 8, "n_epochs": 1, "policy_kwargs": SMALL},
              "init": {"imitation": {"expert": "clicker", "demonstration_states": 8, "epochs": 1,
                                     "kickstart_weight": 2.0, "kickstart_decay": 0.5}}}
    run = RunFolder(train(config, tmp_path / "run", verbose=False))
    updates = run.read_kickstart()
    assert [(u["step"], u["weight"]) for u in updates] == [(16, 2.0), (32, 1.0)]
    assert all(np.isfinite(u["loss"]) and 0.0 <= u["agreement"] <= 1.0 for u in updates)
    train({**config, "total_timesteps": 48}, run.path, resume=True, verbose=False)
    assert [(u["step"], u["weight"]) for u in run.read_kickstart()] == [(16, 2.0), (32, 1.0), (48, 0.5)]
    run.drop_kickstart_after(40)  # what a resume from a checkpoint at step 40 does: later lines are gone
    assert [u["step"] for u in run.read_kickstart()] == [16, 32]
