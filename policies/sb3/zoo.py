"""Hyper-parameters for RL Baselines3 Zoo (``rl_zoo3``): the full AlignSAM system, SRM included.

    python -m rl_zoo3.train --algo ppo --env AlignSAM-v0 --gym-packages alignsam_gym \\
        --conf-file policies.zoo --n-timesteps 20000 \\
        --hyperparams 'callback:[{"policies.sb3.callback.SRMCallback":{"save_path":"logs/srm.pt"}}]'

The Zoo imports ``alignsam_gym`` (which registers ``AlignSAM-v0``) and reads ``hyperparams`` from this
module. The envs label every prompt with their SRM (``label_source="srm"``, the paper's setting), and the
Zoo's ``callback`` key passes :class:`~policies.sb3.callback.SRMCallback`, which trains that SRM alongside
the agent and pushes its weights to every training env. The Zoo saves the agent (``model.zip``) but knows
nothing of the SRM: give the callback a ``save_path`` (as above; an existing file is refused, so choose a
new path per run) to keep it, and start later envs from it with ``env_kwargs`` ``srm_checkpoint=PATH``
(e.g. ``python -m rl_zoo3.enjoy ... --env-kwargs srm_checkpoint:"'logs/srm.pt'"``). The Zoo's
evaluation env (``--eval-freq``) is a separate env the callback does not reach: its SRM stays as it was
built, so evaluate with ``srm_checkpoint`` after training instead. ``alignsam train`` does all of this
(and saves the SRM in the run folder) by itself.
"""

from policies.sb3.features import MaskedEmbeddingExtractor
from policies.sb3.presets import PRESETS

#: the Zoo's ``callback`` entry: the SRM callback with its paper defaults (lr 1e-4, Q per branch)
SRM_CALLBACK = {"policies.sb3.callback.SRMCallback": {"learning_rate": 1e-4}}

#: the ``ppo`` preset's hyper-parameters (one place states them), under SB3's ``MlpPolicy`` name, which the Zoo
#: resolves, with the plugin's extractor for the embedding
hyperparams = {
    "AlignSAM-v0": {
        "n_envs": 4,
        "n_timesteps": 20000,
        "policy": "MlpPolicy",
        "env_kwargs": {"obs_size": 10, "label_source": "srm"},
        "callback": [SRM_CALLBACK],
        **{key: value for key, value in PRESETS["ppo"].items() if key != "policy"},
        "policy_kwargs": {"features_extractor_class": MaskedEmbeddingExtractor, "ortho_init": False},
    }
}
