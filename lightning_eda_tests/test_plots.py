"""Tests for lightning_eda.plots: every figure is a PNG of the documented size, edge cases render, writes are atomic,
and the cluster map shows the box, legend and centroid discs that the functions computing them say it should."""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from import_probe import packages_loaded_by

from lightning_eda.plots.cluster_map import (
    CENTROID_DISC_POINTS,
    LEGEND_ROWS,
    centroid_marks,
    cluster_map,
    draw_cluster_map,
    legend_keys,
)
from lightning_eda.plots.curves import elbow_plot, silhouette_plot
from lightning_eda.plots.geometry import MIN_SPAN_DEG, MapInput, auto_extent, lon_arc, map_extent
from lightning_eda.plots.output import CURVE_FIGSIZE, DPI, MAP_FIGSIZE, PNG_SIGNATURE, png_markdown, save_png
from lightning_eda.plots.style import cluster_colors

MAP_SHAPE = (round(MAP_FIGSIZE[1] * DPI), round(MAP_FIGSIZE[0] * DPI))  # (rows, cols) = (910, 1300)
CURVE_SHAPE = (round(CURVE_FIGSIZE[1] * DPI), round(CURVE_FIGSIZE[0] * DPI))  # (650, 1040)


def assert_png(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    assert isinstance(data, bytes)
    assert data[:8] == PNG_SIGNATURE
    image = mpimg.imread(io.BytesIO(data), format="png")
    assert image.shape[:2] == shape
    return image


def blobs(centres, n_each, spread=0.5, seed=0):
    """Gaussian storms around (lat, lon) centres; labels are the storm index."""
    rng = np.random.default_rng(seed)
    lat = np.concatenate([rng.normal(c[0], spread, n_each) for c in centres])
    lon = np.concatenate([rng.normal(c[1], spread, n_each) for c in centres])
    labels = np.repeat(np.arange(len(centres)), n_each)
    return lat, lon, labels, np.asarray(centres, dtype=float)


# --------------------------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------------------------


def test_elbow_plot_is_png_of_curve_size():
    ks = list(range(2, 11))
    inertias = [2e5 * np.exp(-(k - 2) / 1.2) + 4e4 for k in ks]
    assert_png(elbow_plot(ks, inertias, knee=4, title="2024-06-01 18:00-19:00 UTC"), CURVE_SHAPE)
    assert_png(elbow_plot(ks, inertias), CURVE_SHAPE)


def test_elbow_plot_edge_cases():
    assert_png(elbow_plot([], []), CURVE_SHAPE)
    assert_png(elbow_plot([3], [10.0], knee=3), CURVE_SHAPE)
    assert_png(elbow_plot([5, 2, 3], [1.0, 9.0, 4.0], knee=5), CURVE_SHAPE)  # unsorted ks are sorted
    with pytest.raises(ValueError, match="knee=7 is not one of"):
        elbow_plot([2, 3], [5.0, 4.0], knee=7)
    with pytest.raises(ValueError, match="2 values of k but 3"):
        elbow_plot([2, 3], [5.0, 4.0, 3.0])


def test_silhouette_plot_is_png_and_handles_gaps():
    ks = [1, 2, 3, 4, 5, 6]
    scores = [np.nan, 0.42, 0.57, 0.61, 0.49, -0.05]
    assert_png(silhouette_plot(ks, scores, best_k=4, title="window"), CURVE_SHAPE)
    assert_png(silhouette_plot([], []), CURVE_SHAPE)
    assert_png(silhouette_plot([1], [np.nan]), CURVE_SHAPE)
    with pytest.raises(ValueError, match="best_k=9"):
        silhouette_plot(ks, scores, best_k=9)


@pytest.mark.parametrize(
    "plot, values", [(elbow_plot, [9.0, 4.0, 2.0, 1.5, 1.2]), (silhouette_plot, [0.5, 0.6, 0.5, 0.6, 0.4])]
)
def test_the_storm_scale_k_is_a_narrow_mark_at_its_k(plot, values):
    """Only a band of a few dozen pixels around the storm count changes (its dotted line and upright label)."""
    ks = [50, 75, 100, 125, 150]
    plain = mpimg.imread(io.BytesIO(plot(ks, values)))
    marked = mpimg.imread(io.BytesIO(plot(ks, values, storm_k=110)))
    columns = np.flatnonzero(np.abs(marked - plain).max(axis=(0, 2)) > 0.1)
    assert columns.size and columns.max() - columns.min() < 40
    assert_png(plot(ks, values, storm_k=20), CURVE_SHAPE)  # outside the ks tried, as the data may put it


def test_plots_are_thread_safe_and_deterministic():
    ks, inertias = [2, 3, 4, 5], [9.0, 5.0, 3.0, 2.5]
    expected = elbow_plot(ks, inertias, knee=3)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: elbow_plot(ks, inertias, knee=3), range(8)))
    assert all(r == expected for r in results)


