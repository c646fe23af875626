"""Metrics against values computed by hand and against independent pure-Python implementations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alignsam_gym import metrics as m

# 4x4 example: prediction covers 6 pixels, target 4, they share 3
P = np.zeros((4, 4), bool)
P[0, :3] = P[1, :3] = True
G = np.zeros((4, 4), bool)
G[1, 1:3] = G[2, 1:3] = True


def test_hand_computed_values():
    assert m.iou(P, G) == pytest.approx(2 / 8)  # |P&G| = 2 (row 1, cols 1-2), |P|G| = 6 + 4 - 2
    assert m.precision_recall(P, G) == pytest.approx((2 / 6, 2 / 4))
    p, r = 2 / 6, 2 / 4
    assert m.f_beta(P, G) == pytest.approx(1.3 * p * r / (0.3 * p + r))
    # BER: TP/Np = 2/4, TN/Nn = (16 - 8)/12 -> 100 * (1 - (0.5 + 8/12) / 2)
    assert m.ber(P, G) == pytest.approx(100 * (1 - (0.5 + 8 / 12) / 2))
    assert m.mae(P.astype(float), G) == pytest.approx(6 / 16)
    assert m.mae(np.full((4, 4), 0.25), G) == pytest.approx((4 * 0.75 + 12 * 0.25) / 16)
    assert m.foreground_rate([True, False, True, True]) == 0.75
    assert m.miou([0.5, 1.0]) == 0.75
    assert m.class_mean_iou({"cat": [1.0, 0.0], "dog": [1.0]}) == pytest.approx(0.75)


def test_empty_cases_are_defined():
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert m.iou(empty, empty) == 1.0 and m.iou(full, empty) == 0.0
    assert m.precision_recall(empty, empty) == (1.0, 1.0)
    assert m.f_beta(empty, empty) == 1.0  # nothing to find, nothing claimed
    assert m.f_beta(empty, full) == 0.0 and m.f_beta(full, empty) == 0.0
    assert m.e_measure(empty, empty) == pytest.approx(9 / 8)  # the authors' normalisation: sum / (wh - 1)
    assert m.e_measure(full, empty) == 0.0 and m.e_measure(full, full) == pytest.approx(9 / 8)
    assert m.ber(empty, empty) == 0.0  # only the background term exists, all of it right
    assert m.ber(full, empty) == 100.0
    with pytest.raises(ValueError, match="same shape"):
        m.iou(empty, np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="at least one"):
        m.foreground_rate([])


def test_adaptive_threshold_and_sweeps():
    prob = np.zeros((4, 4))
    prob[1:3, 1:3] = 0.9
    prob[0, 0] = 0.3
    # mean = (4 * 0.9 + 0.3) / 16 = 0.24375 -> threshold 0.4875: the 2x2 block only, which is G's
    assert m.adaptive_threshold(prob) == pytest.approx(2 * 3.9 / 16)
    assert m.f_measure(prob, G) == pytest.approx(1.0)
    curve = m.f_measure_curve(prob, G)
    assert curve["max"] == pytest.approx(1.0) and 0 < curve["mean"] < 1


def _independent(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The same definitions written with Python sets and loops."""
    cells = [(i, j) for i in range(pred.shape[0]) for j in range(pred.shape[1])]
    p = {c for c in cells if pred[c]}
    g = {c for c in cells if target[c]}
    out = {"iou": len(p & g) / len(p | g) if p | g else 1.0}
    prec = len(p & g) / len(p) if p else float(not g)
    rec = len(p & g) / len(g) if g else float(not p)
    out["f_beta"] = 0.0 if prec == rec == 0 else 1.3 * prec * rec / (0.3 * prec + rec)
    rates = []
    if g:
        rates.append(len(p & g) / len(g))
    if len(cells) - len(g):
        rates.append(len(set(cells) - p - g) / (len(cells) - len(g)))
    out["ber"] = 100 * (1 - sum(rates) / len(rates))
    n = len(cells)
    if not g:
        total = sum(1.0 - (c in p) for c in cells)
    elif len(g) == n:
        total = sum(float(c in p) for c in cells)
    else:
        mp, mg = len(p) / n, len(g) / n
        total = 0.0
        for c in cells:
            a, b = (c in p) - mp, (c in g) - mg
            xi = 2 * a * b / (a * a + b * b + np.finfo(float).eps)
            total += (1 + xi) ** 2 / 4
    out["e_measure"] = total / (n - 1 + np.finfo(float).eps)
    return out


