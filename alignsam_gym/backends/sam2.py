"""``backend="sam2"``: SAM 2 / SAM 2.1 through Meta's official ``sam2`` package (the ``[sam2]`` extra).

The split is the one ``SAM2ImagePredictor`` makes: ``set_image`` runs the Hiera image encoder and FPN
once per image, ``predict`` runs the prompt encoder and the mask decoder per prompt set. Here
:meth:`Sam2Backend.encode` returns the image embedding (the FPN's stride-16 level with SAM 2's
``no_mem_embed`` added, ``(256, 64, 64)`` for the 1024-px models: the agent's ``E(x)``) and keeps the
decoder's high-resolution features (``(32, 256, 256)`` and ``(64, 128, 128)``) in
``decoder_state``, so both go into the embedding cache; :meth:`Sam2Backend.decode` returns SAM 2's
``(256, 256)`` low-resolution logits. SAM 2 resizes every image to a square (no padding), so the
logits cover the whole image and a point ``(x, y)`` maps to ``(x * 1024 / W, y * 1024 / H)``.

Checkpoints are the release files (``{"model": state_dict}``), read with ``weights_only=True`` (no
code runs); the model config (hiera tiny, small, base+ or large; SAM 2 or 2.1) is inferred from the
tensor shapes unless ``sam2_config`` names it. A checkpoint that does not fit the config fails with
an error naming the file, the tensor and both shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignsam_gym.backends.base import (ImageEmbedding, PromptableSegmenter, check_image, check_prompts,
                                        checkpoint_file)
from alignsam_gym.devices import DeviceSpec, device_tag
from alignsam_gym.digests import sha256_of
from alignsam_gym.shared import SharedInstances

CHECKPOINT_ENV = "ALIGNSAM_SAM2_CHECKPOINT"
#: (embed_dim of the Hiera trunk, number of Hiera blocks) -> size name of the official configs
HIERA_SIZES = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}
#: the config names ``sam2_config`` takes (the ``sam2`` package's own config files)
CONFIGS = tuple([f"configs/sam2.1/sam2.1_hiera_{s}.yaml" for s in ("t", "s", "b+", "l")]
                + [f"configs/sam2/sam2_hiera_{s}.yaml" for s in ("t", "s", "b+", "l")])
_models: SharedInstances[nn.Module] = SharedInstances()


def _sam2():
    try:
        import sam2  # noqa: F401  (initialises hydra's config module)
        from sam2.build_sam import build_sam2
        from sam2.utils.transforms import SAM2Transforms
    except ImportError as err:
        raise ImportError("backend 'sam2' needs Meta's sam2 package: pip install 'alignsam-gym[sam2]'") from err
    return build_sam2, SAM2Transforms


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a SAM 2 release checkpoint (``{"model": state_dict}``), loaded without unpickling code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises several types for damaged or code-carrying files
        raise ValueError(f"{path}: not a readable SAM 2 checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{path}: expected a SAM 2 release checkpoint, a dict with the state dict under 'model'")
    return state["model"]


def infer_config(state: dict[str, torch.Tensor], path: Path) -> str:
    """The official config of a SAM 2 state dict, from the Hiera trunk's width and depth (2.1 has
    ``no_obj_embed_spatial``, 2.0 does not)."""
    patch = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None:
        raise ValueError(f"{path}: no image_encoder.trunk.patch_embed.proj.weight, so not a SAM 2 checkpoint")
    blocks = {int(k.split(".")[3]) for k in state if k.startswith("image_encoder.trunk.blocks.")}
    key = (int(patch.shape[0]), max(blocks) + 1 if blocks else 0)
    if key not in HIERA_SIZES:
        raise ValueError(f"{path}: a Hiera trunk of width {key[0]} and {key[1]} blocks matches no official SAM 2 "
                         f"config; pass backend_kwargs={{'sam2_config': ...}} (one of {list(CONFIGS)})")
    size = HIERA_SIZES[key]
    if "no_obj_embed_spatial" in state:
        return f"configs/sam2.1/sam2.1_hiera_{size}.yaml"
    return f"configs/sam2/sam2_hiera_{size}.yaml"


def build_model(config: str) -> nn.Module:
    """An untrained SAM 2 of an official config, as ``build_sam2`` makes it (eval mode, on the CPU)."""
    build_sam2, _ = _sam2()
    return build_sam2(config, None, device="cpu", mode="eval")


def load_model(path: Path, config: str) -> nn.Module:
    """SAM 2 of ``config`` with the weights of ``path``, every tensor's presence and shape checked."""
    state = read_checkpoint(path)
    model = build_model(config)
    expected = model.state_dict()
    for name, tensor in expected.items():
        got = state.get(name)
        if got is None:
            raise ValueError(f"{path} does not match {config}: it has no {name} (expected shape {tuple(tensor.shape)})")
        if tuple(got.shape) != tuple(tensor.shape):
            raise ValueError(f"{path} does not match {config}: {name} has shape {tuple(got.shape)} in the file, "
                             f"{tuple(tensor.shape)} in the config")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ValueError(f"{path} does not match {config}: the file has tensors the config lacks: {extra[:5]}")
    model.load_state_dict(state)
    return model.eval()