# --------------------------------------------------------------------------------------------------------------
# Cluster map
# --------------------------------------------------------------------------------------------------------------


def test_cluster_map_gulf_coast_without_network(no_network):
    lat, lon, labels, centroids = blobs([(29.8, -90.1), (27.9, -82.5), (25.8, -94.0)], 2000)
    energy = np.random.default_rng(1).lognormal(-32, 1, lat.size)
    data = cluster_map(lat, lon, labels, centroids, energy=energy, title="2024-06-01 18:00-19:00 UTC")
    image = assert_png(data, MAP_SHAPE)
    assert image[..., :3].std() > 0.05  # something was drawn
    assert no_network == []


def test_cluster_map_many_points():
    # 120k flashes in 8 clusters over the continental US: must stay quick (rasterized scatter, small markers).
    rng = np.random.default_rng(2)
    centres = np.c_[rng.uniform(28, 45, 8), rng.uniform(-105, -80, 8)]
    lat, lon, labels, _ = blobs(centres, 15000, spread=1.0)
    assert_png(cluster_map(lat, lon, labels, centres), MAP_SHAPE)


def test_cluster_map_single_cluster_and_no_centroids():
    lat, lon, labels, centroids = blobs([(-23.5, -46.6)], 500, spread=3.0)
    assert_png(cluster_map(lat, lon, labels, centroids, title="São Paulo"), MAP_SHAPE)
    assert_png(cluster_map(lat, lon, labels, None), MAP_SHAPE)


def test_cluster_map_all_points_at_one_location():
    n = 50
    assert_png(cluster_map([14.6] * n, [-90.5] * n, [0] * n, [[14.6, -90.5]]), MAP_SHAPE)
    # A single flash (given an extent only to skip loading the 2-second intermediate coastline again).
    assert_png(cluster_map([14.6], [-90.5], [0], [[14.6, -90.5]], energy=[1e-14], extent=(-100, -80, 5, 25)), MAP_SHAPE)


def test_cluster_map_across_antimeridian():
    lat, lon, labels, centroids = blobs([(-17.5, 178.5), (-14.0, -172.0)], 1000, spread=0.8)
    lon = (lon + 180.0) % 360.0 - 180.0
    assert_png(cluster_map(lat, lon, labels, centroids), MAP_SHAPE)
    # An explicit extent can cross it too: lon_max < lon_min.
    assert_png(cluster_map(lat, lon, labels, centroids, extent=(170, -165, -25, -5)), MAP_SHAPE)


def test_cluster_map_empty_input_renders_notice(no_network):
    empty = cluster_map([], [], [], None, title="2024-06-01 03:00-04:00 UTC")
    assert_png(empty, MAP_SHAPE)
    assert_png(cluster_map(np.array([]), np.array([]), np.array([], dtype=int), np.empty((0, 2))), MAP_SHAPE)
    assert_png(cluster_map([], [], [], None, extent=(-100, -80, 20, 35)), MAP_SHAPE)
    assert no_network == []


def test_cluster_map_skips_invalid_coordinates_and_handles_polar_data():
    lat = np.array([30.0, np.nan, 31.0, 22.5, 95.0])
    lon = np.array([-90.0, -91.0, np.inf, -80.0, -90.0])
    centroids = [[26.0, -85.0], [31.0, -91.0], [np.nan, 0.0]]  # a centroid that cannot be drawn is skipped
    assert_png(cluster_map(lat, lon, [0, 1, 1, 0, 1], centroids), MAP_SHAPE)
    # Beyond ±80° the map switches from Mercator to plate carrée.
    assert_png(cluster_map([84.0, 86.0], [10.0, 20.0], [0, 0], [[85.0, 15.0]]), MAP_SHAPE)


