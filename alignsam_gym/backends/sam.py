"""``backend="sam"``: Segment Anything through the official ``segment_anything`` package.

Checkpoints are the files of the SAM release (ViT-B/L/H; ``alignsam weights list``) or any state
dict of the same classes. The architecture is read from the checkpoint's tensor shapes, so
``sam_model_type`` is optional; when it is given, a checkpoint of another type is an error that
names the file and both types. Images are handled exactly as ``SamPredictor`` does: resized so the
longest side is 1024 (``ResizeLongestSide``), normalised with SAM's pixel mean and std, and padded
to 1024x1024 at the bottom and right. Point prompts go through the same coordinate transform.

Per step the prompt encoder and mask decoder run on all points so far (the decoder's image-only
work is done once per image, :mod:`alignsam_gym.backends.sam_decoder`) and return SAM's
low-resolution logits (256x256 over the padded square, cropped here to the image), with no
full-resolution upsampling. With two or more points the single-mask output is used: SAM's authors
recommend it for multi-point prompts, which are unambiguous, and the episode always has at least
two. A single point is ambiguous, so then the best of the three multimask outputs by SAM's own
predicted IoU is returned.

Other SAM-compatible models (MobileSAM, RepViT-SAM, ...) expose the same ``Sam`` module API; pass
their builder as ``model_builder`` and register them as a backend (see the README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from alignsam_gym.backends.base import (ImageEmbedding, PromptableSegmenter, check_image, check_prompts,
                                        checkpoint_file)
from alignsam_gym.backends.sam_decoder import ImageTokens, decode_masks, precompute_image, stack_images
from alignsam_gym.digests import sha256_of
from alignsam_gym.lru import IdentityLRU
from alignsam_gym.shared import SharedInstances
from alignsam_gym.devices import DeviceSpec, device_tag

CHECKPOINT_ENV = "ALIGNSAM_SAM_CHECKPOINT"
#: loaded models by (checkpoint, model type, builder, device): one copy per physical device and process
_models: SharedInstances[nn.Module] = SharedInstances()


@dataclass(frozen=True)
class SamArchitecture:
    """The shape of a SAM model, as far as its state dict tells it."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    image_size: int = 1024
    patch_size: int = 16
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8  # not visible in tensor shapes; every released SAM uses 8
    iou_head_hidden_dim: int = 256

    @property
    def model_type(self) -> str:
        """``vit_b``/``vit_l``/``vit_h`` for the released architectures, else a descriptive name."""
        for name, arch in OFFICIAL_ARCHITECTURES.items():
            if arch == self:
                return name
        return f"custom(embed_dim={self.encoder_embed_dim}, depth={self.encoder_depth})"