class Sam2Backend(PromptableSegmenter):
    """SAM 2 / 2.1 behind the backend protocol (see the module docstring).

    :param checkpoint: a release checkpoint; default ``$ALIGNSAM_SAM2_CHECKPOINT``.
    :param sam2_config: the ``sam2`` package's config name (e.g. ``"configs/sam2.1/sam2.1_hiera_t.yaml"``);
        default: inferred from the checkpoint's tensor shapes.
    :param device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:0"``, ...
    """

    name = "sam2"

    def __init__(self, checkpoint: str | Path | None = None, sam2_config: str | None = None, device: str = "auto",
                 model_type: str | None = None) -> None:
        if model_type is not None:
            raise ValueError("backend 'sam2' takes sam2_config (backend_kwargs={'sam2_config': ...}), not sam_model_type")
        self.checkpoint = checkpoint_file(
            checkpoint, CHECKPOINT_ENV, f"backend 'sam2' needs a checkpoint: pass sam_checkpoint=PATH or set "
            f"{CHECKPOINT_ENV}; `alignsam weights list` shows the official files", "SAM 2")
        if sam2_config is not None and sam2_config not in CONFIGS:
            raise ValueError(f"sam2_config must be one of {list(CONFIGS)}, got {sam2_config!r}")
        self._config = sam2_config
        self.device_spec = DeviceSpec(device)
        self._digest: str | None = None

    @property
    def device(self) -> torch.device:
        return self.device_spec.device

    @property
    def config(self) -> str:
        """The model config that runs (given, or inferred from the checkpoint on first use)."""
        if self._config is None:
            self._config = infer_config(read_checkpoint(self.checkpoint), self.checkpoint)
        return self._config

    @property
    def identity(self) -> str:
        if self._digest is None:
            self._digest = sha256_of(self.checkpoint)
        return f"sam2-v1/{Path(self.config).stem}/{self._digest[:16]}/square1024{device_tag(self.device)}"

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return (256, 64, 64)  # every official SAM 2 config: 1024-px input, stride 16, 256 channels

    def model(self) -> nn.Module:
        """The loaded model, once per checkpoint, config and device in a process."""
        device = self.device
        key = (str(self.checkpoint.resolve()), self.config, str(device))
        return _models.get(key, lambda: load_model(self.checkpoint, self.config).to(device))

    # -- protocol --------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> ImageEmbedding:
        image = check_image(image)
        model = self.model()
        _, transforms_class = _sam2()
        transforms = transforms_class(resolution=model.image_size, mask_threshold=0.0)
        batch = transforms(np.array(image))[None].to(self.device)  # a writable copy (cached images are read-only)
        levels = model.forward_image(batch)["backbone_fpn"][-model.num_feature_levels:]
        embedding = levels[-1]
        if model.directly_add_no_mem_embed:  # as SAM2ImagePredictor.set_image: no memory for a single image
            embedding = embedding + model.no_mem_embed.view(1, -1, 1, 1)
        high_res = {f"high_res_{i}": level[0].float().cpu().numpy() for i, level in enumerate(levels[:-1])}
        side = 4 * embedding.shape[-1]  # the mask decoder's low-resolution output
        return ImageEmbedding(features=np.ascontiguousarray(embedding[0].float().cpu().numpy()),
                              image_shape=image.shape[:2], mask_shape=(side, side), decoder_state=high_res)

    @torch.inference_mode()
    def decode(self, embedding: ImageEmbedding, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        pts, lab = check_prompts(embedding, points, labels)
        model = self.model()
        h, w = embedding.image_shape
        coords = pts * np.array([model.image_size / w, model.image_size / h])
        coords_t = torch.as_tensor(coords, dtype=torch.float32, device=self.device)[None]
        labels_t = torch.as_tensor(lab, dtype=torch.int32, device=self.device)[None]
        sparse, dense = model.sam_prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=None)
        features = torch.as_tensor(np.array(embedding.features), device=self.device)[None]
        high_res = [torch.as_tensor(np.array(embedding.decoder_state[f"high_res_{i}"]), device=self.device)[None]
                    for i in range(len(embedding.decoder_state))]
        multimask = len(pts) == 1  # as the SAM backend: a lone point takes the best of three masks
        logits, predicted_iou, _, _ = model.sam_mask_decoder(
            image_embeddings=features, image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
            repeat_image=False, high_res_features=high_res)
        best = int(predicted_iou[0].argmax()) if multimask else 0
        return logits[0, best].float().cpu().numpy()


def make_sam2_backend(checkpoint: str | Path | None = None, device: str = "auto", **kwargs: Any) -> Sam2Backend:
    """Registry factory for ``backend="sam2"``."""
    return Sam2Backend(checkpoint=checkpoint, device=device, **kwargs)


def save_random_sam2(path: str | Path, config: str = "configs/sam2.1/sam2.1_hiera_t.yaml", seed: int = 0) -> Path:
    """An official SAM 2 architecture with random weights (seeded, the global torch RNG untouched), saved in the
    release format ``{"model": state_dict}``: tests and timing need the real architecture, not trained weights."""
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config)
    torch.save({"model": model.state_dict()}, path)
    return path
