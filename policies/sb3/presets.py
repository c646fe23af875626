"""Algorithm presets: one call builds a working SB3 model for ``AlignSAM-v0``.

One policy architecture where SB3 allows it: PPO, A2C and MaskablePPO score each grid cell from its own features
with shared weights (:class:`~policies.sb3.policy.AlignSAMPolicy`, :class:`~policies.sb3.policy.MaskableAlignSAMPolicy`),
DQN takes each cell's Q-value the same way (:class:`~policies.sb3.policy.AlignSAMDQNPolicy`), all over
:class:`~policies.sb3.features.SpatialEmbeddingExtractor`; RecurrentPPO keeps ``MlpLstmPolicy`` over
:class:`~policies.sb3.features.MaskedEmbeddingExtractor` (its LSTM state is one vector for the whole grid).
Only MaskablePPO applies the action mask in training (:data:`TRAINS_WITH_ACTION_MASKS`). The presets take the
paper's Adam 1e-4, gamma 0.99 and PPO clip 0.2, but not its schedule (K = 10 epochs, not 20; an update every
128 steps per env in minibatches of 64, not after each batch of episodes; GAE lambda 0.95, not plain returns;
entropy 0.01): they are sized for a CPU. :func:`paper_hyperparameters` is the paper's schedule, which a run config
selects with ``preset: paper`` (docs: "Differences from the paper").
"""

from __future__ import annotations

from typing import Any

from alignsam_gym.observation import CompactObservationSpace, EmbeddingTable
from policies.sb3.features import MaskedEmbeddingExtractor
from policies.sb3.policy import AlignSAMDQNPolicy, AlignSAMPolicy, MaskableAlignSAMPolicy

#: the policy name SB3 requires for Dict observations (``obs_mode="compact"``)
DICT_POLICIES = {"MlpPolicy": "MultiInputPolicy", "MlpLstmPolicy": "MultiInputLstmPolicy"}

EXTRACTOR = {"features_extractor_class": MaskedEmbeddingExtractor}
#: the plugin's policies by name, so a YAML config can choose one (``hyperparameters: {policy: ...}``)
POLICIES = {"AlignSAMPolicy": AlignSAMPolicy, "MaskableAlignSAMPolicy": MaskableAlignSAMPolicy,
            "AlignSAMDQNPolicy": AlignSAMDQNPolicy}
#: whether each algorithm applies the env's action mask (cells not prompted yet) while it trains; evaluation
#: applies it to every policy (``evaluate(no_repeats=True)``), so for the others it is an evaluation-only rule
TRAINS_WITH_ACTION_MASKS = {"ppo": False, "a2c": False, "dqn": False, "maskable_ppo": True, "recurrent_ppo": False}

#: the paper's optimiser settings, shared by every preset (Adam 1e-4, gamma 0.99)
OPTIMISER = {"learning_rate": 1e-4, "gamma": 0.99}
#: the on-policy schedule of the PPO family (``ppo``, ``maskable_ppo``, ``recurrent_ppo``): the paper's clip 0.2,
#: the rest sized for a CPU (:func:`paper_hyperparameters` is the paper's)
PPO_SCHEDULE = {**OPTIMISER, "clip_range": 0.2, "n_steps": 128, "batch_size": 64, "n_epochs": 10, "ent_coef": 0.01}

PRESETS: dict[str, dict[str, Any]] = {
    "ppo": {"policy": AlignSAMPolicy, **PPO_SCHEDULE},
    "a2c": {"policy": AlignSAMPolicy, **OPTIMISER, "n_steps": 16, "ent_coef": 0.01},
    "dqn": {"policy": AlignSAMDQNPolicy, **OPTIMISER, "buffer_size": 5000, "learning_starts": 200, "batch_size": 32,
            "train_freq": 4, "target_update_interval": 500, "exploration_fraction": 0.3},
    "maskable_ppo": {"policy": MaskableAlignSAMPolicy, **PPO_SCHEDULE},
    "recurrent_ppo": {"policy": "MlpLstmPolicy", "policy_kwargs": {**EXTRACTOR, "ortho_init": False,
                                                                  "lstm_hidden_size": 128}, **PPO_SCHEDULE},
}


