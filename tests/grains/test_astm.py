"""ASTM E112 G: the standard's table values, unit conversion at 1x, known tilings and Voronoi tessellations."""
import math

import numpy as np
import pytest

from grainseg.data.synthetic import hexagonal_seeds, make_micrograph, square_seeds, tessellate
from grainseg.grains import (
    g_from_grains_per_mm2,
    g_from_intercept_mm,
    grains_per_mm2_from_g,
    intercept,
    intercept_mm_from_g,
    jeffries_count,
    label_interiors,
    planimetric,
    tessellate_grains,
)


def grains_of(mask, min_area=10):
    """What the analysis does with a mask: interiors, then the tessellation the E112 counts use."""
    return tessellate_grains(label_interiors(mask, min_area=min_area))


@pytest.mark.parametrize("g,n_a,l_mm", [(0, 7.75, 0.320), (1, 15.50, 0.2263), (5, 248.0, 0.0566), (8, 1984.0, 0.0200)])
def test_e112_table_values(g, n_a, l_mm):
    """E112 Table 4: grains per mm^2 and mean intercept at 1x for whole G numbers."""
    assert g_from_grains_per_mm2(n_a) == pytest.approx(g, abs=0.01)
    assert g_from_intercept_mm(l_mm) == pytest.approx(g, abs=0.01)
    assert grains_per_mm2_from_g(g) == pytest.approx(n_a, rel=2e-3)
    assert intercept_mm_from_g(g) == pytest.approx(l_mm, rel=2e-3)


def square_grains(shape=(200, 200), a=20, offset=(10, 10), width=4):
    seeds, density = square_seeds(shape, a, offset)
    labels, mask, _ = tessellate(shape, seeds, width)
    return grains_of(mask), density


def test_square_tiling_exact_counts_and_unit_conversion_at_1x():
    grains, density = square_grains()
    # 9 x 9 whole cells inside, 4 x 9 cut by the edges, 4 corner cells: 81 + 36 / 2 + 4 / 4 = 100 grains
    assert jeffries_count(grains) == (81, 36, 4)
    p = planimetric(grains, scale=0.5)
    # 20 px cells at 0.5 um/px are 10 um squares: 10^4 grains per mm^2, G = 3.321928 * 4 - 2.954
    assert p["grains_per_mm2"] == pytest.approx(1e4)
    assert p["G"] == pytest.approx(3.321928 * 4 - 2.954, abs=1e-9)
    i = intercept(grains, scale=0.5)
    # every horizontal / vertical test line crosses one boundary per 20 px: l = 10 um = 0.01 mm
    assert i["mean_intercept_um"] == pytest.approx(10.0)
    assert i["G"] == pytest.approx(-6.643856 * -2 - 3.288, abs=1e-9)
    assert i["G_ci95"] == pytest.approx([i["G"], i["G"]])  # identical lines: no spread
    # doubling the pixel size at 1x quarters N_A and doubles l: both G fall by 2
    assert planimetric(grains, scale=1.0)["G"] == pytest.approx(p["G"] - 2, abs=1e-5)
    assert intercept(grains, scale=1.0)["G"] == pytest.approx(i["G"] - 2, abs=1e-5)


def test_without_scale_g_is_none_with_a_note():
    grains, density = square_grains()
    p, i = planimetric(grains), intercept(grains)
    assert p["G"] is None and "scale" in p["note"] and p["grains_per_px2"] == pytest.approx(density)
    assert i["G"] is None and "scale" in i["note"] and i["mean_intercept_px"] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="scale"):
        planimetric(grains, scale=-1)
    with pytest.raises(ValueError, match="scale"):
        intercept(grains, scale=0)


