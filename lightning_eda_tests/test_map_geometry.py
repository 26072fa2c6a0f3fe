"""Geometry of the cluster map: which box of longitude/latitude the map shows, not whether a PNG comes out.

The box is decided in ``lightning_eda.plots.geometry`` before anything is drawn, so these tests call it there:
``MapInput.from_args`` (validation and wrapping), ``map_extent`` (fitted box), ``lon_arc``/``unwrap_longitude``
(antimeridian), ``clamp_extent`` (a caller's box) and ``graticule`` (gridlines and their labels). No map is drawn,
so basemap is never imported.
"""

from __future__ import annotations

import numpy as np
import pytest

from lightning_eda.plots.geometry import (
    MERCATOR_MAX_LAT,
    MapInput,
    clamp_extent,
    graticule,
    lon_arc,
    map_extent,
    unwrap_longitude,
    unwrap_start,
)


def fitted_extent(lat, lon, centroids=None) -> tuple[float, float, float, float]:
    flashes = MapInput.from_args(lat, lon, np.zeros(len(lat), dtype=int), centroids, None)
    return tuple(float(v) for v in map_extent(flashes, None))


def unwrapped_for_map(lon, extent) -> np.ndarray:
    """Longitudes as cluster_map draws them: unwrapped into the 360° window centred on the map."""
    return unwrap_longitude(np.asarray(lon, dtype=float), unwrap_start(extent))


def assert_contains(extent, lat, lon) -> None:
    lon_min, lon_max, lat_min, lat_max = extent
    lon_u = unwrapped_for_map(lon, extent)
    assert np.all((lon_min <= lon_u) & (lon_u <= lon_max)), (extent, lon_u.min(), lon_u.max())
    lat = np.asarray(lat, dtype=float)
    assert np.all((lat_min <= lat) & (lat <= lat_max)), (extent, lat.min(), lat.max())


def assert_drawable(extent) -> None:
    """Finite, positive size, at most one turn of longitude, latitude within what the projection can draw."""
    lon_min, lon_max, lat_min, lat_max = extent
    assert np.all(np.isfinite(extent))
    assert 0 < lon_max - lon_min <= 360.0
    assert lat_min < lat_max
    mercator = -MERCATOR_MAX_LAT <= lat_min and lat_max <= MERCATOR_MAX_LAT
    # Mercator is used only inside ±80°; otherwise plate carrée, which can draw up to the poles but no further.
    assert -90.0 <= lat_min and lat_max <= 90.0
    if not mercator:
        assert lat_min < -MERCATOR_MAX_LAT or lat_max > MERCATOR_MAX_LAT


# --- antimeridian ----------------------------------------------------------------------------------------------


ANTIMERIDIAN_LON = np.r_[np.linspace(170.0, 179.9, 20), np.linspace(-180.0, -170.1, 20)]
ANTIMERIDIAN_LAT = np.linspace(10.0, 20.0, 40)


def test_flashes_straddling_the_antimeridian_give_a_narrow_box_centred_on_180():
    extent = fitted_extent(ANTIMERIDIAN_LAT, ANTIMERIDIAN_LON)
    lon_min, lon_max, _, _ = extent
    # Data span 19.9° (170°E to 170.1°W); padded by 8 % on each side → 23.08°, not a ~360° world map.
    assert 20.0 <= lon_max - lon_min <= 40.0
    assert lon_max - lon_min == pytest.approx(19.9 * 1.16)
    # Centred on the data's midpoint, 179.95°E (whichever turn of the globe the box is written in).
    assert ((lon_min + lon_max) / 2) % 360.0 == pytest.approx(179.95)
    assert_contains(extent, ANTIMERIDIAN_LAT, ANTIMERIDIAN_LON)
    assert_drawable(extent)


def test_antimeridian_box_is_the_same_whichever_way_the_longitudes_are_written():
    # 190°, 200° are 170°W, 160°W; from_args wraps them into [-180, 180) before the box is fitted.
    a = fitted_extent([0.0, 5.0, 10.0], [175.0, -170.0, -160.0])
    b = fitted_extent([0.0, 5.0, 10.0], [175.0, 190.0, 200.0])
    assert a == pytest.approx(b)
    assert a[0] < 175.0 and a[1] > 200.0  # one continuous box from 175°E to 160°W (= 200°)


def test_lon_arc_across_the_antimeridian():
    # The complement of the widest gap: 175°E to 175°W is a 10° arc starting at 175, not 350° from -175.
    assert lon_arc(np.array([175.0, -175.0])) == (175.0, 10.0)
    assert lon_arc(np.array([-175.0, 179.0, 175.0])) == (175.0, 10.0)