def test_cluster_map_rejects_inconsistent_input():
    with pytest.raises(ValueError, match="lengths differ"):
        cluster_map([1.0, 2.0], [1.0], [0, 0], None)
    with pytest.raises(ValueError, match="labels must be >= 0"):
        cluster_map([1.0], [1.0], [-1], None)
    with pytest.raises(ValueError, match="energy has 1 values for 2"):
        cluster_map([1.0, 2.0], [1.0, 2.0], [0, 0], None, energy=[1.0])
    with pytest.raises(ValueError, match="extent"):
        cluster_map([1.0], [1.0], [0], None, extent=(0, 10, 5))


def corners_latlon(canvas) -> tuple[float, float, float, float]:
    """The box the drawn axes really show, read back through the map's own projection."""
    (x0, x1), (y0, y1) = canvas.ax.get_xlim(), canvas.ax.get_ylim()
    lon_min, lat_min = canvas.m(x0, y0, inverse=True)
    lon_max, lat_max = canvas.m(x1, y1, inverse=True)
    return lon_min, lon_max, lat_min, lat_max


def drawn_numbers(ax) -> dict[int, tuple[float, float]]:
    """Where each centroid's number is written on the map (the text in the middle of its disc)."""
    return {int(t.get_text()): t.get_position() for t in ax.texts if t.get_text().isdigit()}


def test_cluster_map_shows_the_fitted_box_the_legend_and_each_centroid_where_it_is():
    lat, lon, labels, centroids = blobs([(29.8, -90.1), (27.9, -82.5), (25.8, -94.0)], 2000)
    energy = np.random.default_rng(1).lognormal(-32, 1, lat.size)
    flashes = MapInput.from_args(lat, lon, labels, centroids, energy)
    canvas = draw_cluster_map(flashes, title="window")

    # The axes show exactly the box map_extent fits, and that box holds every flash and centroid.
    extent = map_extent(flashes, None)
    assert canvas.extent == extent
    np.testing.assert_allclose(corners_latlon(canvas), extent, atol=1e-6)
    lon_min, lon_max, lat_min, lat_max = extent
    assert lon_min < min(lon.min(), centroids[:, 1].min()) and max(lon.max(), centroids[:, 1].max()) < lon_max
    assert lat_min < min(lat.min(), centroids[:, 0].min()) and max(lat.max(), centroids[:, 0].max()) < lat_max

    # The legend lists what legend_keys computes: 2,000 flashes (a third) per storm, then the two keys.
    keys = legend_keys(flashes, cluster_colors(3))
    assert [key.label for key in keys] == [
        "0:  2,000  (33%)",
        "1:  2,000  (33%)",
        "2:  2,000  (33%)",
        "centroid",
        "size: energy rank",
    ]
    (legend,) = canvas.fig.legends
    assert [text.get_text() for text in legend.get_texts()] == [key.label for key in keys]

    # Storms hundreds of kilometres apart: no disc is moved, and each number sits on its centroid.
    marks = centroid_marks(canvas, flashes)
    assert marks.cluster.tolist() == [0, 1, 2] and not marks.moved.any()
    back_lon, back_lat = canvas.m(marks.disc_xy[:, 0], marks.disc_xy[:, 1], inverse=True)
    np.testing.assert_allclose(np.c_[back_lat, back_lon], centroids, atol=1e-6)
    numbers = drawn_numbers(canvas.ax)
    assert sorted(numbers) == [0, 1, 2]
    for i, xy in zip(marks.cluster, marks.disc_xy, strict=True):
        np.testing.assert_allclose(numbers[i], xy)


def test_cluster_map_moves_piled_up_centroid_discs_apart_and_draws_a_line_back():
    # Two storms 0.02° apart on a map several degrees wide: their discs would cover each other.
    lat, lon, labels, centroids = blobs([(30.0, -90.0), (30.02, -90.0), (33.0, -86.0)], 200, spread=0.3)
    flashes = MapInput.from_args(lat, lon, labels, centroids, None)
    canvas = draw_cluster_map(flashes)
    marks = centroid_marks(canvas, flashes)
    assert marks.moved.tolist() == [True, True, False]
    pixels = canvas.ax.transData.transform(marks.disc_xy[:2])
    assert np.hypot(*(pixels[0] - pixels[1])) >= CENTROID_DISC_POINTS * DPI / 72 - 0.5
    back_lon, back_lat = canvas.m(marks.true_xy[:, 0], marks.true_xy[:, 1], inverse=True)
    np.testing.assert_allclose(np.c_[back_lat, back_lon], centroids, atol=1e-6)
    numbers = drawn_numbers(canvas.ax)
    for i, xy in zip(marks.cluster, marks.disc_xy, strict=True):
        np.testing.assert_allclose(numbers[i], xy)
    # one leader line per moved disc, from where the centroid is to where its disc went
    leaders = [line.get_xydata() for line in canvas.ax.lines if len(line.get_xydata()) == 2]
    assert len(leaders) == 2
    for i in (0, 1):
        assert any(np.allclose(line, [marks.true_xy[i], marks.disc_xy[i]]) for line in leaders)


