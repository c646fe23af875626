"""Hyper-parameters for RL Baselines3 Zoo (``rl_zoo3``).

    python -m rl_zoo3.train --algo ppo --env AlignSAM-v0 --gym-packages alignsam_gym \\
        --conf-file policies.zoo --n-timesteps 20000

The Zoo imports ``alignsam_gym`` (which registers ``AlignSAM-v0``) and reads ``hyperparams`` from this
module. The SRM is then untrained (the Zoo cannot pass ``SRMCallback``), so the env kwargs default to
oracle labels; use ``alignsam train`` for the full AlignSAM system.
"""

from policies.sb3.features import MaskedEmbeddingExtractor

hyperparams = {
    "AlignSAM-v0": {
        "n_envs": 4,
        "n_timesteps": 20000,
        "policy": "MlpPolicy",
        "env_kwargs": {"obs_size": 10, "label_source": "gt"},
        "learning_rate": 1e-4,
        "gamma": 0.99,
        "clip_range": 0.2,
        "n_steps": 128,
        "batch_size": 64,
        "n_epochs": 10,
        "ent_coef": 0.01,
        "policy_kwargs": {"features_extractor_class": MaskedEmbeddingExtractor, "ortho_init": False},
    }
}
