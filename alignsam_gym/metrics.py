"""Segmentation metrics as functions of numpy arrays (the paper's Tables 2, 3, 8, 9 and Eq. 14).

Conventions, stated once:

- ``pred`` is a boolean mask, or a foreground probability in [0, 1] where a metric needs one
  (``mae`` and the threshold sweeps of ``f_measure_curve``); ``target`` is a boolean mask of the
  same shape.
- Per-image scores are averaged over images for a dataset (``mIoU`` = mean per-image IoU), except
  where the literature aggregates counts over the dataset (``ber_counts``, say so in a report).
- Empty cases are defined, never NaN: see each function.
- ``ignore`` (optional, boolean, ``target``'s shape): unlabelled pixels (GrabCut's boundary band);
  every metric counts only the labelled ones.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

#: the beta^2 of the salient-object-detection F-measure (Achanta et al. 2009)
BETA2 = 0.3
EPS = np.finfo(np.float64).eps


def _labelled(pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``target`` at the labelled pixels only (flattened), or as they are without ``ignore``."""
    if ignore is None:
        return pred, target
    ignore = np.asarray(ignore)
    if ignore.shape != target.shape or ignore.dtype != bool:
        raise ValueError(f"ignore must be a boolean mask of the target's shape {target.shape}, got {ignore.shape} "
                         f"{ignore.dtype}")
    keep = ~ignore
    return pred[keep], target[keep]


