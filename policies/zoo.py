"""Moved to :mod:`policies.sb3.zoo`; this module keeps ``--conf-file policies.zoo`` working."""

from policies.sb3.zoo import hyperparams

__all__ = ["hyperparams"]