OFFICIAL_ARCHITECTURES = {
    "vit_b": SamArchitecture(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArchitecture(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArchitecture(1280, 32, 16, (7, 15, 23, 31)),
}


def build_sam(arch: SamArchitecture) -> nn.Module:
    """An untrained ``segment_anything.modeling.Sam`` of the given architecture."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.image_size // arch.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth, embed_dim=arch.encoder_embed_dim, img_size=arch.image_size, mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), num_heads=arch.encoder_num_heads,
            patch_size=arch.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=arch.encoder_global_attn_indexes, window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size), mask_in_chans=arch.mask_in_chans),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=arch.decoder_depth, embedding_dim=arch.prompt_embed_dim,
                                          mlp_dim=arch.decoder_mlp_dim, num_heads=arch.decoder_num_heads),
            transformer_dim=arch.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=arch.iou_head_hidden_dim),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def _block_indices(state: dict[str, torch.Tensor], prefix: str) -> list[int]:
    return sorted({int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)})


def infer_architecture(state: dict[str, torch.Tensor], source: str = "checkpoint") -> SamArchitecture:
    """Read a SAM architecture off a state dict's keys and shapes.

    :raises ValueError: naming ``source`` if the tensors are not those of a SAM model.
    """
    try:
        patch = state["image_encoder.patch_embed.proj.weight"]
        embed_dim, patch_size = int(patch.shape[0]), int(patch.shape[2])
        grid = int(state["image_encoder.pos_embed"].shape[1])
        blocks = _block_indices(state, "image_encoder.blocks.")
        head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        global_blocks = tuple(i for i in blocks
                              if state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] == 2 * grid - 1)
        windowed = [i for i in blocks if i not in global_blocks]
        window = (int(state[f"image_encoder.blocks.{windowed[0]}.attn.rel_pos_h"].shape[0]) + 1) // 2 if windowed else 14
        return SamArchitecture(
            encoder_embed_dim=embed_dim, encoder_depth=len(blocks), encoder_num_heads=embed_dim // head_dim,
            encoder_global_attn_indexes=global_blocks, window_size=window, image_size=grid * patch_size,
            patch_size=patch_size, prompt_embed_dim=int(state["image_encoder.neck.0.weight"].shape[0]),
            mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
            decoder_depth=len(_block_indices(state, "mask_decoder.transformer.layers.")),
            decoder_mlp_dim=int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
            iou_head_hidden_dim=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
        )
    except (KeyError, IndexError, AttributeError) as err:
        raise ValueError(f"{source}: not a SAM checkpoint (missing or malformed tensor {err})") from err


def read_state_dict(path: str | Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Load a checkpoint without executing code (``weights_only=True``); unwraps ``{"model": ...}``.

    :raises FileNotFoundError: if the file does not exist.
    :raises ValueError: if it is not a readable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises many types for damaged or foreign files
        raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint ({type(err).__name__}: {err})") from err
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return state


def load_sam(path: str | Path, model_type: str | None = None) -> tuple[nn.Module, SamArchitecture]:
    """Build the model a checkpoint describes and load it strictly.

    :param model_type: ``vit_b``/``vit_l``/``vit_h`` to insist on, or None to accept what the file is.
    :raises ValueError: naming the file, the expected and the found model type on a mismatch.
    """
    if model_type is not None and model_type not in OFFICIAL_ARCHITECTURES:
        raise ValueError(f"sam_model_type must be one of {sorted(OFFICIAL_ARCHITECTURES)} or None, got {model_type!r}")
    state = read_state_dict(path)
    arch = infer_architecture(state, str(path))
    if model_type is not None and arch != OFFICIAL_ARCHITECTURES[model_type]:
        raise ValueError(f"{path}: expected a {model_type} SAM checkpoint, found {arch.model_type}")
    model = build_sam(arch)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: does not match the {arch.model_type} SAM model "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return model.eval(), arch


def resize_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """``(h', w')`` of an image resized so its longest side is ``long_side`` (SAM's rounding)."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def to_sam_coordinates(points_xy: np.ndarray, image_shape: tuple[int, int], long_side: int) -> np.ndarray:
    """Continuous image coordinates ``(x, y)`` to SAM's prompt coordinates.

    SAM's prompt encoder treats a prompt as a pixel index and adds 0.5 to reach the pixel centre,
    so a continuous point ``p`` becomes ``p * scale - 0.5`` in the resized frame.
    """
    h, w = image_shape
    new_h, new_w = resize_shape(h, w, long_side)
    return np.asarray(points_xy, np.float64) * np.array([new_w / w, new_h / h]) - 0.5


class SamBackend(PromptableSegmenter):
    """Segment Anything behind the backend protocol (see the module docstring).

    :param checkpoint: path of the checkpoint; default ``$ALIGNSAM_SAM_CHECKPOINT``.
    :param model_type: ``vit_b``/``vit_l``/``vit_h`` to insist on, or None (read from the file).
    :param device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:0"``, ...
    :param model_builder: for SAM-compatible models: ``builder(checkpoint_path) -> Sam-like module``
        (e.g. MobileSAM's ``sam_model_registry["vit_t"]``); skips the architecture check.
    :param decoder_cache_size: images whose prompt-independent decoder work is kept in memory
        (about 10 MiB each for SAM; see :mod:`alignsam_gym.backends.sam_decoder`).
    :param batch_decode: whether :meth:`decode_batch` runs one batched decoder forward (True) or
        decodes the prompt sets one after another (False); default: batched on CUDA, one after
        another on CPU, where the batch's temporaries (16 MiB per image) fall out of the caches and a
        batch of 8 ran at 0.65x the speed of 8 single decodes (measured, ViT-B, 2 cores).
    """

    name = "sam"

    def __init__(self, checkpoint: str | Path | None = None, model_type: str | None = None, device: str = "auto",
                 model_builder: Callable[[str], nn.Module] | None = None, decoder_cache_size: int = 8,
                 batch_decode: bool | None = None) -> None:
        self.checkpoint = checkpoint_file(
            checkpoint, CHECKPOINT_ENV, f"backend 'sam' needs a checkpoint: pass sam_checkpoint=PATH or set "
            f"{CHECKPOINT_ENV}; `alignsam weights list` shows the official files and where to put them", "SAM")
        if model_type is not None and model_builder is None and model_type not in OFFICIAL_ARCHITECTURES:
            raise ValueError(f"sam_model_type must be one of {sorted(OFFICIAL_ARCHITECTURES)} or None, "
                             f"got {model_type!r}")
        self.model_type = model_type
        self.device_spec = DeviceSpec(device)
        self.model_builder = model_builder
        self._arch: SamArchitecture | None = None
        self._digest: str | None = None
        self._batch_decode = batch_decode
        self.decoder_cache_size = max(1, int(decoder_cache_size))
        self._tokens: IdentityLRU[ImageTokens] = IdentityLRU(max_entries=self.decoder_cache_size)
        self._batches: IdentityLRU[ImageTokens] = IdentityLRU(max_entries=2)

    @property
    def device(self) -> torch.device:
        """Where the model runs (``"auto"`` is resolved on first use, see :mod:`alignsam_gym.devices`)."""
        return self.device_spec.device

    @property
    def batch_decode(self) -> bool:
        """Whether :meth:`decode_batch` runs one batched decoder forward (default: on CUDA)."""
        return self.device.type == "cuda" if self._batch_decode is None else bool(self._batch_decode)

    # -- metadata, without building the model ---------------------------------------------------
    def _architecture(self) -> SamArchitecture | None:
        if self._arch is None and self.model_builder is None:
            arch = infer_architecture(read_state_dict(self.checkpoint, mmap=True), str(self.checkpoint))
            if self.model_type is not None and arch != OFFICIAL_ARCHITECTURES[self.model_type]:
                raise ValueError(f"{self.checkpoint}: expected a {self.model_type} SAM checkpoint, "
                                 f"found {arch.model_type}")
            self._arch = arch
        return self._arch

    @property
    def identity(self) -> str:
        if self._digest is None:
            self._digest = sha256_of(self.checkpoint)
        kind = self.model_type if self.model_builder is not None else self._architecture().model_type
        return f"sam-v1/{kind}/{self._digest[:16]}/longest{self.image_size}{device_tag(self.device)}"

    @property
    def image_size(self) -> int:
        arch = self._architecture()
        return arch.image_size if arch is not None else int(self.model().image_encoder.img_size)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        arch = self._architecture()
        if arch is None:
            probe = self.model().prompt_encoder
            return (int(probe.embed_dim), *map(int, probe.image_embedding_size))
        grid = arch.image_size // arch.patch_size
        return (arch.prompt_embed_dim, grid, grid)

    def model(self) -> nn.Module:
        """The loaded model: built and loaded on first use, once per checkpoint and physical device in a
        process (``"auto"``, ``"cuda"`` and ``"cuda:0"`` backends share one copy on the GPU)."""
        device = self.device
        key = (str(self.checkpoint.resolve()), self.model_type, self.model_builder, str(device))
        return _models.get(key, lambda: self._load().to(device).eval())

    def _load(self) -> nn.Module:
        if self.model_builder is not None:
            return self.model_builder(str(self.checkpoint))
        model, self._arch = load_sam(self.checkpoint, self.model_type)
        return model

    # -- protocol --------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> ImageEmbedding:
        return self.encode_batch([image])[0]

    @torch.inference_mode()
    def encode_batch(self, images: list[np.ndarray]) -> list[ImageEmbedding]:
        """Encode several images in one forward pass of the image encoder."""
        from segment_anything.utils.transforms import ResizeLongestSide

        model = self.model()
        transform = ResizeLongestSide(model.image_encoder.img_size)
        batch, shapes = [], []
        for image in images:
            image = check_image(image)
            resized = transform.apply_image(image)
            tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
            batch.append(model.preprocess(tensor.float()))
            shapes.append(image.shape[:2])
        features = model.image_encoder(torch.cat(batch)).float().cpu().numpy()
        low_res = 4 * model.prompt_encoder.image_embedding_size[0]  # the mask decoder's output side
        out = []
        for feats, (h, w) in zip(features, shapes):
            new_h, new_w = resize_shape(h, w, model.image_encoder.img_size)
            scale = low_res / model.image_encoder.img_size
            mask_shape = (math.ceil(new_h * scale), math.ceil(new_w * scale))
            out.append(ImageEmbedding(features=np.ascontiguousarray(feats), image_shape=(h, w),
                                      mask_shape=mask_shape))
        return out

    @torch.inference_mode()
    def decode(self, embedding: ImageEmbedding, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        pts, lab = check_prompts(embedding, points, labels)
        model = self.model()
        coords = to_sam_coordinates(pts, embedding.image_shape, model.image_encoder.img_size)
        coords_t = torch.as_tensor(coords, dtype=torch.float32, device=self.device)[None]
        labels_t = torch.as_tensor(lab, dtype=torch.int64, device=self.device)[None]
        sparse, _ = model.prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=None)
        multimask = len(pts) == 1
        logits, predicted_iou = decode_masks(model, self._image_tokens(embedding), sparse, multimask)
        best = int(predicted_iou[0].argmax()) if multimask else 0
        mh, mw = embedding.mask_shape
        return logits[0, best, :mh, :mw].float().cpu().numpy()

    @torch.inference_mode()
    def decode_batch(self, embeddings: list[ImageEmbedding], points: list[np.ndarray],
                     labels: list[np.ndarray]) -> list[np.ndarray]:
        """One batched decoder forward per prompt count (prompt sets of equal length share a batch,
        so no padding token changes any result), when ``batch_decode``. Same outputs as :meth:`decode`
        one by one."""
        if not len(embeddings) == len(points) == len(labels):
            raise ValueError(f"decode_batch needs as many prompt sets as embeddings, got {len(embeddings)} "
                             f"embeddings, {len(points)} point arrays and {len(labels)} label arrays")
        if not self.batch_decode:
            return [self.decode(e, p, l) for e, p, l in zip(embeddings, points, labels)]
        checked = [check_prompts(e, p, l) for e, p, l in zip(embeddings, points, labels)]
        model = self.model()
        if len(embeddings) > self.decoder_cache_size:  # a batch must fit the LRU
            self.decoder_cache_size = self._tokens.max_entries = len(embeddings)
        groups: dict[int, list[int]] = {}
        for i, (pts, _) in enumerate(checked):
            groups.setdefault(len(pts), []).append(i)
        out: list[np.ndarray | None] = [None] * len(embeddings)
        for count, members in groups.items():
            coords = np.stack([to_sam_coordinates(checked[i][0], embeddings[i].image_shape,
                                                  model.image_encoder.img_size) for i in members])
            coords_t = torch.as_tensor(coords, dtype=torch.float32, device=self.device)
            labels_t = torch.as_tensor(np.stack([checked[i][1] for i in members]), dtype=torch.int64,
                                       device=self.device)
            sparse, _ = model.prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=None)
            multimask = count == 1
            image = self._stacked_tokens([embeddings[i] for i in members])
            logits, predicted_iou = decode_masks(model, image, sparse, multimask)
            best = predicted_iou.argmax(1) if multimask else torch.zeros(len(members), dtype=torch.long)
            chosen = logits[torch.arange(len(members)), best.to(logits.device)].float().cpu().numpy()
            for row, i in enumerate(members):
                mh, mw = embeddings[i].mask_shape
                out[i] = chosen[row, :mh, :mw]
        return out


    def _stacked_tokens(self, embeddings: list[ImageEmbedding]) -> ImageTokens:
        """The batch of image tokens for ``embeddings``; the last few batches are kept, since a vector
        env's envs keep their images for a whole episode (stacking costs 16 MiB of copies per image)."""
        arrays = tuple(e.features for e in embeddings)
        tokens = self._batches.get(arrays)
        if tokens is None:
            tokens = stack_images([self._image_tokens(e) for e in embeddings])
            self._batches.put(arrays, tokens)
        return tokens

    def _image_tokens(self, embedding: ImageEmbedding) -> ImageTokens:
        """The decoder's per-image precomputation, from a small LRU keyed on the embedding's array."""
        tokens = self._tokens.get((embedding.features,))
        if tokens is None:
            features = torch.tensor(embedding.features, device=self.device)[None]  # cached arrays are read-only
            tokens = precompute_image(self.model(), features)
            self._tokens.put((embedding.features,), tokens)
        return tokens


def save_random_sam(path: str | Path, model_type: str = "vit_b", seed: int = 0) -> Path:
    """A released SAM architecture with random weights (seeded, the global torch RNG untouched), saved as
    a checkpoint: timing needs the real architecture, not trained weights."""
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.save(build_sam(OFFICIAL_ARCHITECTURES[model_type]).state_dict(), path)
    return path


def make_sam_backend(checkpoint: str | Path | None = None, model_type: str | None = None, device: str = "auto",
                     **kwargs: Any) -> SamBackend:
    """Registry factory for ``backend="sam"``."""
    return SamBackend(checkpoint=checkpoint, model_type=model_type, device=device, **kwargs)
