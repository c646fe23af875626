"""The oracle-click protocol of the decoder benchmark."""

from __future__ import annotations

import numpy as np

from policies.benchmarks.oracle_clicks import next_click, run_clicks


def test_first_click_is_the_object_centre():
    truth = np.zeros((40, 60), bool)
    truth[10:31, 25:46] = True  # 21 x 21 square, centre pixel (x, y) = (35, 20)
    point, label = next_click(np.zeros_like(truth), truth)
    assert label == 1 and tuple(point) == (35.5, 20.5)


def test_largest_error_decides_the_label():
    truth = np.zeros((40, 40), bool)
    truth[5:15, 5:15] = True
    pred = truth.copy()
    pred[25:38, 20:38] = True  # a 13 x 18 false alarm, larger than any miss
    pred[5:8, 5:8] = False  # a small miss
    point, label = next_click(pred, truth)
    assert label == 0 and 20 <= point[0] <= 38 and 25 <= point[1] <= 38
    assert next_click(truth, truth) is None


def test_run_clicks_with_a_perfect_segmenter():
    truth = np.zeros((20, 20), bool)
    truth[4:12, 6:16] = True
    calls = []

    def segment(points, labels):
        calls.append(len(points))
        return truth.copy()

    assert run_clicks(segment, truth, 4) == [1.0, 1.0, 1.0, 1.0]
    assert calls == [1]  # no clicks once the mask is perfect