def test_cluster_map_across_the_antimeridian_shows_the_unwrapped_box():
    lat, lon, labels, centroids = blobs([(-17.5, 178.5), (-14.0, -172.0)], 1000, spread=0.8)
    lon = (lon + 180.0) % 360.0 - 180.0
    canvas = draw_cluster_map(MapInput.from_args(lat, lon, labels, centroids, None))
    lon_min, lon_max, _, _ = canvas.extent
    assert lon_min < 180.0 < lon_max and lon_max - lon_min < 40.0  # one box over 180°, not a world map
    np.testing.assert_allclose(corners_latlon(canvas)[2:], canvas.extent[2:], atol=1e-6)
    # Both discs land inside the axes, the one at 172°W to the right of the one at 178.5°E.
    numbers = drawn_numbers(canvas.ax)
    (x0, x1), (y0, y1) = canvas.ax.get_xlim(), canvas.ax.get_ylim()
    assert all(x0 < x < x1 and y0 < y < y1 for x, y in numbers.values())
    assert numbers[0][0] < numbers[1][0]


def test_legend_keys_list_the_largest_clusters_and_sum_up_the_rest():
    # 25 clusters, cluster i with i + 1 flashes (325 in all): 19 rows for the largest (6..24), one for the rest.
    labels = np.repeat(np.arange(25), np.arange(1, 26))
    flashes = MapInput.from_args(np.zeros(labels.size), np.zeros(labels.size), labels, None, None)
    keys = legend_keys(flashes, cluster_colors(25))
    assert len(keys) == LEGEND_ROWS
    assert [key.label.split(":")[0] for key in keys[:-1]] == [str(i) for i in range(6, 25)]
    assert keys[-2].label == "24:  25  (8%)"
    assert keys[-1].label == "6 more: 21 (6%)"  # clusters 0-5 hold 1 + 2 + ... + 6 = 21 flashes
    assert "centroid" not in [key.label for key in keys]  # no centroids given, none drawn


def test_legend_keys_of_an_empty_map_are_empty():
    assert legend_keys(MapInput.from_args([], [], [], None, None), []) == []


@pytest.mark.parametrize(
    ("lons", "start", "width"),
    [
        ([-95.0, -80.0, -90.0], -95.0, 15.0),
        ([179.0, -179.0, 178.0], 178.0, 3.0),  # across the antimeridian: 178°E .. 179°W, not 358° wide
        ([10.0], 10.0, 0.0),
        ([-180.0, 0.0, 90.0], 0.0, 180.0),  # widest gap is 90..180, so the arc runs 0 -> 180
    ],
)
def test_lon_arc_is_smallest_containing_arc(lons, start, width):
    got_start, got_width = lon_arc(np.array(lons))
    assert got_start == pytest.approx(start)
    assert got_width == pytest.approx(width)


def test_auto_extent_pads_degenerate_data_and_clamps_latitude():
    lon_min, lon_max, lat_min, lat_max = auto_extent(np.array([-90.5]), np.array([14.6]))
    assert lat_min < 14.6 < lat_max and lon_min < -90.5 < lon_max
    assert lat_max - lat_min >= MIN_SPAN_DEG - 1e-9
    lon_min, lon_max, lat_min, lat_max = auto_extent(np.array([0.0, 1.0]), np.array([88.0, 89.5]))
    assert lat_max <= 90.0 and lat_min >= -90.0
    lon_min, lon_max, *_ = auto_extent(np.array([-179.0, 179.0]), np.array([-60.0, 70.0]))
    assert lon_max - lon_min <= 360.0


def test_cluster_colors_are_distinct():
    for k in (1, 5, 12, 20, 30):
        colours = cluster_colors(k)
        assert len(colours) == len(set(colours)) == k