def _pair(pred: np.ndarray, target: np.ndarray, binary: bool = True,
          ignore: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    if target.dtype != bool:
        raise ValueError(f"target must be a boolean mask, got dtype {target.dtype}")
    if binary and pred.dtype != bool:
        raise ValueError(f"pred must be a boolean mask here, got dtype {pred.dtype} (threshold probabilities first)")
    return _labelled(pred, target, ignore)


def iou(pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two boolean masks of the same shape: ``|P & G| / |P | G|``, over the
    labelled pixels.

    Both empty counts as a perfect match (1.0).
    """
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    pred, target = _labelled(pred, target, ignore)
    union = np.count_nonzero(pred | target)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & target) / union)


def ious(preds: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """:func:`iou` of each of many predictions with one target, in one pass (a lookahead's candidates).

    :param preds: ``(K, H, W) bool`` masks.
    :param target: ``(H, W) bool``; ``ignore`` ``(H, W) bool`` or None, as for :func:`iou`.
    :return: ``(K,) float64``, equal to ``[iou(p, target, ignore) for p in preds]``.
    """
    preds, target = np.asarray(preds, bool), np.asarray(target, bool)
    if preds.ndim != target.ndim + 1 or preds.shape[1:] != target.shape:
        raise ValueError(f"preds must have shape (K, *{target.shape}) to match the target, got {preds.shape}")
    if ignore is not None:
        _labelled(target, target, ignore)  # the same checks of ignore as iou's
        keep = ~np.asarray(ignore)
        preds, target = preds[:, keep], target[keep]
    flat = preds.reshape(len(preds), target.size)
    target = target.reshape(-1)
    inter = np.count_nonzero(flat & target, axis=1)
    union = np.count_nonzero(flat | target, axis=1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1)).astype(np.float64)


def miou(ious: Iterable[float]) -> float:
    """Mean of per-image IoUs (the paper's mIoU for binary tasks)."""
    values = np.asarray(list(ious), dtype=np.float64)
    if values.size == 0:
        raise ValueError("miou needs at least one IoU")
    return float(values.mean())


def class_mean_iou(ious_by_class: dict[str, Iterable[float]]) -> float:
    """Pascal VOC style: the mean over classes of each class's mean per-image IoU."""
    if not ious_by_class:
        raise ValueError("class_mean_iou needs at least one class")
    return float(np.mean([miou(v) for v in ious_by_class.values()]))


def precision_recall(pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> tuple[float, float]:
    """``(TP / |P|, TP / |G|)``; an empty prediction has precision 1 if the target is empty too, else 0;
    an empty target has recall 1 if the prediction is empty, else 0."""
    pred, target = _pair(pred, target, ignore=ignore)
    tp = np.count_nonzero(pred & target)
    n_pred, n_true = np.count_nonzero(pred), np.count_nonzero(target)
    precision = tp / n_pred if n_pred else float(n_true == 0)
    recall = tp / n_true if n_true else float(n_pred == 0)
    return float(precision), float(recall)


def f_beta(pred: np.ndarray, target: np.ndarray, beta2: float = BETA2, ignore: np.ndarray | None = None) -> float:
    """``(1 + b^2) P R / (b^2 P + R)`` with ``b^2 = 0.3`` (Achanta et al. 2009), 0 when ``P = R = 0``."""
    p, r = precision_recall(pred, target, ignore)
    return 0.0 if p == 0 and r == 0 else float((1 + beta2) * p * r / (beta2 * p + r))


def adaptive_threshold(prob: np.ndarray) -> float:
    """Twice the mean of the probability map, capped at 1 (Achanta et al. 2009; the SOD convention)."""
    return float(min(2.0 * float(np.mean(prob)), 1.0))


def f_measure(prob: np.ndarray, target: np.ndarray, beta2: float = BETA2, ignore: np.ndarray | None = None) -> float:
    """Adaptive F-measure: ``f_beta`` of ``prob >= adaptive_threshold(prob)`` (the threshold from the
    labelled pixels' mean).

    A binary prediction (``bool``) is used as it is.
    """
    prob, target = _pair(prob, np.asarray(target), binary=False, ignore=ignore)
    pred = prob if prob.dtype == bool else prob >= adaptive_threshold(prob)
    return f_beta(pred, target, beta2)


def f_measure_curve(prob: np.ndarray, target: np.ndarray, beta2: float = BETA2,
                    thresholds: int = 256) -> dict[str, float]:
    """F-beta at ``thresholds`` evenly spaced thresholds in [0, 1] (``prob >= t``): its maximum
    (``max``, "maxF") and mean (``mean``, "meanF"), the two other SOD conventions."""
    prob = np.asarray(prob, dtype=np.float64)
    scores = [f_beta(prob >= t, np.asarray(target), beta2) for t in np.linspace(0, 1, thresholds)]
    return {"max": float(np.max(scores)), "mean": float(np.mean(scores))}


def confusion_counts(pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> dict[str, int]:
    """``tp``, ``tn``, ``n_pos`` (foreground pixels of the target) and ``n_neg`` (background pixels)."""
    pred, target = _pair(pred, target, ignore=ignore)
    return {"tp": int(np.count_nonzero(pred & target)), "tn": int(np.count_nonzero(~pred & ~target)),
            "n_pos": int(np.count_nonzero(target)), "n_neg": int(np.count_nonzero(~target))}


def ber_counts(counts: Iterable[dict[str, int]]) -> float:
    """Balance error rate in percent, ``100 (1 - (TP/N_pos + TN/N_neg) / 2)``, from counts summed over
    images (the shadow-detection convention, Vicente et al. 2016). A class absent from every image is
    left out of the mean."""
    total = {"tp": 0, "tn": 0, "n_pos": 0, "n_neg": 0}
    for c in counts:
        for key in total:
            total[key] += int(c[key])
    rates = []
    if total["n_pos"]:
        rates.append(total["tp"] / total["n_pos"])
    if total["n_neg"]:
        rates.append(total["tn"] / total["n_neg"])
    if not rates:
        raise ValueError("ber_counts needs at least one pixel")
    return float(100.0 * (1.0 - np.mean(rates)))


def ber(pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Balance error rate of one image in percent (see :func:`ber_counts`)."""
    return ber_counts([confusion_counts(pred, target, ignore)])


def e_measure(pred: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Enhanced-alignment measure E-phi of a binary prediction (Fan et al., IJCAI 2018).

    With ``phi_X = X - mean(X)``, the alignment ``xi = 2 phi_G phi_P / (phi_G^2 + phi_P^2 + eps)`` is
    enhanced to ``(1 + xi)^2 / 4`` and summed over pixels divided by ``(w h - 1 + eps)``, as the
    authors' code does. An empty target scores ``mean(1 - P)``-like (the enhanced map is ``1 - P``),
    an all-foreground target uses ``P``. With ``ignore``, the sums and means run over the labelled pixels.
    """
    pred, target = _pair(pred, target, ignore=ignore)
    p, g = pred.astype(np.float64), target.astype(np.float64)
    if not target.any():
        enhanced = 1.0 - p
    elif target.all():
        enhanced = p
    else:
        ap, ag = p - p.mean(), g - g.mean()
        align = 2.0 * ag * ap / (ag * ag + ap * ap + EPS)
        enhanced = (align + 1.0) ** 2 / 4.0
    return float(enhanced.sum() / (p.size - 1 + EPS))


def mae(prob: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Mean absolute error between a probability map (or binary mask) and the target, in [0, 1]."""
    prob, target = _pair(prob, target, binary=False, ignore=ignore)
    return float(np.mean(np.abs(prob.astype(np.float64) - target)))


def foreground_rate(is_foreground: Iterable[bool]) -> float:
    """Fraction of chosen points on ground-truth foreground (paper Eq. 14)."""
    values = np.asarray(list(is_foreground), dtype=bool)
    if values.size == 0:
        raise ValueError("foreground_rate needs at least one point")
    return float(values.mean())


def prompts_to_reach(ious: Sequence[float], threshold: float, never: int) -> int:
    """NoC: the number of prompts after which the IoU first reaches ``threshold`` (``never`` when it does not).

    :param ious: the IoU after prompt 1, 2, ... (not the IoU before the first one).
    :param threshold: e.g. 0.85 or 0.9.
    :param never: the count when the threshold is never reached: ``T + 1`` for a budget of ``T`` prompts (the
        env's convention), ``max_clicks`` in the interactive-segmentation protocol (its convention).
    """
    return next((k + 1 for k, value in enumerate(ious) if value >= threshold), never)


def prompt_efficiency(curves: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The prompt-efficiency metrics of episodes: ``miou_at`` (mean IoU after k = 1..T prompts), ``auc`` (the mean
    of ``miou_at``: the area under that curve over T prompts, in [0, 1]), ``noc85`` and ``noc90`` (mean prompts to
    reach IoU 0.85 / 0.9, T + 1 when never).

    :param curves: per episode, the IoU after 0, 1, ..., T prompts (``T + 1`` values, all of the same length).
    """
    after = np.asarray(curves, dtype=np.float64)[:, 1:]
    if after.ndim != 2 or after.shape[1] == 0:
        raise ValueError("prompt_efficiency needs at least one episode of at least one prompt")
    budget = after.shape[1]
    at = after.mean(axis=0)
    return {"miou_at": [float(v) for v in at], "auc": float(at.mean()),
            **{f"noc{round(t * 100)}": float(np.mean([prompts_to_reach(c, t, budget + 1) for c in after]))
               for t in (0.85, 0.9)}}


def mask_metrics(prob: np.ndarray, target: np.ndarray, ignore: np.ndarray | None = None) -> dict[str, float]:
    """Every per-image metric of a probability map: ``iou``, ``f_beta`` (at 0.5), ``f_adaptive``,
    ``e_measure`` (at 0.5), ``mae``, ``ber`` and the confusion counts for dataset-level BER, each over the
    labelled pixels."""
    prob = np.asarray(prob, dtype=np.float64)
    pred = prob > 0.5
    return {"iou": iou(pred, target, ignore), "f_beta": f_beta(pred, target, ignore=ignore),
            "f_adaptive": f_measure(prob, target, ignore=ignore), "e_measure": e_measure(pred, target, ignore),
            "mae": mae(prob, target, ignore), "ber": ber(pred, target, ignore), **confusion_counts(pred, target, ignore)}
