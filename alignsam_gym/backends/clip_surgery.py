"""CLIP-Surgery text-to-image similarity maps ``M_c`` for the explicit branch, through ``open_clip``.

CLIP's patch tokens are poorly localised: its last attention layers mix every token with the same
few "opposite" positions, and every token shares features that do not depend on the text. CLIP
Surgery (Li et al., "CLIP Surgery for Better Explainability with Enhancement in Open-Vocabulary
Tasks", 2023) fixes both without training:

- *architecture surgery*: from the last ``surgery_blocks`` transformer blocks onward, a second path
  runs beside the original one. At each of those blocks it adds value-value self-attention
  (``softmax(v v^T / sqrt(d)) v``, with the block's own value and output projections) of the
  original path's normalised tokens, and skips the MLP. The original path runs unchanged, so its
  class token still classifies;
- *feature surgery*: features shared by all prompts are subtracted before taking the similarity.
  With one text prompt they are the features of the empty prompt:
  ``sim = f @ (t - r)``, ``f``, ``t``, ``r`` L2-normalised (patch, text and empty-text features); with
  several prompts, the per-prompt element-wise products ``f * t_k`` (weighted by the class-token
  probabilities) minus their mean over prompts, summed over channels.

:class:`ClipSurgeryMaps` turns an image and the task's text prompt into a ``(1, g, g)`` map in
[0, 1] (min-max normalised; ``g`` = 14 for ViT-B-16 at 224 px). It has an ``identity`` and an
``encode``, like a backend, so the embedding cache stores its maps like embeddings.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alignsam_gym.backends.base import ImageEmbedding, checkpoint_file
from alignsam_gym.digests import sha256_of
from alignsam_gym.shared import SharedInstances
from alignsam_gym.devices import DeviceSpec, device_tag

CLIP_CHECKPOINT_ENV = "ALIGNSAM_CLIP_CHECKPOINT"
#: prompt ensemble (our own list); the text features are the mean of the normalised templates
TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "a close-up photo of a {}.", "a cropped photo of the {}.",
             "a bright photo of a {}.", "a dark photo of the {}.", "a blurry photo of a {}.",
             "there is a {} in the scene.", "this is a {}.", "{}.")


def feature_surgery(image_features: torch.Tensor, text_features: torch.Tensor,
                    redundant: torch.Tensor | None = None, class_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Similarity of each image token to each text prompt, after feature surgery.

    :param image_features: ``(N, C)`` L2-normalised token features.
    :param text_features: ``(K, C)`` L2-normalised text features.
    :param redundant: ``(C,)`` normalised features of the empty prompt; when given, the similarity is
        ``image @ (text - redundant).T`` (the single-prompt form).
    :param class_probs: ``(K,)`` weights of the prompts (the class token's softmax); uniform if None.
    :return: ``(N, K)`` similarities.
    """
    if redundant is not None:
        return image_features @ (text_features - redundant[None]).T
    k = text_features.shape[0]
    weights = torch.ones(k, device=text_features.device) if class_probs is None else class_probs / class_probs.mean()
    products = image_features[:, None, :] * text_features[None, :, :] * weights[None, :, None]  # (N, K, C)
    return (products - products.mean(dim=1, keepdim=True)).sum(-1)