# --------------------------------------------------------------------------------------------------------------
# save_png / png_markdown
# --------------------------------------------------------------------------------------------------------------


def test_save_png_creates_parents_and_leaves_no_temp_files(tmp_path):
    data = elbow_plot([2, 3], [2.0, 1.0])
    target = tmp_path / "a" / "b" / "elbow.png"
    assert save_png(data, target) == target
    assert target.read_bytes() == data
    assert os.listdir(target.parent) == ["elbow.png"]
    save_png(PNG_SIGNATURE + b"second", str(target))  # overwrite, path given as str
    assert target.read_bytes() == PNG_SIGNATURE + b"second"
    assert os.listdir(target.parent) == ["elbow.png"]


def test_save_png_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "map.png"
    target.write_bytes(PNG_SIGNATURE + b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_png(PNG_SIGNATURE + b"new", target)
    assert target.read_bytes() == PNG_SIGNATURE + b"old"
    assert os.listdir(tmp_path) == ["map.png"]


def test_save_png_rejects_non_png(tmp_path):
    with pytest.raises(ValueError, match="PNG signature"):
        save_png(b"GIF89a...", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_png_markdown_embeds_data_uri():
    data = PNG_SIGNATURE + b"payload"
    md = png_markdown(data, "Cluster map [k=5]\nsecond line")
    assert md.startswith("![Cluster map \\[k=5\\] second line](data:image/png;base64,")
    assert md.endswith(")")
    encoded = md.split("base64,", 1)[1][:-1]
    assert base64.b64decode(encoded) == data


def test_the_package_saving_and_map_geometry_load_no_plotting_library():
    # The Dagster wiring imports plots.output to save figures: that must not cost matplotlib's start-up.
    modules = ["lightning_eda.plots", "lightning_eda.plots.output", "lightning_eda.plots.geometry"]
    assert packages_loaded_by(modules, ["matplotlib", "mpl_toolkits", "dagster"]) == []


def test_at_storm_scale_only_the_clusters_the_legend_names_get_numbered_discs():
    """Hundreds of discs would hide the flashes: above NUMBERED_DISCS_MAX clusters the legend's largest are numbered
    (and spread apart), every other centroid is a small dot where it really is."""
    from lightning_eda.plots.cluster_map import LEGEND_ROWS, NUMBERED_DISCS_MAX

    k = NUMBERED_DISCS_MAX + 20
    rng = np.random.default_rng(5)
    centres = np.column_stack([rng.uniform(25, 45, k), rng.uniform(-110, -75, k)])
    sizes = np.arange(1, k + 1) * 5  # cluster i holds 5 (i + 1) flashes: the largest are the last
    labels = np.repeat(np.arange(k), sizes)
    lat = centres[labels, 0] + 0.05 * rng.standard_normal(labels.size)
    lon = centres[labels, 1] + 0.05 * rng.standard_normal(labels.size)
    flashes = MapInput.from_args(lat, lon, labels, centres, None)
    canvas = draw_cluster_map(flashes)
    marks = centroid_marks(canvas, flashes)
    largest = list(range(k - (LEGEND_ROWS - 1), k))
    assert marks.cluster[marks.numbered].tolist() == largest
    assert not marks.moved[~marks.numbered].any()
    assert sorted(drawn_numbers(canvas.ax)) == largest


def test_a_track_map_without_tracks_renders_its_notice(no_network):
    """A window whose flashes make no track (too few per frame, or none in its whole frames) still gets its map."""
    from lightning_eda.plots.tracks import storm_tracks_map

    storm_track = pd.DataFrame(
        {
            "track_id": pd.Series(dtype="int64"),
            "frame_start": pd.Series(dtype="datetime64[us]"),
            "lat": pd.Series(dtype=float),
            "lon": pd.Series(dtype=float),
        }
    )
    summary = pd.DataFrame({"track_id": pd.Series(dtype="int64"), "peak_flash_rate": pd.Series(dtype=float)})
    jumps = pd.DataFrame({"track_id": pd.Series(dtype="int64"), "period_start": pd.Series(dtype="datetime64[us]")})
    assert_png(storm_tracks_map(storm_track, summary, jumps, [], title="2019-06-01 15:10-15:30 UTC"), MAP_SHAPE)
    assert no_network == []