def test_hexagonal_tiling():
    d = 30.0  # seed spacing: hexagons of area sqrt(3)/2 d^2, edges at 30, 90 and 150 degrees
    shape = (420, 420)
    seeds, density = hexagonal_seeds(shape, d, offset=(7.0, 11.0))
    _, mask, _ = tessellate(shape, seeds, 4)
    grains = grains_of(mask)
    # E112's 10 % relative accuracy for the planimetric count
    assert planimetric(grains)["grains_per_px2"] == pytest.approx(density, rel=0.10)
    # boundary length per area L_A = 2 / d, one third per edge direction; a line at angle t meets edges
    # at angle f with P_L = L_A / 3 * |sin(t - f)|: horizontal 4 / (3 d), vertical 2 / (sqrt(3) d)
    p_l = (4 / (3 * d) + 2 / (math.sqrt(3) * d)) / 2
    assert intercept(grains, lines=20)["mean_intercept_px"] == pytest.approx(1 / p_l, rel=0.10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voronoi_tessellations_within_e112_relative_accuracy(seed):
    """Poisson-Voronoi grains: N_A = seed density, mean intercept pi / (4 sqrt(N_A)) (L_A = 2 sqrt(N_A))."""
    s = make_micrograph((500, 500), n_grains=120, boundary_width=6, seed=seed)
    grains = grains_of(s.mask)
    p = planimetric(grains, scale=1.0)
    i = intercept(grains, scale=1.0, lines=15)
    n_a_true = s.density * 1e6  # per mm^2 at 1 um / px
    l_true_mm = math.pi / (4 * math.sqrt(s.density)) / 1000
    assert p["grains_per_mm2"] == pytest.approx(n_a_true, rel=0.10)
    assert i["mean_intercept_um"] / 1000 == pytest.approx(l_true_mm, rel=0.10)
    assert abs(p["G"] - g_from_grains_per_mm2(n_a_true)) < 0.15
    assert abs(i["G"] - g_from_intercept_mm(l_true_mm)) < 0.3
    lo, hi = i["G_ci95"]
    assert lo < i["G"] < hi and hi - lo < 1.0
    lo, hi = p["G_ci95"]
    assert lo < p["G"] < hi


def test_voronoi_average_is_unbiased():
    """Over several tessellations the estimates average out to the truth much tighter than one image.

    min_area=1 keeps the tiny Voronoi cells (the default 10 px speck filter drops a few real grains of
    these small synthetic images and so biases N_A down by ~3 %).
    """
    ratios_a, ratios_l, exact_a = [], [], []
    for seed in range(10, 16):
        s = make_micrograph((400, 400), n_grains=100, boundary_width=5, seed=seed, speckle=0, twins=0)
        grains = grains_of(s.mask, min_area=1)
        ratios_a.append(planimetric(grains)["grains_per_px2"] / s.density)
        exact_a.append(planimetric(s.labels)["grains_per_px2"] / s.density)
        ratios_l.append(intercept(grains, lines=15)["mean_intercept_px"] / (math.pi / (4 * math.sqrt(s.density))))
    # the mask-based count reproduces the count on the exact tessellation (within a few grains' worth)
    np.testing.assert_allclose(ratios_a, exact_a, atol=0.04)
    assert np.mean(ratios_a) == pytest.approx(1.0, abs=0.05)
    assert np.mean(ratios_l) == pytest.approx(1.0, abs=0.05)


def test_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        planimetric(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="lines"):
        intercept(np.ones((4, 4), np.int32), lines=0)
    with pytest.raises(ValueError, match="mm"):
        g_from_intercept_mm(0)


def test_combined_interval_adds_the_model_error_in_quadrature():
    from grainseg.grains.astm import combined_interval

    lo, hi = combined_interval(4.0, [3.9, 4.2], 0.1)
    m = 1.959964 * 0.1
    assert lo == pytest.approx(4.0 - math.hypot(0.1, m)) and hi == pytest.approx(4.0 + math.hypot(0.2, m))
    assert combined_interval(4.0, [3.9, 4.2], 0.0) == pytest.approx([3.9, 4.2])  # no model error: the sampling one
    assert combined_interval(4.0, [None, 4.2], 0.1)[0] is None  # an open side stays open
    assert combined_interval(None, [3.9, 4.2], 0.1) == [None, None]
    assert combined_interval(4.0, None, 0.1) == [None, None]
    for bad in (-0.1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="model_rms"):
            combined_interval(4.0, [3.9, 4.2], bad)
