"""Training-free point-prompt segmentation on a superpixel affinity graph.

The decoder of the embedded backend. At encode time an image is cut into SLIC superpixels and the
superpixels become the nodes of a graph whose edge weights fall with colour difference, CNN-feature
difference and the image gradient along the shared boundary. At decode time the point prompts are
soft seeds of a random walker (Grady 2006): the foreground probability ``x`` minimises

    sum_ij w_ij (x_i - x_j)^2 + lambda * sum_seeds (x_s - y_s)^2 + sum_i mu_i x_i^2,

where ``mu_i`` is a weak background prior on the image border (so foreground-only prompts still give
a bounded mask). That is one sparse linear solve with about 800 unknowns, a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from skimage.segmentation import slic


@dataclass(frozen=True)
class GraphParams:
    """Parameters of graph construction and decoding.

    Chosen by a small grid search on 15 CCP person images (every 20th); the committed benchmark
    covers all 300.

    :param n_segments: SLIC superpixels per image (about).
    :param compactness: SLIC compactness (higher = more regular superpixels).
    :param sigma_color: scale of the mean-Lab-colour distance between neighbours (OpenCV 8-bit Lab units).
    :param sigma_feature: scale of the distance between L2-normalised CNN features of neighbours.
    :param boundary_scale: the boundary term is ``gradient / (boundary_scale * median gradient)``.
    :param seed_weight: ``lambda``, the pull of a prompt on its superpixel.
    :param border_prior: ``mu`` on superpixels touching the image border (weak background prior).
    :param min_prior: ``mu`` everywhere else; only keeps the system non-singular if weights underflow
        (edge weights span many orders of magnitude, so this must stay far below them).
    """

    n_segments: int = 800
    compactness: float = 10.0
    sigma_color: float = 60.0
    sigma_feature: float = 0.15
    boundary_scale: float = 10.0
    seed_weight: float = 100.0
    border_prior: float = 0.01
    min_prior: float = 1e-30


def build_graph(image: np.ndarray, feature_maps: list[np.ndarray], params: GraphParams) -> dict[str, np.ndarray]:
    """Superpixel graph of one image.

    :param image: ``(h, w, 3) uint8`` RGB image at the decoder's working resolution.
    :param feature_maps: dense ``(C_k, h, w) float32`` feature maps at the same resolution (may be
        empty); each is averaged per superpixel and L2-normalised on its own, so each map weighs the
        same whatever its channel count, and their concatenation has unit norm.
    :return: arrays ``segments (h, w) int32`` (superpixel id per pixel), ``edge_index (E, 2) int32``,
        ``edge_energy (E,) float32`` (the weight is ``exp(-energy)``, taken in float64 at decode time
        because weights span far more than float32's range) and ``prior (n,) float64`` (the ``mu_i``).
    """
    h, w = image.shape[:2]
    segments = slic(image, n_segments=params.n_segments, compactness=params.compactness, start_label=0,
                    convert2lab=True, enforce_connectivity=True).astype(np.int32)
    n = int(segments.max()) + 1
    flat = segments.ravel()
    membership = sp.csr_matrix((np.ones(flat.size, np.float32), (flat, np.arange(flat.size))), shape=(n, flat.size))
    counts = np.asarray(membership.sum(axis=1)).ravel()

    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    mean_color = (membership @ lab.reshape(-1, 3)) / counts[:, None]

    # Neighbouring superpixels: every 4-connected pixel pair that crosses a boundary.
    grad = np.zeros((h, w), np.float32)
    for c in range(3):
        grad += cv2.Sobel(lab[..., c], cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(lab[..., c], cv2.CV_32F, 0, 1) ** 2
    grad = np.sqrt(grad)
    a = np.concatenate([segments[:, :-1].ravel(), segments[:-1, :].ravel()])
    b = np.concatenate([segments[:, 1:].ravel(), segments[1:, :].ravel()])
    g = np.concatenate([np.maximum(grad[:, :-1], grad[:, 1:]).ravel(), np.maximum(grad[:-1, :], grad[1:, :]).ravel()])
    crossing = a != b
    lo = np.minimum(a[crossing], b[crossing]).astype(np.int64)
    hi = np.maximum(a[crossing], b[crossing]).astype(np.int64)
    pair_key, inverse = np.unique(lo * n + hi, return_inverse=True)
    boundary = np.bincount(inverse, g[crossing]) / np.bincount(inverse)
    i, j = pair_key // n, pair_key % n

    energy = ((mean_color[i] - mean_color[j]) ** 2).sum(1) / params.sigma_color**2
    energy += boundary / (params.boundary_scale * max(float(np.median(boundary)), 1e-6))
    for dense in feature_maps:
        feats = np.asarray(membership @ dense.reshape(dense.shape[0], -1).T) / counts[:, None]
        feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-6
        energy += ((feats[i] - feats[j]) ** 2).sum(1) / (len(feature_maps) * params.sigma_feature**2)

    prior = np.full(n, params.min_prior, np.float64)
    border = np.unique(np.concatenate([segments[0], segments[-1], segments[:, 0], segments[:, -1]]))
    prior[border] = params.border_prior
    return {
        "segments": segments,
        "edge_index": np.stack([i, j], 1).astype(np.int32),
        "edge_energy": energy.astype(np.float32),
        "prior": prior,
    }


def random_walker(graph: dict[str, np.ndarray], points_xy: np.ndarray, labels: np.ndarray,
                  params: GraphParams) -> np.ndarray:
    """Foreground probability per superpixel from point prompts.

    :param graph: the output of :func:`build_graph`.
    :param points_xy: ``(N, 2)`` prompt coordinates ``(x, y)`` in pixels of the working resolution.
    :param labels: ``(N,)`` 1 = foreground, 0 = background.
    :return: ``(n,) float64`` probabilities in [0, 1].
    """
    segments = graph["segments"]
    h, w = segments.shape
    n = graph["prior"].shape[0]
    cols = np.clip(np.floor(points_xy[:, 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(points_xy[:, 1]).astype(np.int64), 0, h - 1)
    nodes = segments[rows, cols]
    seed = np.zeros(n)
    target = np.zeros(n)
    np.add.at(seed, nodes, params.seed_weight)
    np.add.at(target, nodes, params.seed_weight * labels.astype(np.float64))

    i, j = graph["edge_index"][:, 0], graph["edge_index"][:, 1]
    wgt = np.exp(-graph["edge_energy"].astype(np.float64))
    degree = np.bincount(i, wgt, n) + np.bincount(j, wgt, n)
    system = sp.csc_matrix((np.concatenate([-wgt, -wgt, degree + seed + graph["prior"]]),
                            (np.concatenate([i, j, np.arange(n)]), np.concatenate([j, i, np.arange(n)]))),
                           shape=(n, n))
    return np.clip(spla.spsolve(system, target), 0.0, 1.0)
