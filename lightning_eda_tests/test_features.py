"""Tests for lightning_eda.analysis.features: cleaning, the equal-area projection and the feature transform."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lightning_eda.analysis.features import (
    DROP_REASONS,
    EARTH_RADIUS_KM,
    FeatureTransform,
    build_features,
    clean_flashes,
    laea_forward,
    laea_inverse,
    projection_centre,
)

R = EARTH_RADIUS_KM


def _flashes(rows):
    cols = ["source_file", "flash_id", "time_start", "time_end", "lat", "lon", "energy", "area", "quality_flag"]
    t0 = pd.Timestamp("2024-06-01T18:00:00Z")
    out = [
        (src, fid, t0, t0 + pd.Timedelta(milliseconds=300), lat, lon, 1e-14, 120.0, qf)
        for src, fid, lat, lon, qf in rows
    ]
    return pd.DataFrame(out, columns=cols)


def _haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * R * np.arcsin(np.sqrt(a))


def _polygon_area(x, y):
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


# --------------------------------------------------------------------------------------------------------------
# clean_flashes
# --------------------------------------------------------------------------------------------------------------


def test_clean_flashes_counts_each_reason_once():
    df = _flashes(
        [
            ("a.nc", 1, 29.0, -90.0, 0),  # kept
            ("a.nc", 2, np.nan, -90.0, 0),  # missing_coordinates
            ("a.nc", 3, 29.0, np.nan, 0),  # missing_coordinates
            ("a.nc", 4, 91.0, -90.0, 0),  # out_of_range (lat)
            ("a.nc", 5, 29.0, 180.0, 0),  # out_of_range (lon == 180 is outside [-180, 180))
            ("a.nc", 6, -90.0, -180.0, 0),  # kept: both bounds are inclusive
            ("a.nc", 7, 29.0, np.inf, 0),  # out_of_range
            ("a.nc", 1, 29.5, -90.5, 0),  # duplicate of the first row
            ("b.nc", 1, 29.0, -90.0, 0),  # kept: same flash_id, other file
            ("b.nc", 2, 29.0, -90.0, 1),  # quality_flag
            ("b.nc", 3, np.nan, 200.0, 1),  # missing wins over out_of_range and quality_flag
        ]
    )
    clean, counts = clean_flashes(df, quality_flags={0})
    assert counts == {"missing_coordinates": 3, "out_of_range": 3, "quality_flag": 1, "duplicate": 1}
    assert list(counts) == list(DROP_REASONS)
    assert sum(counts.values()) + len(clean) == len(df)
    assert list(zip(clean.source_file, clean.flash_id, strict=True)) == [("a.nc", 1), ("a.nc", 6), ("b.nc", 1)]
    assert clean.loc[0, "lat"] == 29.0  # the first copy of a duplicate is kept
    assert list(clean.index) == [0, 1, 2]
    assert list(clean.columns) == list(df.columns)


def test_clean_flashes_all_reasons_present_when_nothing_dropped():
    df = _flashes([("a.nc", 1, 10.0, 10.0, 0), ("a.nc", 2, 11.0, 11.0, 0)])
    clean, counts = clean_flashes(df)
    assert counts == dict.fromkeys(DROP_REASONS, 0)
    assert len(clean) == 2


def test_clean_flashes_keeps_valid_copy_of_duplicate():
    # The first copy has no coordinates, so the second (valid) copy is the one kept and nothing counts as duplicate.
    df = _flashes([("a.nc", 1, np.nan, 0.0, 0), ("a.nc", 1, 5.0, 5.0, 0)])
    clean, counts = clean_flashes(df)
    assert counts["missing_coordinates"] == 1 and counts["duplicate"] == 0
    assert clean.lat.tolist() == [5.0]


def test_clean_flashes_quality_flags_none_keeps_all_flags_and_empty_keeps_none():
    df = _flashes([("a.nc", 1, 1.0, 1.0, 0), ("a.nc", 2, 1.0, 1.0, 3)])
    assert len(clean_flashes(df)[0]) == 2
    clean, counts = clean_flashes(df, quality_flags=[])
    assert len(clean) == 0 and counts["quality_flag"] == 2


def test_clean_flashes_empty_frame_and_errors():
    clean, counts = clean_flashes(_flashes([]))
    assert clean.empty and counts == dict.fromkeys(DROP_REASONS, 0)
    with pytest.raises(ValueError, match="missing columns.*flash_id"):
        clean_flashes(pd.DataFrame({"lat": [1.0], "lon": [1.0], "source_file": ["a"]}))
    with pytest.raises(TypeError):
        clean_flashes(_flashes([]), quality_flags="0")


# --------------------------------------------------------------------------------------------------------------
# Projection
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell_lat", [0.0, 50.0])
def test_projection_preserves_area_at_equator_and_50n(cell_lat):
    # One projection centred between both test latitudes: a 0.5° x 0.5° cell has its true spherical area on the
    # plane at 0° and at 50°N, although in degrees both cells look alike (true areas differ by ~cos 50° = 0.64).
    lat0, lon0 = 25.0, -80.0
    d = 0.5
    lat1, lat2, lon1, lon2 = cell_lat, cell_lat + d, -75.0, -75.0 + d
    edge = np.linspace(0.0, 1.0, 200, endpoint=False)
    ring_lat = np.concatenate([np.full_like(edge, lat1), lat1 + d * edge, np.full_like(edge, lat2), lat2 - d * edge])
    ring_lon = np.concatenate([lon1 + d * edge, np.full_like(edge, lon2), lon2 - d * edge, np.full_like(edge, lon1)])
    x, y = laea_forward(ring_lat, ring_lon, lat0, lon0)
    true_area = R**2 * np.radians(d) * (np.sin(np.radians(lat2)) - np.sin(np.radians(lat1)))
    assert _polygon_area(x, y) == pytest.approx(true_area, rel=1e-3)


@pytest.mark.parametrize("lat0", [0.0, 50.0, -30.0])
def test_distances_near_centre_match_great_circle(lat0):
    rng = np.random.default_rng(1)
    lon0 = 120.0
    lat = lat0 + rng.uniform(-2, 2, 50)
    lon = lon0 + rng.uniform(-2, 2, 50)
    x, y = laea_forward(lat, lon, lat0, lon0)
    planar = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    sphere = _haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    off = ~np.eye(lat.size, dtype=bool)
    np.testing.assert_allclose(planar[off], sphere[off], rtol=2e-3)
    # A degree of longitude is shorter at 50°N than at the equator, and the projection knows it.
    if lat0 == 50.0:
        x1, _ = laea_forward(50.0, lon0 + 1.0, lat0, lon0)
        assert float(x1) == pytest.approx(111.2 * np.cos(np.radians(50.0)), rel=1e-3)


def test_projection_centre_maps_to_origin_and_axes_point_east_north():
    x, y = laea_forward(np.array([40.0, 40.0, 41.0]), np.array([-100.0, -99.0, -100.0]), 40.0, -100.0)
    assert x[0] == pytest.approx(0.0, abs=1e-9) and y[0] == pytest.approx(0.0, abs=1e-9)
    assert x[1] > 0 and y[2] > 0


def test_projection_round_trip_to_1e9_degrees():
    rng = np.random.default_rng(0)
    lat0, lon0 = 10.0, -75.0
    # Everything within ~100° of the centre: the whole GOES field of view and then some; poles included.
    lat = np.concatenate([rng.uniform(-80, 89.999, 5000), [90.0, -60.0, lat0]])
    lon = np.concatenate([rng.uniform(-175, 25, 5000), [0.0, -75.0, lon0]])
    back_lat, back_lon = laea_inverse(*laea_forward(lat, lon, lat0, lon0), lat0, lon0)
    np.testing.assert_allclose(back_lat, lat, rtol=0, atol=1e-9)
    not_pole = np.abs(lat) < 90
    dlon = (back_lon - lon + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(dlon[not_pole], 0.0, atol=1e-9)
    assert np.all((back_lon >= -180) & (back_lon < 180))


def test_inverse_outside_disc_is_nan():
    lat, lon = laea_inverse(np.array([2.5 * R]), np.array([0.0]), 0.0, 0.0)
    assert np.isnan(lat[0]) and np.isnan(lon[0])


def test_projection_centre_uses_circular_mean_longitude():
    lat0, lon0 = projection_centre(np.array([0.0, 10.0]), np.array([179.0, -179.0]))
    assert lat0 == pytest.approx(5.0)
    assert abs(lon0) == pytest.approx(180.0)
    assert projection_centre(np.array([]), np.array([])) == (0.0, 0.0)
    # Longitudes that cancel out have no mean direction: fall back to 0 rather than an arbitrary angle.
    assert projection_centre(np.zeros(4), np.array([0.0, 90.0, -180.0, -90.0]))[1] == 0.0


# --------------------------------------------------------------------------------------------------------------
# FeatureTransform / build_features
# --------------------------------------------------------------------------------------------------------------


def _gulf_coast(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    lat = np.concatenate([rng.normal(29.5, 0.6, n // 2), rng.normal(27.0, 0.4, n - n // 2)])
    lon = np.concatenate([rng.normal(-90.0, 0.8, n // 2), rng.normal(-82.0, 0.5, n - n // 2)])
    return pd.DataFrame({"lat": lat, "lon": lon})


def test_build_features_are_z_scored():
    features, transform = build_features(_gulf_coast())
    assert features.shape == (2000, 2) and features.dtype == np.float64
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(features.std(axis=0), 1.0, rtol=1e-12)
    assert transform.lat0 == pytest.approx(28.25, abs=0.1)
    assert transform.lon0 == pytest.approx(-86.0, abs=0.1)


def test_centroids_map_back_to_latlon():
    df = _gulf_coast()
    features, transform = build_features(df)
    # The feature vector of a known place maps back to that place...
    places = np.array([[29.95, -90.07], [27.95, -82.46]])  # New Orleans, Tampa
    back_lat, back_lon = transform.to_latlon(transform.to_features(places[:, 0], places[:, 1]))
    np.testing.assert_allclose(np.c_[back_lat, back_lon], places, atol=1e-9)
    # ...and the mean feature vector of a cluster lands inside the cluster.
    first = features[:1000].mean(axis=0, keepdims=True)
    lat, lon = transform.to_latlon(first)
    assert lat[0] == pytest.approx(29.5, abs=0.1) and lon[0] == pytest.approx(-90.0, abs=0.1)


def test_transform_dict_round_trip_is_json_serialisable():
    _, transform = build_features(_gulf_coast())
    data = json.loads(json.dumps(transform.to_dict()))
    assert data["projection"] == "laea_sphere"
    assert FeatureTransform.from_dict(data) == transform
    with pytest.raises(ValueError, match="projection"):
        FeatureTransform.from_dict({**data, "projection": "mercator"})
    with pytest.raises(ValueError, match="missing fields"):
        FeatureTransform.from_dict({"lat0": 0.0})


def test_zero_spread_gives_unit_std_and_finite_features():
    df = pd.DataFrame({"lat": [30.0] * 5, "lon": [-90.0] * 5})
    features, transform = build_features(df)
    assert transform.x_std == 1.0 and transform.y_std == 1.0
    np.testing.assert_allclose(features, 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="x_std"):
        FeatureTransform(lat0=0, lon0=0, x_mean=0, y_mean=0, x_std=0, y_std=1)


def test_antimeridian_data_stays_together():
    # Storms over Fiji straddle ±180°: raw longitudes split them into two far-apart groups, features must not.
    rng = np.random.default_rng(3)
    lon = (rng.normal(179.8, 0.3, 500) + 180.0) % 360.0 - 180.0
    assert (lon < 0).any() and (lon > 0).any()
    lat = rng.normal(-17.5, 0.3, 500)
    features, transform = build_features(pd.DataFrame({"lat": lat, "lon": lon}))
    assert abs(transform.lon0) > 179.0
    x_km = features[:, 0] * transform.x_std
    assert np.ptp(x_km) < 300.0  # ~2° of longitude at 17.5°S, not ~360°
    back_lat, back_lon = transform.to_latlon(features)
    np.testing.assert_allclose(back_lat, lat, atol=1e-9)
    np.testing.assert_allclose((back_lon - lon + 180) % 360 - 180, 0.0, atol=1e-9)


def test_build_features_empty_and_invalid_input():
    features, transform = build_features(pd.DataFrame({"lat": [], "lon": []}))
    assert features.shape == (0, 2)
    assert transform == FeatureTransform(lat0=0.0, lon0=0.0, x_mean=0.0, y_mean=0.0, x_std=1.0, y_std=1.0)
    with pytest.raises(ValueError, match="clean_flashes"):
        build_features(pd.DataFrame({"lat": [np.nan], "lon": [0.0]}))
    with pytest.raises(ValueError, match="missing column"):
        build_features(pd.DataFrame({"lat": [0.0]}))


# --- the analysis window: typed in memory, one row of feature_window at the store's boundary --------------------


def test_the_window_survives_its_row_as_the_store_gives_it_back():
    from datetime import datetime

    from lightning_eda.analysis.features import LatLonBox
    from lightning_eda.analysis.window import AnalysisWindow

    transform = FeatureTransform.fit(np.array([10.0, 12.0, 15.0]), np.array([-60.0, -58.0, -55.0]))
    window = AnalysisWindow(
        bucket="noaa-goes16",
        start=datetime(2018, 7, 2, 4),
        end=datetime(2018, 7, 2, 6),
        transform=transform,
        box=LatLonBox(0.0, 20.0, 170.0, -170.0),
        time_weight_km_per_min=5.0,
        n_input=10,
        n_features=7,
        dropped={"outside_box": 2, "duplicate": 1},
    )
    row = window.to_row()
    assert json.loads(row["box"]) == {"lat_min": 0.0, "lat_max": 20.0, "lon_min": 170.0, "lon_max": -170.0}
    # what DuckDB's DataFrame gives back: pandas timestamps, NumPy numbers
    stored = {
        **row,
        "window_start": pd.Timestamp(row["window_start"]),
        "window_end": pd.Timestamp(row["window_end"]),
        "n_input": np.int64(10),
        "n_features": np.int64(7),
        "time_weight_km_per_min": np.float64(5.0),
    }
    assert AnalysisWindow.from_row(stored) == window
    assert window.extent == (170.0, -170.0, 0.0, 20.0)
    assert window.text == "2018-07-02 04:00 – 2018-07-02 06:00 UTC" and window.title.endswith("· noaa-goes16")
    without_box = AnalysisWindow.from_row({**stored, "box": None, "time_weight_km_per_min": np.nan})
    assert without_box.box is None and without_box.extent is None and without_box.time_weight_km_per_min == 0.0


def test_a_window_request_looks_up_the_latest_hour_only_without_a_start():
    from datetime import datetime

    from lightning_eda.analysis.window import WindowRequest

    given = WindowRequest(start=datetime(2018, 7, 2, 4), hours=24)
    assert given.bounds(latest_loaded=None) == (datetime(2018, 7, 2, 4), datetime(2018, 7, 3, 4))
    latest = WindowRequest(start=None)
    assert latest.bounds(datetime(2020, 1, 1, 5)) == (datetime(2020, 1, 1, 5), datetime(2020, 1, 1, 6))
    with pytest.raises(ValueError, match="no hour is loaded yet"):
        latest.bounds(None)
    with pytest.raises(ValueError, match="window_hours=0"):
        WindowRequest(start=None, hours=0)


def test_a_box_needs_all_four_edges_or_none():
    from lightning_eda.analysis.window import box_from_edges

    assert box_from_edges(None, None, None, None) is None
    assert box_from_edges(-40.0, -20.0, -70.0, -45.0).extent == (-70.0, -45.0, -40.0, -20.0)
    with pytest.raises(ValueError, match=r"missing: lat_max, lon_max"):
        box_from_edges(-40.0, None, -70.0, None)
    with pytest.raises(ValueError, match="lat_min < lat_max"):
        box_from_edges(10.0, 0.0, -70.0, -45.0)
