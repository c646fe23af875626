"""``alignsam bench decoder``: quality and speed of a backend's decoder under oracle clicks.

Quality: every image of a dataset resized to ``size`` pixels on its longest side, the oracle-click
protocol (:mod:`policies.benchmarks.oracle_clicks`), IoU after each click at that resolution. The same
clicks protocol runs on OpenCV GrabCut in the same run, as the baseline. Speed: decode time per
click for images resized to ``speed_size`` squared (800, the env's default), torch and OpenCV on one
thread (one core).
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import torch

from alignsam_gym import __version__
from alignsam_gym.backends import PromptableSegmenter
from alignsam_gym.data.base import SegmentationDataset
from policies.benchmarks.machine import command_line, machine
from policies.benchmarks.oracle_clicks import run_clicks

GRABCUT_ITERATIONS = 5
GRABCUT_CLICK_RADIUS = 5


def grabcut_segmenter(image: np.ndarray):
    """OpenCV GrabCut seeded by clicks (disks of definite foreground/background), as a baseline."""

    def segment(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        mask = np.full(image.shape[:2], cv2.GC_PR_BGD, np.uint8)
        for (x, y), label in zip(points, labels):
            cv2.circle(mask, (int(x), int(y)), GRABCUT_CLICK_RADIUS, cv2.GC_FGD if label else cv2.GC_BGD, -1)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, GRABCUT_ITERATIONS,
                    cv2.GC_INIT_WITH_MASK)
        return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)

    return segment


def backend_segmenter(backend: PromptableSegmenter, image: np.ndarray, timings: list[float] | None = None):
    """Encode ``image`` once; return a click segmenter at the image's resolution (and time each decode)."""
    embedding = backend.encode(image)
    h, w = image.shape[:2]

    def segment(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        logits = backend.decode(embedding, points, labels)
        if timings is not None:
            timings.append(time.perf_counter() - start)
        return cv2.resize(logits, (w, h), interpolation=cv2.INTER_LINEAR) > 0

    return segment


def _resize_longest(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    scale = size / max(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return (cv2.resize(image, shape, interpolation=cv2.INTER_AREA),
            cv2.resize(mask.astype(np.uint8), shape, interpolation=cv2.INTER_NEAREST) > 0)


def _summary(curves: list[list[float]]) -> dict[str, Any]:
    array = np.array(curves)
    return {"miou_per_click": [round(float(v), 4) for v in array.mean(0)],
            "images": len(curves)}


def run_decoder_benchmark(backend: PromptableSegmenter, dataset: SegmentationDataset, size: int = 256,
                          num_clicks: int = 10, limit: int | None = None, baseline: bool = True,
                          speed_size: int = 800, speed_images: int = 20, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-ready dict (see the module docstring)."""
    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        count = len(dataset) if limit is None else min(limit, len(dataset))
        ours, grabcut, encode_s, grabcut_s = [], [], [], []
        for i in range(count):
            sample = dataset[i]
            image, truth = _resize_longest(sample.image, sample.mask, size)
            start = time.perf_counter()
            segment = backend_segmenter(backend, image)
            encode_s.append(time.perf_counter() - start)
            ours.append(run_clicks(segment, truth, num_clicks))
            if baseline:
                start = time.perf_counter()
                grabcut.append(run_clicks(grabcut_segmenter(image), truth, num_clicks))
                grabcut_s.append((time.perf_counter() - start) / num_clicks)
            if progress:
                line = f"[{i + 1}/{count}] {sample.name}: IoU@5 {ours[-1][min(4, num_clicks - 1)]:.3f}"
                if baseline:
                    line += f" (GrabCut {grabcut[-1][min(4, num_clicks - 1)]:.3f})"
                print(line, flush=True)

        decode_s: list[float] = []
        for i in range(min(speed_images, len(dataset))):
            sample = dataset[i]
            image = cv2.resize(sample.image, (speed_size, speed_size), interpolation=cv2.INTER_AREA)
            truth = cv2.resize(sample.mask.astype(np.uint8), (speed_size, speed_size),
                               interpolation=cv2.INTER_NEAREST) > 0
            run_clicks(backend_segmenter(backend, image, decode_s), truth, num_clicks)
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)

    result: dict[str, Any] = {
        "benchmark": "decoder-oracle-clicks",
        "task": dataset.task,
        "backend": backend.identity,
        "size": size,
        "num_clicks": num_clicks,
        "backend_result": _summary(ours) | {"encode_s_median": round(float(np.median(encode_s)), 4)},
        "decode_speed": {"image_size": speed_size, "decodes": len(decode_s), "torch_threads": 1, "opencv_threads": 1,
                         "ms_median": round(1000 * float(np.median(decode_s)), 3),
                         "ms_p95": round(1000 * float(np.percentile(decode_s, 95)), 3)},
        "machine": machine(), "command": command_line(),
        "package_version": __version__,
    }
    if baseline:
        result["grabcut_result"] = _summary(grabcut) | {
            "iterations": GRABCUT_ITERATIONS, "click_radius": GRABCUT_CLICK_RADIUS,
            "ms_per_decode_median": round(1000 * float(np.median(grabcut_s)), 2)}
    return result
