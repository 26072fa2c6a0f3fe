"""The preprocessor's region (across the antimeridian too) and its time weight (space-time clustering)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lightning_eda.analysis.features import LatLonBox, feature_matrix, preprocess
from lightning_eda.ml import kmeans


def flashes(lat, lon, minutes=None) -> pd.DataFrame:
    n = len(lat)
    start = pd.Timestamp("2024-06-01 18:00") + pd.to_timedelta(np.zeros(n) if minutes is None else minutes, unit="min")
    return pd.DataFrame(
        {
            "source_file": "g.nc",
            "flash_id": np.arange(n),
            "time_start": start,
            "time_end": start,
            "lat": lat,
            "lon": lon,
            "energy": 1e-14,
            "quality_flag": 0,
            "area": 1e8,
        }
    )


def test_a_box_across_the_antimeridian_keeps_the_flashes_between_170e_and_170w():
    lon = np.array([165.0, 171.0, 179.9, -179.9, -171.0, -165.0, 0.0])
    lat = np.full(lon.size, 10.0)
    box = LatLonBox(lat_min=0.0, lat_max=20.0, lon_min=170.0, lon_max=-170.0)
    assert box.crosses_antimeridian and box.extent == (170.0, -170.0, 0.0, 20.0)
    result = preprocess(flashes(lat, lon), box=box)
    assert sorted(result.features["lon"]) == [-179.9, -171.0, 171.0, 179.9]
    assert result.dropped["outside_box"] == 3
    # the projection is centred on the kept flashes, near 180°, so they are a few hundred km apart, not 35,000
    assert np.ptp(result.features["x_km"]) < 2500
    plain = LatLonBox(lat_min=0.0, lat_max=20.0, lon_min=-170.0, lon_max=170.0)
    assert preprocess(flashes(lat, lon), box=plain).dropped["outside_box"] == 4  # the other way round: not 180°


@pytest.mark.parametrize(
    "edges", [(10.0, 5.0, 0.0, 1.0), (-91.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 0.0), (0.0, 1.0, 0.0, 181.0)]
)
def test_impossible_boxes_are_refused(edges):
    with pytest.raises(ValueError):
        LatLonBox(*edges)


def test_with_a_time_weight_one_place_an_hour_apart_is_two_storms():
    rng = np.random.default_rng(0)
    # one spot, two bursts of flashes an hour apart, plus a second spot 300 km east at the same time as the first
    lat = np.r_[rng.normal(30, 0.05, 200), rng.normal(30, 0.05, 200), rng.normal(30, 0.05, 200)]
    lon = np.r_[rng.normal(-95, 0.05, 200), rng.normal(-95, 0.05, 200), rng.normal(-91.9, 0.05, 200)]
    minutes = np.r_[rng.uniform(0, 5, 200), rng.uniform(60, 65, 200), rng.uniform(0, 5, 200)]
    truth = np.repeat([0, 1, 2], 200)
    space = preprocess(flashes(lat, lon, minutes))
    assert (space.features["f_t"] == 0).all() and feature_matrix(space.features, 0.0).shape == (600, 2)
    labels = kmeans(feature_matrix(space.features, 0.0), 2, n_init=10, seed=0).labels
    assert len(set(labels[:400])) == 1 and labels[400] != labels[0]  # in space alone the two bursts are one storm
    # 10 km a minute: the hour between the bursts counts as 600 km, farther than the 300 km to the other spot
    timed = preprocess(flashes(lat, lon, minutes), time_weight_km_per_min=10.0)
    X = feature_matrix(timed.features, 10.0)
    assert X.shape == (600, 3)
    labels = kmeans(X, 3, n_init=10, seed=0).labels
    assert all(len(set(labels[truth == c])) == 1 for c in range(3)) and len(set(labels)) == 3
    with pytest.raises(ValueError, match="time_weight"):
        preprocess(flashes(lat, lon, minutes), time_weight_km_per_min=-1.0)


def test_the_preprocessor_asset_keeps_the_region_and_the_map_zooms_to_it(s3, real_granules, tmp_path):
    """The real 2018 minute, region South America (the storms near 30°S): every kept flash lies in the box."""
    import duckdb
    from dagster import materialize
    from ingest_runs import resources_for, run_hour

    from lightning_eda.orchestration.assets.clustering import cluster_map, kmeans_cluster
    from lightning_eda.orchestration.assets.evaluators import elbow_evaluator, silhouette_evaluator
    from lightning_eda.orchestration.assets.preprocessor import preprocessor
    from lightning_eda.testing.real_minute import KEY_2018, serve_2018_minute

    serve_2018_minute(s3, real_granules)
    assert run_hour(tmp_path).success
    box = {"lat_min": -40.0, "lat_max": -20.0, "lon_min": -70.0, "lon_max": -45.0}
    result = materialize(
        [preprocessor, elbow_evaluator, silhouette_evaluator, kmeans_cluster, cluster_map],
        resources=resources_for(tmp_path),
        run_config={
            "ops": {
                "preprocessor": {"config": {"window_start": KEY_2018, **box, "time_weight_km_per_min": 5.0}},
                "elbow_evaluator": {"config": {"ks": [1, 2, 3, 4, 5], "n_init": 2}},
                "silhouette_evaluator": {"config": {"ks": [2, 3, 4, 5], "n_init": 2}},
                "kmeans_cluster": {"config": {"n_init": 2}},
            }
        },
    )
    assert result.success
    with duckdb.connect(str(tmp_path / "glm.duckdb"), read_only=True) as con:
        lat_min, lat_max, lon_min, lon_max, n = con.execute(
            "SELECT min(lat), max(lat), min(lon), max(lon), count(*) FROM flash_features"
        ).fetchone()
        assert con.execute("SELECT time_weight_km_per_min FROM feature_window").fetchone() == (5.0,)
    assert -40 <= lat_min and lat_max <= -20 and -70 <= lon_min and lon_max <= -45 and 300 < n < 853
    meta = result.asset_materializations_for_node("preprocessor")[0].metadata
    assert meta["dropped_outside_box"].value == 853 - n
    bad = materialize(
        [preprocessor],
        resources=resources_for(tmp_path),
        raise_on_error=False,
        run_config={"ops": {"preprocessor": {"config": {"window_start": KEY_2018, "lat_min": -40.0}}}},
    )
    assert not bad.success
