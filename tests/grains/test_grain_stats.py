"""Grain labelling and the per-grain regionprops table: columns, units, values on known shapes."""
import csv
import io
import math

import numpy as np
import pytest

from grainseg.data.synthetic import square_seeds, tessellate
from grainseg.grains import column_names, grain_table, label_interiors, table_to_csv, tessellate_grains

PX_COLUMNS = ["label", "area_px2", "interior_area_px2", "equivalent_diameter_px", "perimeter_px", "major_axis_px",
              "minor_axis_px", "aspect_ratio", "orientation_deg", "centroid_x_px", "centroid_y_px", "touches_border"]


def test_column_names_and_units():
    assert column_names(None) == PX_COLUMNS
    um = column_names(0.5)
    assert um[1] == "area_um2" and um[3] == "equivalent_diameter_um" and um[-1] == "touches_border"
    assert all("px" not in c for c in um)


def square_table(scale=None):
    seeds, _ = square_seeds((120, 120), 20, (10, 10))
    _, mask, _ = tessellate((120, 120), seeds, 4)
    interiors = label_interiors(mask)
    grains = tessellate_grains(interiors)
    return grain_table(grains, interiors, scale), grains


def test_square_grains_measure_right_in_px_and_um():
    table, grains = square_table()
    assert list(table) == PX_COLUMNS
    assert len(table["label"]) == 49  # 10 + 5 x 20 + 10 px: 5 x 5 whole cells + 24 cut by the edges
    inner = ~table["touches_border"]
    assert inner.sum() == 25
    np.testing.assert_allclose(table["area_px2"][inner], 400)  # each grain owns half of its boundary
    np.testing.assert_allclose(table["interior_area_px2"][inner], 16 * 16)  # 4 px boundary band removed
    np.testing.assert_allclose(table["equivalent_diameter_px"][inner], math.sqrt(4 * 400 / math.pi))
    np.testing.assert_allclose(table["aspect_ratio"][inner], 1.0, atol=1e-6)
    np.testing.assert_allclose(table["major_axis_px"][inner], table["minor_axis_px"][inner])
    assert np.all(np.abs(table["perimeter_px"][inner] - 80) < 6)  # regionprops' perimeter of a 20 px square
    um, _ = square_table(scale=0.5)
    np.testing.assert_allclose(um["area_um2"], table["area_px2"] * 0.25)
    np.testing.assert_allclose(um["equivalent_diameter_um"], table["equivalent_diameter_px"] * 0.5)
    np.testing.assert_allclose(um["perimeter_um"], table["perimeter_px"] * 0.5)
    np.testing.assert_allclose(um["centroid_x_um"], table["centroid_x_px"] * 0.5)
    np.testing.assert_array_equal(um["touches_border"], table["touches_border"])


def test_elongated_grain_axes_and_orientation():
    labels = np.zeros((60, 80), np.int32)
    labels[20:30, 10:70] = 1  # a 60 x 10 bar along x
    labels[5:55, 75:79] = 2  # a 4 x 50 bar along y
    t = grain_table(labels)
    assert t["aspect_ratio"][0] == pytest.approx(6.0, rel=0.05)
    assert abs(abs(t["orientation_deg"][0]) - 90) < 1  # skimage: angle to the row axis; x bar -> 90
    assert abs(t["orientation_deg"][1]) < 1
    assert list(t["touches_border"]) == [False, False]


def test_csv_round_trip():
    table, _ = square_table(scale=2.0)
    rows = list(csv.DictReader(io.StringIO(table_to_csv(table))))
    assert len(rows) == len(table["label"]) and list(rows[0]) == column_names(2.0)
    assert {r["touches_border"] for r in rows} == {"0", "1"}
    assert float(rows[0]["area_um2"]) == pytest.approx(table["area_um2"][0], rel=1e-5)


def test_label_interiors_min_area_and_watershed():
    mask = np.zeros((60, 100), np.uint8)
    yy, xx = np.mgrid[0:60, 0:100]
    mask[(yy - 30) ** 2 + (xx - 30) ** 2 < 18 ** 2] = 1
    mask[(yy - 30) ** 2 + (xx - 62) ** 2 < 18 ** 2] = 1  # two touching discs: one component
    mask[2:4, 95:97] = 1  # a 4 px speck
    assert label_interiors(mask).max() == 1
    assert label_interiors(mask, min_area=1).max() == 2
    split = label_interiors(mask, watershed=True)
    assert split.max() == 2 and split[30, 30] != split[30, 62] and split[30, 30] > 0
    with pytest.raises(ValueError, match="min_area"):
        label_interiors(mask, min_area=-1)


def test_tessellation_covers_the_image():
    interiors = np.zeros((20, 20), np.int32)
    interiors[2:8, 2:8], interiors[12:18, 12:18] = 1, 2
    grains = tessellate_grains(interiors)
    assert grains.min() == 1 and set(np.unique(grains)) == {1, 2}
    assert grains[0, 0] == 1 and grains[19, 19] == 2
    with pytest.raises(ValueError, match="integer label"):
        grain_table(np.zeros((4, 4), np.float32))
