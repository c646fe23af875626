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

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from alignsam_gym.atomic import replacing

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
        return self._after_fusion(self.fuse(torch.cat([state, clip_state], dim=1)))

    # -- the same function, with its image-only work done once per image ---------------------------------
    def image_terms(self, features: torch.Tensor, clip_state: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The part of the first convolution on ``s_t = E(x) * M`` that depends on the image only.

        A convolution of ``E * M`` (``M`` one value per position) is a sum over kernel offsets of the
        per-offset channel mixes of ``E``, each times ``M`` at the offset: those mixes are computed here
        once, ``(B, hidden, k*k, h, w)``; :meth:`masked_logits` then needs ``k*k`` multiply-adds per output
        instead of ``C*k*k`` (about 200x fewer for SAM's 256 channels). The explicit branch's first
        convolution is 1x1 over ``[s_t, s_c]``: its ``s_c`` part is fixed for the episode and kept whole.
        """
        conv = self.body[0][0] if self.branch == "implicit" else self.fuse[0][0]
        c = features.shape[1]
        weight = conv.weight[:, :c]  # (hidden, C, k, k): the part acting on s_t
        hidden, _, kh, kw = weight.shape
        mixes = F.conv2d(features, weight.permute(0, 2, 3, 1).reshape(hidden * kh * kw, c, 1, 1))
        terms = {"mixes": mixes.reshape(features.shape[0], hidden, kh * kw, *features.shape[-2:])}
        if self.branch == "explicit":
            if clip_state is None:
                raise ValueError("the explicit SRM branch needs clip_state = E(x) * M_c")
            terms["clip"] = F.conv2d(clip_state, conv.weight[:, c:], conv.bias)
        return terms

    def masked_logits(self, terms: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """``forward(E * M, s_c)`` from :meth:`image_terms` and the ``(B, h, w)`` mask ``M``: the same
        function, computed in another order (equal up to float rounding)."""
        mixes = terms["mixes"] * mask[:, None, None]  # (B, hidden, k*k, h, w)
        conv = self.body[0][0] if self.branch == "implicit" else self.fuse[0][0]
        (kh, kw), (py, px) = conv.kernel_size, conv.padding
        h, w = mask.shape[-2:]
        # each output sums its k*k offset maps, each read at its offset (zero outside the map: the padding)
        x = mixes.new_zeros(mixes.shape[0], mixes.shape[1], h, w)
        for i in range(kh):
            for j in range(kw):
                dy, dx = i - py, j - px  # output (y, x) reads input (y + dy, x + dx)
                x[:, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] += \
                    mixes[:, :, i * kw + j, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
        if self.branch == "implicit":
            first = self.body[0]
            x = first[2](first[1](x + conv.bias[None, :, None, None]))
            return self.head(self.body[1:](x))
        first = self.fuse[0]
        x = first[2](first[1](x + terms["clip"]))
        return self._after_fusion(self.fuse[1:](x))

    def _after_fusion(self, x: torch.Tensor) -> torch.Tensor:
        """The explicit branch after its fusion convolutions: attention over positions, then the body."""
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


class SRMFile(NamedTuple):
    """What an SRM file holds: the weights and, when recorded, the branch they belong to, the training optimiser's
    state and the SRM steps trained (None and 0 for a bare state dict)."""

    weights: dict[str, torch.Tensor]
    branch: str | None
    optimizer: dict | None = None
    steps: int = 0


def save_srm_file(path: str | Path, srm_file: SRMFile) -> None:
    """Write an SRM file atomically (the one writer of the format :func:`load_srm_file` reads): a torch file of
    tensors and numbers, the weights under ``"srm"``, loadable with ``weights_only=True``."""
    with replacing(path) as tmp:
        torch.save({"srm": srm_file.weights, "optimizer": srm_file.optimizer, "srm_steps": int(srm_file.steps),
                    "branch": srm_file.branch}, tmp)


def load_srm_file(path: str | Path) -> SRMFile:
    """Read an SRM file: a run's ``srm.pt`` or the file ``SRMCallback(save_path=...)`` writes (a dict with the
    weights under ``"srm"`` and the branch under ``"branch"``), or a bare state dict. Loaded without unpickling
    code (``weights_only``); a missing or malformed file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SRM file {path} does not exist (expected a run's srm.pt or an SRM state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged or code-carrying files
        raise ValueError(f"{path}: not a readable SRM file ({type(err).__name__}: {err})") from err
    if isinstance(state, dict) and isinstance(state.get("srm"), dict):
        return SRMFile(state["srm"], state.get("branch"), state.get("optimizer"), int(state.get("srm_steps") or 0))
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return SRMFile(state, None)
    raise ValueError(f"{path}: expected a dict with the SRM weights under 'srm' (a run's srm.pt) or a state dict "
                     f"of tensors, got {type(state).__name__}")