#: run-config presets (``RunConfig.preset``): ``default`` (:data:`PRESETS` as they are) or ``paper``
RUN_PRESETS = ("default", "paper")
#: the algorithms the ``paper`` preset applies to (the paper trains PPO)
PAPER_ALGORITHMS = ("ppo", "maskable_ppo")
#: the env settings of the ``paper`` preset: T = 15 prompts, 50 training images, the state at the embedding's own
#: resolution (no pooling), and the budget's end a time limit whose last step SB3 bootstraps with V(s_T), as the
#: paper's Eq. 6 does
PAPER_ENV = {"max_prompts": 15, "num_images": 50, "obs_size": None, "budget_end": "truncated"}


def paper_hyperparameters(n_envs: int, max_prompts: int) -> dict[str, Any]:
    """The paper's PPO schedule as SB3 keyword arguments: an update after every batch of whole episodes (one
    episode per env: ``n_steps = max_prompts``, the batch in one minibatch), K = 20 epochs, plain discounted
    returns (``gae_lambda`` 1), gamma 0.99, clip 0.2, Adam 1e-4, no entropy bonus (the paper names none).

    :param n_envs: envs per rollout (episodes per update).
    :param max_prompts: T, the steps of one episode.
    """
    return {**OPTIMISER, "clip_range": 0.2, "n_steps": int(max_prompts), "batch_size": int(max_prompts) * int(n_envs),
            "n_epochs": 20, "gae_lambda": 1.0, "ent_coef": 0.0}


def algorithm_class(name: str) -> type:
    """The SB3 / sb3-contrib class of a preset name."""
    if name in ("ppo", "a2c", "dqn"):
        import stable_baselines3

        return getattr(stable_baselines3, name.upper())
    if name == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    if name == "recurrent_ppo":
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO
    raise ValueError(f"unknown algorithm {name!r}; presets: {sorted(PRESETS)}")


def embedding_table_of(env: Any) -> EmbeddingTable:
    """The one :class:`~alignsam_gym.observation.EmbeddingTable` the compact-observation envs of ``env``
    (an SB3 ``VecEnv`` or a Gymnasium env) publish into.

    :raises ValueError: when the envs publish into several tables (each ``gym.make`` made its own), which
        the policy could not all read; checked here, when the model is built, not mid-training.
    """
    tables = env.get_attr("embedding_table") if hasattr(env, "get_attr") else [env.unwrapped.embedding_table]
    distinct = {id(t): t for t in tables if t is not None}
    if len(distinct) != 1:
        raise ValueError(f"compact observations need every env to publish into one EmbeddingTable, found "
                         f"{len(distinct)}: build the envs with AlignSAMVecEnv, or pass the same "
                         "embedding_table=EmbeddingTable() in every env's kwargs")
    return next(iter(distinct.values()))


def make_model(algorithm: str, env: Any, device: str = "auto", seed: int | None = None, **overrides: Any) -> Any:
    """A new model of ``algorithm`` on ``env`` with the preset's hyper-parameters, updated by ``overrides``
    (``policy_kwargs`` are merged key by key; ``policy`` may name one of :data:`POLICIES`)."""
    if algorithm not in PRESETS:
        raise ValueError(f"unknown algorithm {algorithm!r}; presets: {sorted(PRESETS)}")
    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in PRESETS[algorithm].items()}
    preset_policy_kwargs = kwargs.pop("policy_kwargs", {})
    if overrides.get("policy", kwargs["policy"]) != kwargs["policy"]:  # the preset's extractor suits its own policy
        preset_policy_kwargs.pop("features_extractor_class", None)
    policy_kwargs = {**preset_policy_kwargs, **overrides.pop("policy_kwargs", {})}
    kwargs.update(overrides)
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    policy = kwargs.pop("policy")
    policy = POLICIES.get(policy, policy) if isinstance(policy, str) else policy
    if isinstance(policy, str) and "features_extractor_class" not in policy_kwargs:
        policy_kwargs = {**EXTRACTOR, **policy_kwargs}  # an SB3 policy by name: it reads the embedding as the others
        kwargs["policy_kwargs"] = policy_kwargs
    if isinstance(env.observation_space, CompactObservationSpace):
        extractor_kwargs = dict(policy_kwargs.get("features_extractor_kwargs") or {})
        extractor_kwargs.setdefault("embedding_table", embedding_table_of(env))
        kwargs["policy_kwargs"] = {**policy_kwargs, "features_extractor_kwargs": extractor_kwargs}
        if isinstance(policy, str):
            policy = DICT_POLICIES.get(policy, policy)  # SB3 insists on the Dict policy names
    return algorithm_class(algorithm)(policy, env, device=device, seed=seed, **kwargs)