def input_tokens(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(B, 1 + HW, D)``: the tokens an open_clip ``VisionTransformer`` feeds its first block (patch
    embeddings after the class token, plus positions, patch dropout and ``ln_pre``), from its public modules."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)  # (B, HW, D)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    return visual.ln_pre(visual.patch_dropout(x))


def _surgery_tokens(visual: nn.Module, images: torch.Tensor, surgery_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both paths' final tokens ``(B, 1 + HW, D)`` after ``ln_post`` and ``proj``: (surgery, original)."""
    x = input_tokens(visual, images)
    blocks = list(visual.transformer.resblocks)
    start = max(0, len(blocks) - surgery_blocks)
    for block in blocks[:start]:
        x = block(x)
    new = x
    for block in blocks[start:]:
        attn: nn.MultiheadAttention = block.attn
        h = block.ln_1(x)
        b, n, c = h.shape
        heads = attn.num_heads
        q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).reshape(b, n, 3, heads, c // heads).permute(
            2, 0, 3, 1, 4)
        scale = (c // heads) ** -0.5
        original = torch.softmax((q @ k.transpose(-1, -2)) * scale, -1) @ v
        value_value = torch.softmax((v @ v.transpose(-1, -2)) * scale, -1) @ v
        merge = lambda t: attn.out_proj(t.transpose(1, 2).reshape(b, n, c))  # noqa: E731
        new = new + block.ls_1(merge(value_value))  # the new path: attention only, no MLP
        x = x + block.ls_1(merge(original))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
    project = lambda t: visual.ln_post(t) @ visual.proj  # noqa: E731
    return project(new), project(x)


class ClipSurgeryMaps:
    """CLIP-Surgery similarity maps for one text prompt (see the module docstring).

    :param checkpoint: open_clip weights for ``model_name``: a state dict (``.pt``/``.pth``/``.bin``,
        loaded with ``weights_only=True``), a ``.safetensors`` file, or OpenAI's TorchScript release
        file; default ``$ALIGNSAM_CLIP_CHECKPOINT``.
    :param text_prompt: what to look for, e.g. ``"shadow"``.
    :param model_name: open_clip architecture name (``"ViT-B-16"``, the paper's).
    :param surgery_blocks: number of final blocks with the value-value path (6 for ViT-B).
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    """

    def __init__(self, checkpoint: str | Path | None, text_prompt: str, model_name: str = "ViT-B-16",
                 surgery_blocks: int = 6, device: str = "auto") -> None:
        self.checkpoint = checkpoint_file(
            checkpoint, CLIP_CHECKPOINT_ENV, f"CLIP maps need open_clip weights: pass clip_checkpoint=PATH or set "
            f"{CLIP_CHECKPOINT_ENV}; `alignsam weights list` names the paper's file", "CLIP")
        if not text_prompt or not isinstance(text_prompt, str):
            raise ValueError(f"text_prompt must be a non-empty string, got {text_prompt!r}")
        self.text_prompt, self.model_name, self.surgery_blocks = text_prompt, model_name, int(surgery_blocks)
        self.device_spec = DeviceSpec(device)
        self._model: nn.Module | None = None
        self._text: tuple[torch.Tensor, torch.Tensor] | None = None
        self._digest: str | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        if self._digest is None:
            self._digest = sha256_of(self.checkpoint)
        return (f"clip-surgery-v1/{self.model_name}/{self._digest[:16]}/blocks{self.surgery_blocks}"
                f"/text={self.text_prompt}{device_tag(self.device)}")

    @property
    def device(self) -> torch.device:
        """Where CLIP runs (``"auto"`` is resolved on first use, see :mod:`alignsam_gym.devices`)."""
        return self.device_spec.device

    def model(self) -> nn.Module:
        with self._lock:
            if self._model is None:
                self._model = load_open_clip(self.checkpoint, self.model_name).to(self.device).eval()
            return self._model

    @torch.inference_mode()
    def _text_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ensemble features of the prompt and of the empty prompt."""
        if self._text is None:
            import open_clip

            model, tokenizer = self.model(), open_clip.get_tokenizer(self.model_name)
            out = []
            for word in (self.text_prompt, ""):
                tokens = tokenizer([t.format(word) for t in TEMPLATES]).to(self.device)
                feats = F.normalize(model.encode_text(tokens).float(), dim=-1).mean(0)
                out.append(F.normalize(feats, dim=-1))
            self._text = (out[0], out[1])
        return self._text

    @torch.inference_mode()
    def similarity_map(self, image: np.ndarray) -> np.ndarray:
        """``(g, g) float32`` map in [0, 1] for an ``(H, W, 3) uint8`` RGB image (resized to CLIP's input)."""
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        model = self.model()
        size = model.visual.image_size
        size = size if isinstance(size, tuple) else (size, size)
        resized = cv2.resize(np.asarray(image), (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].float() / 255.0
        mean = torch.tensor(OPENAI_DATASET_MEAN, device=self.device).reshape(1, 3, 1, 1)
        std = torch.tensor(OPENAI_DATASET_STD, device=self.device).reshape(1, 3, 1, 1)
        tokens, _ = _surgery_tokens(model.visual, (x - mean) / std, self.surgery_blocks)
        patches = F.normalize(tokens[0, 1:].float(), dim=-1)
        text, empty = self._text_features()
        sim = feature_surgery(patches, text[None], redundant=empty)[:, 0]
        sim = (sim - sim.min()) / (sim.max() - sim.min()).clamp_min(1e-8)
        grid = model.visual.grid_size
        return sim.reshape(grid).cpu().numpy().astype(np.float32)

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """The map as an :class:`ImageEmbedding` (``features`` ``(1, g, g)``), so the cache can store it."""
        sim = self.similarity_map(image)
        return ImageEmbedding(features=sim[None], image_shape=tuple(image.shape[:2]), mask_shape=sim.shape)


def load_open_clip(path: Path, model_name: str) -> nn.Module:
    """An open_clip model of ``model_name`` with the weights in ``path`` (see :class:`ClipSurgeryMaps`).

    :raises ValueError: naming the file if it cannot be read or does not fit the architecture.
    """
    import open_clip

    quiet = logging.Filter()
    quiet.filter = lambda record: "No pretrained weights loaded" not in record.getMessage()  # we load them next
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(model_name, pretrained=None)
    except RuntimeError as err:
        raise ValueError(f"unknown open_clip model {model_name!r}: {err}") from err
    finally:
        logging.getLogger().removeFilter(quiet)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:
                # OpenAI's release files are TorchScript archives: their tensors, not their code, are used.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as open_clip weights ({type(err).__name__}: {err})") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)  # metadata entries of OpenAI's files
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: does not match open_clip {model_name!r}: {str(err)[:300]}") from err
    return model


_shared: SharedInstances[ClipSurgeryMaps] = SharedInstances()


def shared_clip_maps(checkpoint: str | Path | None, text_prompt: str, model_name: str = "ViT-B-16",
                     device: str = "auto") -> ClipSurgeryMaps:
    """The process-wide :class:`ClipSurgeryMaps` for these arguments (one loaded model per process)."""
    key = (str(checkpoint or os.environ.get(CLIP_CHECKPOINT_ENV)), text_prompt, model_name, str(device))
    return _shared.get(key, lambda: ClipSurgeryMaps(checkpoint, text_prompt, model_name=model_name, device=device))
