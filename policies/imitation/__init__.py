"""Imitation for the plugin's SB3 policies: behaviour cloning, DAgger and kickstarting from a privileged expert,
written against SB3's policy API (the ``imitation`` package pins Gymnasium 0.29 and does not install beside
Gymnasium 1.x)."""

from policies.imitation.cloning import clone, imitation_loss, warm_up_critic
from policies.imitation.dagger import StateVisitor, beta_schedule, dagger
from policies.imitation.demonstrations import Demonstrations
from policies.imitation.experts import HeuristicExpert
from policies.imitation.kickstarting import KickstartCallback
from policies.imitation.pretraining import pretrain
from policies.imitation.settings import CloningSettings, ImitationSettings

__all__ = ["CloningSettings", "Demonstrations", "HeuristicExpert", "ImitationSettings", "KickstartCallback",
           "StateVisitor", "beta_schedule", "clone", "dagger", "imitation_loss", "pretrain", "warm_up_critic"]
