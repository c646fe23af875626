"""``alignsam bench clicks``: the standard click protocol of interactive segmentation, on the standard sets.

The protocol of the literature's evaluations (Xu et al. 2016; RITM, SimpleClick), here exactly:

- each click is :func:`alignsam_gym.clicks.standard_click` (the deepest point of the larger error region,
  never a pixel clicked before);
- the prediction is ``probability > 0.49`` at the dataset's full resolution; IoU over labelled pixels.

NoC@85/90: clicks to reach that IoU (``max_clicks`` when never reached); NoF@85/90: items that never
reach it; ``miou_at[k-1]``: mean IoU after ``k`` clicks. OpenCV GrabCut, seeded with disks at its own
clicks under the same protocol, runs in the same process on the same items as the classic baseline.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import cv2
import numpy as np

from alignsam_gym import __version__
from alignsam_gym.backends import PromptableSegmenter
from alignsam_gym.clicks import standard_click
from alignsam_gym.data.base import SegmentationDataset
from alignsam_gym.metrics import iou, prompts_to_reach
from policies.benchmarks.decoder import grabcut_segmenter
from policies.benchmarks.machine import command_line, machine

#: the prediction threshold of the literature's evaluations (RITM: ``pred_thr = 0.49``)
PROBABILITY_THRESHOLD = 0.49
IOU_THRESHOLDS = (0.85, 0.90)

#: ``(points (N, 2) as (x, y) pixel centres, labels (N,)) -> (H, W) bool`` prediction
ClickSegmenter = Callable[[np.ndarray, np.ndarray], np.ndarray]


def run_item(segment: ClickSegmenter, truth: np.ndarray, ignore: np.ndarray | None, max_clicks: int) -> list[float]:
    """IoU (labelled pixels) after each of ``max_clicks`` standard clicks, from an empty prediction."""
    pred = np.zeros_like(truth)
    clicked = np.zeros_like(truth)
    points, labels, ious = [], [], []
    for _ in range(max_clicks):
        row, col, positive = standard_click(pred, truth, ignore, clicked)
        clicked[row, col] = True
        points.append((col + 0.5, row + 0.5))
        labels.append(int(positive))
        pred = segment(np.array(points, dtype=np.float64), np.array(labels, dtype=np.int64))
        ious.append(iou(pred, truth, ignore))
    return ious


def number_of_clicks(ious: list[float], threshold: float, max_clicks: int) -> int:
    """Clicks until the IoU first reaches ``threshold`` (``max_clicks`` when it never does: the protocol's
    convention; :func:`alignsam_gym.metrics.prompts_to_reach` with ``never=max_clicks``)."""
    return prompts_to_reach(ious, threshold, max_clicks)


def backend_click_segmenter(backend: PromptableSegmenter, image: np.ndarray,
                            timings: list[float] | None = None) -> ClickSegmenter:
    """Encode ``image`` once; each click set is decoded, its logits resized to the image (bilinear) and
    thresholded at probability 0.49. ``timings`` collects the seconds of each decode + resize."""
    embedding = backend.encode(image)
    h, w = image.shape[:2]
    cut = math.log(PROBABILITY_THRESHOLD / (1 - PROBABILITY_THRESHOLD))

    def segment(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        logits = backend.decode(embedding, points, labels)
        full = cv2.resize(logits, (w, h), interpolation=cv2.INTER_LINEAR) > cut
        if timings is not None:
            timings.append(time.perf_counter() - start)
        return full

    return segment


def summarize(records: list[dict[str, Any]], max_clicks: int, seconds: list[float]) -> dict[str, Any]:
    """NoC and NoF at 85/90 % IoU, mean IoU after each click, seconds per click, over ``records``."""
    out: dict[str, Any] = {"images": len(records)}
    for threshold in IOU_THRESHOLDS:
        nocs = [number_of_clicks(r["ious"], threshold, max_clicks) for r in records]
        never = sum(1 for r in records if max(r["ious"]) < threshold)
        out[f"noc{round(threshold * 100)}"] = round(float(np.mean(nocs)), 3)
        out[f"nof{round(threshold * 100)}"] = int(never)
    out["miou_at"] = [round(float(v), 4) for v in np.mean([r["ious"] for r in records], axis=0)]
    out["seconds_per_click"] = round(float(np.median(seconds)), 5) if seconds else None
    return out


def run_clicks_benchmark(backend: PromptableSegmenter, dataset: SegmentationDataset, max_clicks: int = 20,
                         limit: int | None = None, baseline: bool = True,
                         progress: bool = True) -> dict[str, Any]:
    """The protocol on the first ``limit`` items of ``dataset`` (all by default) with ``backend`` and,
    with ``baseline``, OpenCV GrabCut; a JSON-ready dict."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    rows: dict[str, list[dict[str, Any]]] = {"backend": [], "grabcut": []}
    seconds: dict[str, list[float]] = {"backend": [], "grabcut": []}
    start = time.perf_counter()
    for index in range(count):
        sample = dataset[index]
        segmenters = {"backend": backend_click_segmenter(backend, sample.image, seconds["backend"])}
        if baseline:
            grabcut = grabcut_segmenter(sample.image)

            def timed(points: np.ndarray, labels: np.ndarray, run: ClickSegmenter = grabcut) -> np.ndarray:
                t0 = time.perf_counter()
                out = run(points, labels)
                seconds["grabcut"].append(time.perf_counter() - t0)
                return out

            segmenters["grabcut"] = timed
        for name, segment in segmenters.items():
            ious = run_item(segment, sample.mask, sample.ignore, max_clicks)
            rows[name].append({"name": sample.name, "ious": [round(v, 5) for v in ious]})
        if progress:
            b = rows["backend"][-1]["ious"]
            print(f"[{index + 1}/{count}] {sample.name}: {backend.name} IoU@1 {b[0]:.3f} @5 {b[min(4, max_clicks - 1)]:.3f} "
                  f"NoC@90 {number_of_clicks(b, 0.9, max_clicks)}", flush=True)
    result: dict[str, Any] = {
        "benchmark": "clicks", "dataset": dataset.task, "max_clicks": max_clicks,
        "probability_threshold": PROBABILITY_THRESHOLD, "backend": backend.name, "backend_identity": backend.identity,
        **summarize(rows["backend"], max_clicks, seconds["backend"]), "records": rows["backend"],
    }
    if baseline:
        result["grabcut"] = {**summarize(rows["grabcut"], max_clicks, seconds["grabcut"]), "records": rows["grabcut"]}
    result.update({"wall_s": round(time.perf_counter() - start, 1), "machine": machine(), "command": command_line(),
                   "package_version": __version__})
    return result


def plot_curves(result: dict[str, Any], path: str) -> None:
    """mIoU against clicks for the backend (and GrabCut when the result has it), with the 85 % and 90 % lines,
    as a PNG at ``path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alignsam_gym.atomic import replacing

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, r in [(result["backend"], result)] + ([("grabcut", result["grabcut"])] if "grabcut" in result else []):
        clicks = range(1, len(r["miou_at"]) + 1)
        axis.plot(clicks, r["miou_at"], marker="o", markersize=3,
                  label=f"{name} (NoC@90 {r['noc90']:.2f})")
    for level in IOU_THRESHOLDS:
        axis.axhline(level, color="grey", linewidth=0.6, linestyle="--")
    axis.set(xlabel="clicks", ylabel="mIoU", ylim=(0, 1), xticks=range(0, result["max_clicks"] + 1, 2),
             title=f"{result['dataset']}: standard click protocol, {result['images']} objects")
    axis.legend(loc="lower right")
    figure.tight_layout()
    with replacing(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