def test_unwrap_puts_longitudes_into_one_turn_from_start():
    out = unwrap_longitude(np.array([175.0, -175.0, -180.0, 170.0]), 170.0)
    np.testing.assert_allclose(out, [175.0, 185.0, 180.0, 170.0])
    assert np.all((170.0 <= out) & (out < 530.0))


# --- around Greenwich ------------------------------------------------------------------------------------------


def test_flashes_around_zero_give_a_box_around_zero():
    lat, lon = np.linspace(-5.0, 5.0, 40), np.linspace(-10.0, 10.0, 40)
    extent = fitted_extent(lat, lon)
    lon_min, lon_max, lat_min, lat_max = extent
    # 20° of longitude padded by 8 % each side; symmetric data give a symmetric box.
    assert (lon_min, lon_max) == pytest.approx((-11.6, 11.6))
    assert lat_min == pytest.approx(-lat_max)
    assert_contains(extent, lat, lon)
    assert_drawable(extent)


def test_lon_arc_around_zero():
    assert lon_arc(np.array([-10.0, 10.0, 0.0])) == (-10.0, 20.0)


# --- degenerate input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        ([30.0], [-95.0]),  # one flash
        ([30.0] * 50, [-95.0] * 50),  # many flashes on one spot
        ([0.0], [180.0]),  # one flash on the antimeridian
        ([-45.0, -45.0], [-180.0, 180.0]),  # the same meridian written both ways
    ],
)
def test_single_spot_gives_a_finite_box_of_positive_size(lat, lon):
    extent = fitted_extent(lat, lon)
    lon_min, lon_max, lat_min, lat_max = extent
    assert_drawable(extent)
    # A degenerate box grows to 3° (then widens to the map's shape), centred on the spot.
    assert lat_max - lat_min == pytest.approx(3.0)
    assert 3.0 <= lon_max - lon_min <= 10.0
    assert (lat_min + lat_max) / 2 == pytest.approx(lat[0])
    centre = ((lon_min + lon_max) / 2 + 180.0) % 360.0 - 180.0
    assert centre == pytest.approx(((lon[0] + 180.0) % 360.0) - 180.0)
    assert_contains(extent, lat, lon)


def test_lon_arc_of_a_single_longitude_has_zero_width():
    assert lon_arc(np.array([5.0, 5.0])) == (5.0, 0.0)


def test_no_flashes_give_the_whole_world():
    assert fitted_extent([], []) == (-180.0, 180.0, -90.0, 90.0)


# --- poles -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_flashes_near_a_pole_are_clamped_to_it(sign):
    lat, lon = sign * np.linspace(89.5, 89.99, 10), np.linspace(-20.0, 20.0, 10)
    extent = fitted_extent(lat, lon)
    _, _, lat_min, lat_max = extent
    # Padding would go past the pole; the box stops at ±90 (plate carrée, since Mercator cannot reach it).
    assert (lat_max if sign > 0 else lat_min) == sign * 90.0
    assert_drawable(extent)
    assert_contains(extent, lat, lon)


def test_flashes_on_the_pole():
    extent = fitted_extent([90.0, 90.0], [0.0, 10.0])
    assert extent[3] == 90.0
    assert_drawable(extent)


def test_widening_in_latitude_stops_at_the_mercator_limit():
    # Wide (120°) and high (75-79°N): the box is widened in latitude to the map's shape, which in Mercator
    # would run past 80°N; it is cut at 80° so the Mercator projection is still valid.
    lat, lon = np.linspace(75.0, 79.0, 10), np.linspace(-60.0, 60.0, 10)
    extent = fitted_extent(lat, lon)
    assert extent[3] == MERCATOR_MAX_LAT
    assert extent[2] < 75.0
    assert_drawable(extent)
    assert_contains(extent, lat, lon)


def test_invalid_latitudes_are_skipped_not_used_for_the_box():
    # 95° and NaN cannot be drawn: the box is fitted to the two valid flashes only.
    good = fitted_extent([10.0, 12.0], [20.0, 22.0])
    assert fitted_extent([10.0, 95.0, 12.0, np.nan], [20.0, 0.0, 22.0, 5.0]) == good