@settings(max_examples=60, deadline=None)
@given(arrays(bool, (5, 6)), arrays(bool, (5, 6)))
def test_agrees_with_independent_implementations(pred, target):
    expected = _independent(pred, target)
    assert m.iou(pred, target) == pytest.approx(expected["iou"])
    assert m.f_beta(pred, target) == pytest.approx(expected["f_beta"])
    assert m.ber(pred, target) == pytest.approx(expected["ber"])
    assert m.e_measure(pred, target) == pytest.approx(expected["e_measure"])


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (5, 5), elements=st.floats(0, 1)), arrays(bool, (5, 5)))
def test_ranges(prob, target):
    scores = m.mask_metrics(prob, target)
    for key in ("iou", "f_beta", "f_adaptive", "mae"):
        assert 0.0 <= scores[key] <= 1.0
    assert 0.0 <= scores["ber"] <= 100.0 and scores["e_measure"] >= 0.0


def test_dataset_ber_aggregates_counts():
    a = m.confusion_counts(P, G)
    b = m.confusion_counts(np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    # summed: TP 2 of 4 positives, TN 8 + 16 of 12 + 16 negatives
    assert m.ber_counts([a, b]) == pytest.approx(100 * (1 - (2 / 4 + 24 / 28) / 2))


def test_prompt_efficiency_by_its_definition():
    from alignsam_gym.metrics import prompt_efficiency, prompts_to_reach

    assert prompts_to_reach([0.5, 0.86, 0.91], 0.85, 4) == 2 and prompts_to_reach([0.5, 0.86, 0.91], 0.9, 4) == 3
    assert prompts_to_reach([0.5, 0.6, 0.7], 0.85, 4) == 4  # never: T + 1
    curves = [[0.1, 0.5, 0.86, 0.91], [0.2, 0.9, 0.8, 0.95], [0.0, 0.1, 0.2, 0.3]]  # IoU after 0..3 prompts
    result = prompt_efficiency(curves)
    assert result["miou_at"] == pytest.approx([0.5, 1.86 / 3, 2.16 / 3])
    assert result["auc"] == pytest.approx((0.5 + 1.86 / 3 + 2.16 / 3) / 3)
    assert result["noc85"] == pytest.approx((2 + 1 + 4) / 3) and result["noc90"] == pytest.approx((3 + 1 + 4) / 3)
    with pytest.raises(ValueError, match="at least one prompt"):
        prompt_efficiency([[0.3]])


@pytest.mark.parametrize("with_ignore", [False, True])
def test_ious_equals_iou_of_each_prediction(with_ignore):
    rng = np.random.default_rng(3)
    target = rng.random((17, 23)) < 0.4
    ignore = rng.random((17, 23)) < 0.2 if with_ignore else None
    preds = rng.random((9, 17, 23)) < rng.random((9, 1, 1))
    preds[0] = False
    expected = [m.iou(p, target, ignore) for p in preds]
    np.testing.assert_array_equal(m.ious(preds, target, ignore), expected)
    empty = m.ious(np.zeros((2, 4, 4), bool), np.zeros((4, 4), bool))
    np.testing.assert_array_equal(empty, [1.0, 1.0])  # both empty: a perfect match, as iou says
    assert m.ious(np.zeros((0, 17, 23), bool), target, ignore).shape == (0,)  # no candidates left
    with pytest.raises(ValueError, match=r"preds must have shape \(K, \*\(17, 23\)\)"):
        m.ious(preds[0], target)
