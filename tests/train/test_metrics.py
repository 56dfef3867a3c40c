"""Metrics on hand-computed examples: per-image Dice (paper), empty masks, boundary F1 tolerance, HD95."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grainseg.train.metrics import (boundary_f1, dice_score, hd95, image_metrics, iou_score, precision_score,
                                    recall_score, summarize)


def _square(top, left, size=4, shape=(12, 12)):
    m = np.zeros(shape)
    m[top:top + size, left:left + size] = 1
    return m


def test_overlap_metrics_by_hand():
    pred, mask = _square(2, 2), _square(2, 3)  # 16 px each, 12 shared
    assert dice_score(pred, mask) == pytest.approx(24 / 32)
    assert iou_score(pred, mask) == pytest.approx(12 / 20)
    assert precision_score(pred * 0.9, mask) == pytest.approx(12 / 16)
    big = _square(2, 2, size=6)
    assert recall_score(pred, big) == pytest.approx(16 / 36) and precision_score(pred, big) == 1.0


def test_threshold_is_applied_to_prediction_and_mask():
    prob = np.array([[0.49, 0.51], [0.9, 0.1]])
    mask = np.array([[0.6, 0.6], [0.4, 0.4]])  # thresholded at 0.5 too -> top row
    assert dice_score(prob, mask) == pytest.approx(2 * 1 / (2 + 2))
    assert dice_score(torch.from_numpy(prob)[None, None], mask) == dice_score(prob, mask)


def test_empty_cases_are_defined():
    zero, one = np.zeros((5, 5)), np.ones((5, 5))
    both = image_metrics(zero, zero)
    assert both["dice"] == both["iou"] == both["precision"] == both["recall"] == both["boundary_f1"] == 1.0
    assert both["hd95"] == 0.0
    only = image_metrics(zero, _square(1, 1, 2, (5, 5)))
    assert only["dice"] == only["iou"] == only["precision"] == only["recall"] == only["boundary_f1"] == 0.0
    assert math.isnan(only["hd95"])
    assert image_metrics(one, zero)["dice"] == 0.0


def test_dice_is_averaged_per_image_not_pooled():
    rows = [image_metrics(_square(0, 0), _square(0, 0)), image_metrics(np.zeros((12, 12)), _square(0, 0))]
    s = summarize(rows)
    assert s["dice"] == pytest.approx(0.5) and s["n_images"] == 2
    assert s["hd95"] == 0.0 and s["n_hd95"] == 1  # the undefined NaN image is left out and counted
    with pytest.raises(ValueError):
        summarize([])


def test_boundary_f1_tolerance():
    pred, mask = _square(3, 3, size=6), _square(3, 4, size=6)  # shifted one pixel
    assert boundary_f1(pred, mask, tolerance=0) < 0.8
    assert boundary_f1(pred, mask, tolerance=1) == pytest.approx(1.0)
    assert boundary_f1(mask, mask, tolerance=0) == 1.0
    far = _square(0, 0, size=3, shape=(30, 30)), _square(20, 20, size=3, shape=(30, 30))
    assert boundary_f1(*far, tolerance=2) == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(pred, mask, tolerance=-1)


def test_hd95_by_hand():
    pred, mask = _square(3, 3, size=6, shape=(20, 20)), _square(3, 6, size=6, shape=(20, 20))  # shift 3
    assert hd95(pred, mask) == pytest.approx(3.0)
    assert hd95(mask, mask) == 0.0
    # one outlier pixel far away barely moves HD95 but would dominate the plain Hausdorff distance
    big = _square(2, 2, size=14, shape=(40, 40))
    noisy = big.copy()
    noisy[38, 38] = 1
    assert hd95(noisy, big) < 2.0
