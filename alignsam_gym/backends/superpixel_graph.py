"""Training-free point-prompt segmentation on superpixel affinity graphs: the embedded decoder.

At encode time an image is cut into SLIC superpixels, which become the nodes of a graph whose edges
join touching superpixels. Each edge gets an energy from the colour difference of its two superpixels,
the image gradient along their shared boundary and the difference of their CNN features; its weight is
``exp(-energy)``. At decode time the point prompts are soft seeds of a random walker (Grady 2006): the
foreground probability ``x`` minimises

    sum_ij w_ij (x_i - x_j)^2 + lambda * sum_seeds (x_s - y_s)^2 + sum_i mu_i x_i^2,

where ``mu_i`` is a weak background prior on the image border (so foreground-only prompts still give a
bounded mask): one sparse linear solve with about a thousand unknowns, a millisecond or two.

Two versions, both kept so that results recorded with either can be reproduced:

- ``v2`` (the default, :class:`GraphParams`): every energy term is divided by its mean over the image's
  edges, so each cue weighs the same on every image (v1's absolute scales left many images with edge
  weights below 1e-13, where one click grows one superpixel, or with an image-wide leak); an edge's
  weight grows with the length of the shared boundary; the background prior grows with the number of
  foreground prompts; the random walker runs on two superpixel scales (800 and 1,500) and averages
  them; after a calibrating exponent on the first click, a colour guided filter
  (:mod:`alignsam_gym.backends.guided_filter`) moves the mask's edges from superpixel boundaries to
  the image's edges at the working resolution.
- ``v1`` (:class:`GraphParamsV1`): one scale, absolute energy scales, no pixel-level step.

The standard click protocol (``alignsam bench clicks``, GrabCut, 20 clicks) measures v1 at NoC@90 8.68
and mean IoU after 5 clicks 0.811; the committed results of v2 are in ``experiments/results/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from skimage.segmentation import slic

from alignsam_gym.backends.guided_filter import guided_filter

#: the keys of one graph (one superpixel scale) in a decoder state
GRAPH_KEYS = ("segments", "edge_index", "edge_energy", "prior")


@dataclass(frozen=True)
class GraphParams:
    """Parameters of the ``v2`` decoder (the default).

    Chosen with the standard click protocol on 40 CCP person images (every 7th of 300) and the 50
    GrabCut images, keeping a change only when it helped on both, and, for the prior and the exponent,
    with foreground-only prompting in the env (the README lists what was tried).

    :param n_segments: SLIC superpixels per image (about), one graph per entry; the random walker's
        probabilities are averaged over the graphs.
    :param compactness: SLIC compactness (higher = more regular superpixels).
    :param color_weight: weight of the squared mean-Lab-colour difference of neighbours, over its image mean.
    :param boundary_weight: weight of the mean gradient along the shared boundary, over its image mean.
    :param feature_weight: weight of each CNN map's squared feature difference (L2-normalised features),
        over its image mean.
    :param seed_weight: ``lambda``, the pull of a prompt on its superpixel.
    :param border_prior: ``mu`` on superpixels touching the image border (weak background prior), per
        foreground prompt (see ``prior_per_foreground``).
    :param prior_per_foreground: multiply the priors (``min_prior`` too) by the number of foreground
        prompts, so that the pull towards background keeps up with the pull towards foreground (with a
        fixed prior, a dozen foreground prompts on an object with weak edges flood the background: an
        agent that prompts only foreground, as the +-1 reward teaches, got worse masks than random
        prompts).
    :param min_prior: ``mu`` everywhere else; keeps the system non-singular.
    :param exponent: the averaged probability is raised to this power before the pixel-level step when
        the prompts include a background point (1: not at all).
    :param exponent_no_background: the same while every prompt is foreground (the first click). Below 1
        it lifts the mid-range: across each weak edge inside an object the random walker's probability
        falls by a factor, and with only the weak border prior standing for the background, the 0.5
        level of a textured object lies well inside its outline.
    :param refine_radius: guided-filter window radius in pixels of the working resolution; 0 turns the
        pixel-level step off.
    :param refine_eps: guided-filter ridge, in squared [0, 1] colour units.
    :param refine_subsample: the guided filter fits its coefficients this many times smaller.
    """

    n_segments: tuple[int, ...] = (800, 1500)
    compactness: float = 10.0
    color_weight: float = 1.0
    boundary_weight: float = 1.0
    feature_weight: float = 2.0
    seed_weight: float = 100.0
    border_prior: float = 1e-3
    prior_per_foreground: bool = True
    min_prior: float = 1e-12
    exponent: float = 1.0
    exponent_no_background: float = 0.5
    refine_radius: int = 4
    refine_eps: float = 0.01
    refine_subsample: int = 2

    def __post_init__(self) -> None:
        if not self.n_segments or any(int(n) < 2 for n in self.n_segments):
            raise ValueError(f"n_segments must list at least one count >= 2, got {self.n_segments}")
        if self.exponent <= 0 or self.exponent_no_background <= 0:
            raise ValueError(f"the exponents must be positive, got {self.exponent}, {self.exponent_no_background}")
        if self.refine_radius < 0 or self.refine_subsample < 1 or self.refine_eps <= 0:
            raise ValueError("refine_radius must be >= 0, refine_subsample >= 1 and refine_eps > 0, got "
                             f"{self.refine_radius}, {self.refine_subsample}, {self.refine_eps}")


@dataclass(frozen=True)
class GraphParamsV1:
    """Parameters of the ``v1`` decoder (the embedded default up to package version 0.1).

    Chosen by a small grid search on 15 CCP person images (every 20th).

    :param n_segments: SLIC superpixels per image (about).
    :param compactness: SLIC compactness (higher = more regular superpixels).
    :param sigma_color: scale of the mean-Lab-colour distance between neighbours (OpenCV 8-bit Lab units).
    :param sigma_feature: scale of the distance between L2-normalised CNN features of neighbours.
    :param boundary_scale: the boundary term is ``gradient / (boundary_scale * median gradient)``.
    :param seed_weight: ``lambda``, the pull of a prompt on its superpixel.
    :param border_prior: ``mu`` on superpixels touching the image border (weak background prior).
    :param min_prior: ``mu`` everywhere else; only keeps the system non-singular if weights underflow
        (edge weights span many orders of magnitude, so this must stay far below them).
    :param min_weight: edge weights below this are raised to it at decode time. v1's absolute energy
        scales give weights down to ``exp(-82)``; a system mixing such weights with weights near 1 is
        beyond float64, and its solution is decided by rounding: a ``1e-7`` relative change of the
        energies (what another CPU's kernels give) moved mask probabilities by up to 1.0 (whole
        superpixels flipped), so masks differed between machines. With the floor at ``1e-14`` the same
        change moved none by more than ``1e-4``. Chosen by ``experiments/decoder_v1_floor.py``
        (``experiments/results/decoder_v1_floor.json``: 12 test images of three synthetic tasks, random
        prompts, ground-truth labels) as the floor that kept that bound with the mean IoU closest to the
        unfloored decoder's (0.591 / 0.705 / 0.240 against 0.669 / 0.700 / 0.235 on mirror / saliency /
        shapes; lower floors let rounding back in, higher ones changed more masks). ``0``: no floor, the
        decoder of package version 0.1, whose masks depend on the CPU.
    """

    n_segments: int = 800
    compactness: float = 10.0
    sigma_color: float = 60.0
    sigma_feature: float = 0.15
    boundary_scale: float = 10.0
    seed_weight: float = 100.0
    border_prior: float = 0.01
    min_prior: float = 1e-30
    min_weight: float = 1e-14


@dataclass(frozen=True)
class _Edges:
    """The raw edge terms of one superpixel graph (``E`` edges between ``n`` superpixels)."""

    segments: np.ndarray  # (h, w) int32 superpixel id per pixel
    index: np.ndarray  # (E, 2) int64 node pairs, i < j
    color: np.ndarray  # (E,) squared mean-Lab difference
    boundary: np.ndarray  # (E,) mean gradient magnitude along the shared boundary
    length: np.ndarray  # (E,) pixel pairs on the shared boundary
    features: list[np.ndarray]  # per feature map, (E,) squared difference of L2-normalised means
    border: np.ndarray  # ids of superpixels touching the image border


def _edges(image: np.ndarray, feature_maps: list[np.ndarray], n_segments: int, compactness: float) -> _Edges:
    h, w = image.shape[:2]
    segments = slic(image, n_segments=n_segments, compactness=compactness, start_label=0,
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
    length = np.bincount(inverse)
    boundary = np.bincount(inverse, g[crossing]) / length
    i, j = pair_key // n, pair_key % n

    features = []
    for dense in feature_maps:
        feats = np.asarray(membership @ dense.reshape(dense.shape[0], -1).T) / counts[:, None]
        feats /= np.linalg.norm(feats, axis=1, keepdims=True) + 1e-6
        features.append(((feats[i] - feats[j]) ** 2).sum(1))
    return _Edges(segments=segments, index=np.stack([i, j], 1), color=((mean_color[i] - mean_color[j]) ** 2).sum(1),
                  boundary=boundary, length=length, features=features,
                  border=np.unique(np.concatenate([segments[0], segments[-1], segments[:, 0], segments[:, -1]])))


def _graph(edges: _Edges, energy: np.ndarray, border_prior: float, min_prior: float) -> dict[str, np.ndarray]:
    prior = np.full(int(edges.segments.max()) + 1, min_prior, np.float64)
    prior[edges.border] = border_prior
    return {"segments": edges.segments, "edge_index": edges.index.astype(np.int32),
            "edge_energy": energy.astype(np.float32), "prior": prior}


def build_graph(image: np.ndarray, feature_maps: list[np.ndarray], params: GraphParamsV1) -> dict[str, np.ndarray]:
    """The ``v1`` superpixel graph of one image.

    :param image: ``(h, w, 3) uint8`` RGB image at the decoder's working resolution.
    :param feature_maps: dense ``(C_k, h, w) float32`` feature maps at the same resolution (may be
        empty); each is averaged per superpixel and L2-normalised on its own, so each map weighs the
        same whatever its channel count.
    :return: arrays ``segments (h, w) int32`` (superpixel id per pixel), ``edge_index (E, 2) int32``,
        ``edge_energy (E,) float32`` (the weight is ``exp(-energy)``, taken in float64 at decode time
        because weights span far more than float32's range) and ``prior (n,) float64`` (the ``mu_i``).
    """
    edges = _edges(image, feature_maps, params.n_segments, params.compactness)
    energy = edges.color / params.sigma_color**2
    energy += edges.boundary / (params.boundary_scale * max(float(np.median(edges.boundary)), 1e-6))
    for term in edges.features:
        energy += term / (len(feature_maps) * params.sigma_feature**2)
    return _graph(edges, energy, params.border_prior, params.min_prior)


def _normalised(term: np.ndarray) -> np.ndarray:
    """``term`` over its mean on the image (the floor keeps a flat image, all terms near 0, finite)."""
    return term / max(float(np.mean(term)), 1e-3)


def build_graphs(image: np.ndarray, feature_maps: list[np.ndarray], params: GraphParams) -> dict[str, np.ndarray]:
    """The ``v2`` decoder state of one image: one graph per superpixel scale, and the guide image.

    :param image: ``(h, w, 3) uint8`` RGB image at the decoder's working resolution.
    :param feature_maps: dense ``(C_k, h, w) float32`` feature maps at the same resolution (may be empty).
    :return: for scale ``k``, the arrays of :func:`build_graph` under ``<key>_<k>`` (the energy now
        normalised per term and lowered by the log of the relative boundary length, so the weight is
        ``exp(-energy) * length / mean length``), and ``guide (h, w, 3) uint8``, the image itself.
    """
    state: dict[str, np.ndarray] = {"guide": np.ascontiguousarray(image, dtype=np.uint8)}
    for k, n_segments in enumerate(params.n_segments):
        edges = _edges(image, feature_maps, int(n_segments), params.compactness)
        energy = params.color_weight * _normalised(edges.color) + params.boundary_weight * _normalised(edges.boundary)
        for term in edges.features:
            energy = energy + params.feature_weight * _normalised(term)
        energy = energy - np.log(edges.length / np.mean(edges.length))
        for key, value in _graph(edges, energy, params.border_prior, params.min_prior).items():
            state[f"{key}_{k}"] = value
    return state


def _prompt_nodes(graph: dict[str, np.ndarray], points_xy: np.ndarray) -> np.ndarray:
    """``(N,) int64``: the superpixel under each ``(x, y)`` point of the working resolution."""
    segments = graph["segments"]
    h, w = segments.shape
    cols = np.clip(np.floor(points_xy[:, 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(points_xy[:, 1]).astype(np.int64), 0, h - 1)
    return segments[rows, cols].astype(np.int64)


def _system(graph: dict[str, np.ndarray], nodes: np.ndarray, labels: np.ndarray, seed_weight: float,
            min_weight: float) -> tuple[sp.csc_matrix, np.ndarray]:
    """The random walker's linear system ``A x = b`` for prompts on ``nodes``: ``A = L + diag(seeds + prior)``
    (``L`` the graph Laplacian), ``b`` the seeds' pull towards their labels."""
    n = graph["prior"].shape[0]
    seed = np.zeros(n)
    target = np.zeros(n)
    np.add.at(seed, nodes, seed_weight)
    np.add.at(target, nodes, seed_weight * labels.astype(np.float64))
    i, j = graph["edge_index"][:, 0], graph["edge_index"][:, 1]
    energy = graph["edge_energy"].astype(np.float64)
    if min_weight > 0:
        energy = np.minimum(energy, -np.log(min_weight))
    wgt = np.exp(-energy)
    degree = np.bincount(i, wgt, n) + np.bincount(j, wgt, n)
    system = sp.csc_matrix((np.concatenate([-wgt, -wgt, degree + seed + graph["prior"]]),
                            (np.concatenate([i, j, np.arange(n)]), np.concatenate([j, i, np.arange(n)]))),
                           shape=(n, n))
    return system, target


def random_walker(graph: dict[str, np.ndarray], points_xy: np.ndarray, labels: np.ndarray,
                  seed_weight: float, min_weight: float = 0.0) -> np.ndarray:
    """Foreground probability per superpixel of one graph from point prompts.

    :param graph: the arrays of :func:`build_graph` (``segments``, ``edge_index``, ``edge_energy``, ``prior``).
    :param points_xy: ``(N, 2)`` prompt coordinates ``(x, y)`` in pixels of the working resolution.
    :param labels: ``(N,)`` 1 = foreground, 0 = background.
    :param seed_weight: ``lambda``, the pull of a prompt on its superpixel.
    :param min_weight: the smallest edge weight (``0``: none); see :class:`GraphParamsV1`.
    :return: ``(n,) float64`` probabilities in [0, 1].
    """
    system, target = _system(graph, _prompt_nodes(graph, points_xy), labels, seed_weight, min_weight)
    return np.clip(spla.spsolve(system, target), 0.0, 1.0)


def random_walker_candidates(graph: dict[str, np.ndarray], points_xy: np.ndarray, labels: np.ndarray,
                             candidates_xy: np.ndarray, candidate_labels: np.ndarray, seed_weight: float,
                             min_weight: float = 0.0) -> np.ndarray:
    """:func:`random_walker` for the prompts plus one candidate prompt each, from one factorisation.

    A candidate adds ``lambda`` to one diagonal entry ``k`` of ``A`` and ``lambda * y`` to ``b``: a rank-one
    change, so (Sherman-Morrison, ``g = A^-1 e_k``) its solution is ``x + g * lambda (y - x_k) / (1 + lambda g_k)``.
    One sparse LU of ``A`` and one multi-column solve for the distinct candidate superpixels replace a
    factorisation per candidate (the one-step lookaheads decode up to a hundred candidates a step).
    Equal to ``[random_walker(graph, [points; c], [labels; y], ...) for c, y in candidates]`` up to rounding.

    :param candidates_xy: ``(K, 2)`` candidate prompt coordinates ``(x, y)``, working resolution.
    :param candidate_labels: ``(K,)`` their labels, 1 = foreground, 0 = background.
    :return: ``(K, n) float64`` probabilities in [0, 1].
    """
    system, target = _system(graph, _prompt_nodes(graph, points_xy), labels, seed_weight, min_weight)
    nodes = _prompt_nodes(graph, candidates_xy)
    if nodes.size == 0:
        return np.zeros((0, target.size))
    try:
        lu = spla.splu(system)
    except RuntimeError:  # singular without the candidate's seed (min_weight 0, an unseeded island): one solve each
        return np.stack([random_walker(graph, np.concatenate([points_xy.reshape(-1, 2), c[None]]),
                                       np.concatenate([labels, [y]]), seed_weight, min_weight)
                         for c, y in zip(candidates_xy, candidate_labels)])
    base = lu.solve(target)
    distinct, column = np.unique(nodes, return_inverse=True)
    unit = np.zeros((target.size, distinct.size))
    unit[distinct, np.arange(distinct.size)] = 1.0
    green = lu.solve(unit)[:, column]  # (n, K): A^-1 e_k for each candidate's superpixel
    pull = seed_weight * (np.asarray(candidate_labels, np.float64) - base[nodes])
    scale = pull / (1.0 + seed_weight * green[nodes, np.arange(nodes.size)])
    return np.clip(base[None, :] + scale[:, None] * green.T, 0.0, 1.0)


def refined_random_walker(state: dict[str, np.ndarray], points_xy: np.ndarray, labels: np.ndarray,
                          params: GraphParams) -> np.ndarray:
    """The ``v2`` foreground probability per pixel of the working resolution.

    :param state: the output of :func:`build_graphs` for the same ``params``.
    :param points_xy: ``(N, 2)`` prompt coordinates ``(x, y)`` in pixels of the working resolution.
    :param labels: ``(N,)`` 1 = foreground, 0 = background.
    :return: ``(h, w) float32`` probabilities in [0, 1]: the mean over the scales of the random walker's
        superpixel probabilities (priors times the number of foreground prompts), raised to the exponent,
        then (``refine_radius > 0``) guided by the image's colours.
    """
    labels = np.asarray(labels)
    prob = sum(random_walker(_scale_graph(state, k, labels, params), points_xy, labels, params.seed_weight)
               [state[f"segments_{k}"]] for k in range(len(params.n_segments)))
    return _finish(state, (prob / len(params.n_segments)).astype(np.float32), labels, params)


def refined_random_walker_candidates(state: dict[str, np.ndarray], points_xy: np.ndarray, labels: np.ndarray,
                                     candidates_xy: np.ndarray, candidate_labels: np.ndarray,
                                     params: GraphParams) -> np.ndarray:
    """:func:`refined_random_walker` for the prompts plus one candidate prompt each: per scale, one factorisation
    for the candidates of each label (a foreground candidate also scales the prior), then
    :func:`random_walker_candidates`; the exponent and the guided filter per candidate.

    :return: ``(K, h, w) float32`` probabilities in [0, 1].
    """
    labels, candidate_labels = np.asarray(labels), np.asarray(candidate_labels)
    out = np.zeros((len(candidate_labels), *state["guide"].shape[:2]), np.float32)
    for label in np.unique(candidate_labels):
        chosen = np.flatnonzero(candidate_labels == label)
        after = np.concatenate([labels, [label]])  # the labels every candidate of this group decodes with
        prob = sum(random_walker_candidates(_scale_graph(state, k, after, params), points_xy, labels,
                                            candidates_xy[chosen], candidate_labels[chosen], params.seed_weight)
                   [:, state[f"segments_{k}"]] for k in range(len(params.n_segments)))
        prob = (prob / len(params.n_segments)).astype(np.float32)
        out[chosen] = [_finish(state, p, after, params) for p in prob]
    return out


def _scale_graph(state: dict[str, np.ndarray], k: int, labels: np.ndarray, params: GraphParams
                 ) -> dict[str, np.ndarray]:
    """Scale ``k``'s graph for prompts with ``labels``: the prior times the number of foreground prompts."""
    graph = {key: state[f"{key}_{k}"] for key in GRAPH_KEYS}
    foreground = int((labels == 1).sum())
    if params.prior_per_foreground and foreground > 1:
        graph["prior"] = graph["prior"] * foreground
    return graph


def _finish(state: dict[str, np.ndarray], prob: np.ndarray, labels: np.ndarray, params: GraphParams) -> np.ndarray:
    """The pixel-level step of ``v2`` on the mean ``(h, w) float32`` probability: the exponent, the guided filter."""
    exponent = params.exponent if (labels == 0).any() else params.exponent_no_background
    if exponent != 1.0:
        prob = prob ** np.float32(exponent)
    if params.refine_radius:
        prob = guided_filter(state["guide"].astype(np.float32) / 255.0, prob, params.refine_radius,
                             params.refine_eps, params.refine_subsample)
    return np.clip(prob, 0.0, 1.0)
