"""RLlib (Ray's RL library, new API stack) on AlignSAM-v0: an RLModule and a PPO training run (the ``[ray]`` extra)."""