# --- containment, centroids, wide data --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_box_always_contains_every_flash(seed):
    # Random storms anywhere, some across the antimeridian, some near the poles, some spread widely.
    rng = np.random.default_rng(seed)
    n = 200
    centre_lon, centre_lat = rng.uniform(-180, 180), rng.uniform(-85, 85)
    spread_lon, spread_lat = rng.choice([0.1, 5.0, 40.0, 150.0]), rng.choice([0.1, 5.0, 20.0])
    lon = centre_lon + rng.uniform(-spread_lon, spread_lon, n)
    lat = np.clip(centre_lat + rng.uniform(-spread_lat, spread_lat, n), -90, 90)
    extent = fitted_extent(lat, lon)
    assert_drawable(extent)
    assert_contains(extent, lat, lon)


def test_box_contains_the_centroids_too():
    # A centroid far from its flashes (e.g. from another window) still fits on the map...
    extent = fitted_extent([10.0, 11.0], [20.0, 21.0], centroids=[[30.0, 40.0]])
    assert_contains(extent, [10.0, 11.0, 30.0], [20.0, 21.0, 40.0])
    # ...but one with an impossible latitude is ignored.
    assert fitted_extent([10.0, 11.0], [20.0, 21.0], centroids=[[95.0, 40.0]]) == fitted_extent(
        [10.0, 11.0], [20.0, 21.0]
    )


def test_data_all_round_the_globe_symmetric_gives_a_plain_world_map():
    # 340° of longitude (gap only around 180°): more than 300°, so a -180..180 world map.
    lon = np.linspace(-170.0, 170.0, 40)
    lat = np.linspace(-10.0, 10.0, 40)
    extent = fitted_extent(lat, lon)
    assert extent[:2] == (-180.0, 180.0)
    assert_contains(extent, lat, lon)


def test_data_all_round_the_globe_asymmetric_gives_a_plain_world_map():
    lon = np.linspace(-150.0, 170.0, 40)  # 320° arc, gap 170°E..150°W
    lat = np.linspace(-10.0, 10.0, 40)
    extent = fitted_extent(lat, lon)
    assert extent[:2] == (-180.0, 180.0)


# --- a caller's extent -----------------------------------------------------------------------------------------


def test_caller_extent_lon_max_below_lon_min_crosses_the_antimeridian():
    assert clamp_extent((170.0, -170.0, 10.0, 20.0)) == (170.0, 190.0, 10.0, 20.0)


def test_caller_extent_is_shifted_into_one_turn_and_latitudes_sorted_and_clamped():
    assert clamp_extent((190.0, 200.0, 20.0, 10.0)) == (-170.0, -160.0, 10.0, 20.0)
    assert clamp_extent((-180.0, 180.0, -95.0, 95.0)) == (-180.0, 180.0, -90.0, 90.0)


def test_caller_extent_wider_than_a_turn_is_cut_to_one():
    lon_min, lon_max, _, _ = clamp_extent((-100.0, 400.0, 0.0, 10.0))
    assert (lon_min, lon_max) == (-100.0, 260.0)


@pytest.mark.parametrize(
    ("extent", "message"),
    [
        ((0.0, 10.0, 5.0), "extent must be"),
        ((0.0, np.nan, 0.0, 10.0), "finite"),
        ((0.0, 10.0, 95.0, 100.0), "no latitude span"),  # both clamp to 90
        ((0.0, 10.0, 5.0, 5.0), "no latitude span"),
    ],
)
def test_caller_extent_rejected(extent, message):
    with pytest.raises(ValueError, match=message):
        clamp_extent(extent)


def test_caller_extent_is_used_as_given_bymap_extent():
    flashes = MapInput.from_args([10.0], [20.0], [0], None, None)
    assert map_extent(flashes, (170.0, -170.0, 10.0, 20.0)) == (170.0, 190.0, 10.0, 20.0)


# --- readable at storm scale: 40 clusters ---------------------------------------------------------------------


def test_centroid_discs_that_would_pile_up_are_moved_apart_and_lone_ones_stay():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lightning_eda.plots.geometry import spread_discs

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    x = np.array([50.0, 50.2, 50.0, 10.0])  # three almost on one spot (two exactly), one far away
    y = np.array([50.0, 50.1, 50.0, 90.0])
    nx, ny = spread_discs(ax, x, y, min_points=22.0)
    points = ax.transData.transform(np.column_stack([nx, ny]))
    gaps = [np.hypot(*(points[i] - points[j])) for i in range(4) for j in range(i + 1, 4)]
    assert min(gaps) >= 22.0 * 100 / 72 - 0.5  # no two discs overlap
    assert (nx[3], ny[3]) == (10.0, 90.0)


def test_forty_cluster_colours_are_all_different_and_neighbours_differ_most():
    from matplotlib.colors import to_rgb

    from lightning_eda.plots.style import cluster_colors

    colors = cluster_colors(40)
    assert len(set(colors)) == 40
    rgb = np.array([to_rgb(c) for c in colors])
    neighbour = np.linalg.norm(np.diff(rgb, axis=0), axis=1)
    assert neighbour.min() > 0.15  # clusters 7 and 8 never look alike (a plain gradient gives ~0.05)


