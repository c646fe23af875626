"""Training and evaluation runs: a typed :class:`RunConfig` in, a :class:`RunFolder` out."""

from policies.runs.config import RunConfig, SRMSettings, resolve_config
from policies.runs.evaluation import evaluate
from policies.runs.folder import RunFolder, load_srm_weights
from policies.runs.training import make_training_env, train

__all__ = ["RunConfig", "RunFolder", "SRMSettings", "evaluate", "load_srm_weights", "make_training_env",
           "resolve_config", "train"]
