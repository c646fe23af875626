"""The Semantic Recalibration Module (SRM): the foreground/background label of every prompt.

The agent only picks positions; the SRM says whether a position is foreground. It is part of the
env's dynamics and is trained alongside the agent (by the SB3 plugin's callback) with Dice + BCE
against the ground truth downsampled to its output grid. Two branches, as in the paper:

- implicit (blur, glass/mirror, saliency): two conv blocks on the state ``s_t``;
- explicit (shadow, semantic classes): ``s_c = E(x) * M_c`` (``M_c`` the CLIP-Surgery map of the
  task's text prompt) and ``s_t`` are fused by three convolutions, a self-attention layer over the
  spatial positions of each sample follows (never across the batch), then two convolutions.

Both end in a 1x1 head that gives a foreground logit per position of the embedding grid. There is
no BatchNorm (GroupNorm instead), so a sample's output never depends on the rest of its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BRANCHES = ("implicit", "explicit")


def _conv_block(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(8, c_out), nn.ReLU())


class SRM(nn.Module):
    """Foreground logits ``(B, 1, h, w)`` from states ``(B, C, h, w)`` (and CLIP states for ``explicit``).

    :param in_channels: ``C``, the embedding's channels.
    :param branch: ``"implicit"`` or ``"explicit"``.
    :param hidden: width of the convolutions (a multiple of 8).
    :param heads: attention heads of the explicit branch.
    """

    def __init__(self, in_channels: int, branch: str = "implicit", hidden: int = 64, heads: int = 4) -> None:
        super().__init__()
        if branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
        if hidden % 8 or hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of 8 and of heads ({heads})")
        self.branch, self.in_channels = branch, int(in_channels)
        if branch == "implicit":
            self.body = nn.Sequential(_conv_block(in_channels, hidden), _conv_block(hidden, hidden))
        else:
            self.fuse = nn.Sequential(_conv_block(2 * in_channels, hidden, 1), _conv_block(hidden, hidden),
                                      _conv_block(hidden, hidden))
            self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.attention_norm = nn.LayerNorm(hidden)
            self.body = nn.Sequential(_conv_block(hidden, hidden), _conv_block(hidden, hidden))
        self.head = nn.Conv2d(hidden, 1, 1)

    def forward(self, state: torch.Tensor, clip_state: torch.Tensor | None = None) -> torch.Tensor:
        if self.branch == "implicit":
            return self.head(self.body(state))
        if clip_state is None:
            raise ValueError("the explicit SRM branch needs clip_state = E(x) * M_c")
        x = self.fuse(torch.cat([state, clip_state], dim=1))
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, c): attention over one sample's positions
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        tokens = self.attention_norm(tokens + attended)
        x = tokens.transpose(1, 2).reshape(b, c, h, w)
        return self.head(self.body(x))


def srm_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Dice + BCE, averaged over the batch.

    :param logits: ``(B, 1, h, w)`` SRM outputs.
    :param target: ``(B, 1, h, w)`` ground truth in [0, 1] (the area fraction of foreground per cell).
    :param eps: Dice smoothing, so an empty target with an empty prediction has zero Dice loss.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    flat = target.flatten(1)
    dice = 1 - (2 * (prob * flat).sum(1) + eps) / (prob.sum(1) + flat.sum(1) + eps)
    return bce + dice.mean()


def make_srm(in_channels: int, branch: str = "implicit", seed: int = 0, **kwargs) -> SRM:
    """An SRM whose initial weights depend only on ``seed`` (never on the global torch RNG)."""
    devices = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return SRM(in_channels, branch, **kwargs)