def test_a_days_silhouette_title_stays_inside_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lightning_eda.plots.curves import style_curve_axes

    fig = Figure(figsize=(8.0, 5.0), dpi=130, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(2, 41), np.linspace(0.5, 0.9, 39))
    style_curve_axes(
        ax,
        "silhouette coefficient",
        "Silhouette — sample of 20,000 of 1,063,412 flashes, 2018-07-02 00:00 – 2018-07-03 00:00 UTC",
    )
    canvas.draw()
    box = ax.title.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1


# --- gridlines and their labels ---------------------------------------------------------------------------------


def plate_carree(lon, lat):
    """The identity projection (map coordinates are degrees), standing in for basemap's 'cyl'."""
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def test_graticule_puts_round_gridlines_inside_the_box_and_labels_them_by_hemisphere():
    grid = graticule(plate_carree, (-97.0, -79.0, 22.0, 34.0))
    # 18° wide / 5 lines → a 5° step; 12° high → 2.5°, starting at the first multiple inside the box.
    np.testing.assert_allclose(grid.xs, [-95.0, -90.0, -85.0, -80.0])
    assert grid.x_labels == ["95°W", "90°W", "85°W", "80°W"]
    np.testing.assert_allclose(grid.ys, [22.5, 25.0, 27.5, 30.0, 32.5])
    assert grid.y_labels == ["22.5°N", "25°N", "27.5°N", "30°N", "32.5°N"]


def test_graticule_across_the_antimeridian_and_the_equator_reads_as_east_and_west():
    # A box from 170°E to 170°W (written 170..190) and 10°S to 10°N: meridians past 180 are labelled °W,
    # and 0° and 180° carry no hemisphere letter.
    grid = graticule(plate_carree, (170.0, 190.0, -10.0, 10.0))
    assert grid.x_labels == ["170°E", "175°E", "180°", "175°W", "170°W"]
    np.testing.assert_allclose(grid.xs, [170.0, 175.0, 180.0, 185.0, 190.0])  # positions stay unwrapped
    assert grid.y_labels == ["10°S", "5°S", "0°", "5°N", "10°N"]


@pytest.mark.parametrize(
    ("lat", "lon", "decimals", "expected"),
    [
        (29.8, -90.1, 2, "29.80°N 90.10°W"),
        (-27.94, 82.5, 1, "27.9°S 82.5°E"),
        (0.0, -0.04, 1, "0.0°N 0.0°W"),  # the sign decides the letter, even where the digits round to 0
    ],
)
def test_format_position_names_the_hemispheres(lat, lon, decimals, expected):
    from lightning_eda.geo import format_position

    assert format_position(lat, lon, decimals=decimals) == expected


def test_strong_track_labels_of_a_tight_storm_system_do_not_cover_each_other():
    """The realistic hour's six strongest tracks end within ~60 km of one another (a mesoscale system over Uruguay):
    their rank labels are spread apart and tied back to their tracks; a lone strong track keeps its label beside it."""
    import pandas as pd

    from lightning_eda.plots.geometry import MapInput
    from lightning_eda.plots.map_canvas import map_canvas
    from lightning_eda.plots.tracks import _LABEL_POINTS, track_label_marks

    last = pd.DataFrame(
        {
            "lat": [-32.03, -32.16, -32.26, -31.37, -32.09, -32.2, 40.0],
            "lon": [-58.37, -56.96, -52.83, -59.46, -57.76, -57.9, -100.0],
        },
        index=pd.Index([11, 12, 13, 14, 15, 16, 17], name="track_id"),
    )
    canvas = map_canvas(
        MapInput.from_args(last["lat"], last["lon"], np.zeros(len(last), dtype=np.int64), None, None), None
    )
    marks = track_label_marks(canvas, last, [11, 12, 13, 14, 15, 16, 17, 99])  # 99: not in this window
    assert marks.rank.tolist() == [1, 2, 3, 4, 5, 6, 7]
    points = canvas.ax.transData.transform(marks.label_xy)
    gaps = [np.hypot(*(points[i] - points[j])) for i in range(7) for j in range(i + 1, 7)]
    assert min(gaps) >= _LABEL_POINTS * canvas.fig.dpi / 72 - 0.5
    assert marks.moved[:6].any() and not marks.moved[6]
    assert np.array_equal(marks.label_xy[6], marks.beside_xy[6])
