"""k=auto at storm scale through the assets, on the realistic hour of issue 17 (180 granules re-stamped from the real
ones, 44,010 flashes over the Americas), read from a local folder laid out like the bucket.

The bar: the window's storm count is k, within 20 % of tobac's segment count, and the clusters agree with tobac's
segments (adjusted Rand index >= 0.9 over the flashes inside a segment); the evaluators' default ks surround that k;
the previous criterion stays selectable.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from dagster import materialize
from ingest_runs import resources_for
from sklearn.metrics import adjusted_rand_score
from tobac_reference import tobac_segments

from lightning_eda.analysis import clustering
from lightning_eda.analysis.storm_scale import k_range_around
from lightning_eda.orchestration.assets.clustering import kmeans_cluster
from lightning_eda.orchestration.assets.evaluators import elbow_evaluator, silhouette_evaluator
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.store import database
from lightning_eda.testing.real_minute import BUCKET
from lightning_eda.testing.synthetic_hour import make_hour

HOUR = datetime(2024, 7, 1, 18)
PARTITION = "2024-07-01-18:00"


def rows(data_dir, sql: str):
    with database.connect(data_dir / "glm.duckdb", read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def clustered_hour(real_granules, tmp_path_factory):
    """The realistic hour ingested from a local mirror, then clustered with every setting at its default (the maps,
    which only draw the tables, are left out)."""
    source = tmp_path_factory.mktemp("mirror")
    make_hour(real_granules, source / BUCKET / "GLM-L2-LCFA" / f"{HOUR:%Y/%j/%H}", HOUR)
    data_dir = tmp_path_factory.mktemp("data")
    resources = resources_for(data_dir, source_dir=source)
    assert materialize([extract, transform, load], partition_key=PARTITION, resources=resources).success
    run_config = {"ops": {"preprocessor": {"config": {"window_start": f"{HOUR:%Y-%m-%d %H:%M}"}}}}
    clustering_assets = [preprocessor, elbow_evaluator, silhouette_evaluator, kmeans_cluster]
    result = materialize(clustering_assets, resources=resources, run_config=run_config)
    assert result.success
    return data_dir, resources, result


def test_the_evaluators_default_ks_surround_the_storm_count(clustered_hour):
    data_dir, _, result = clustered_hour
    ((storm_count, n_features),) = rows(data_dir, "SELECT storm_count, n_features FROM feature_window")
    preprocessed = result.asset_materializations_for_node("preprocessor")[0].metadata
    assert n_features == 44_010 and preprocessed["storm_count"].value == storm_count
    ks = [r[0] for r in rows(data_dir, "SELECT k FROM cluster_evaluation ORDER BY k")]
    assert ks == k_range_around(storm_count)
    assert ks[0] <= 0.5 * storm_count + 1 and ks[-1] >= 1.5 * storm_count - 1 and storm_count in ks
    scored = [r[0] for r in rows(data_dir, "SELECT k FROM cluster_evaluation WHERE silhouette IS NOT NULL ORDER BY k")]
    assert scored == ks


def test_k_auto_gives_the_storms_tobac_finds(clustered_hour):
    data_dir, _, result = clustered_hour
    meta = result.asset_materializations_for_node("kmeans_cluster")[0].metadata
    ((storm_count,),) = rows(data_dir, "SELECT storm_count FROM feature_window")
    assert (meta["k"].value, meta["k_criterion"].value) == (storm_count, "storms")
    assert meta["storm_count"].value == storm_count
    flashes = np.array(
        rows(
            data_dir,
            "SELECT f.x_km, f.y_km, c.cluster FROM flash_features f JOIN flash_cluster c USING (source_file, flash_id) "
            "ORDER BY f.row_id",
        )
    )
    assert len(flashes) == 44_010
    segments = tobac_segments(flashes[:, 0], flashes[:, 1])
    inside = segments > 0
    n_segments = len(np.unique(segments[inside]))
    assert abs(meta["k"].value - n_segments) <= 0.2 * n_segments, (meta["k"].value, n_segments)
    assert adjusted_rand_score(segments[inside], flashes[inside, 2].astype(int)) >= 0.9


def test_the_silhouette_criterion_stays_selectable(clustered_hour):
    data_dir, resources, _ = clustered_hour
    run_config = {"ops": {"kmeans_cluster": {"config": {"criterion": "silhouette"}}}}
    result = materialize([kmeans_cluster], resources=resources, run_config=run_config)
    assert result.success
    meta = result.asset_materializations_for_node("kmeans_cluster")[0].metadata
    evaluation = rows(data_dir, "SELECT k, inertia, silhouette FROM cluster_evaluation ORDER BY k")
    silhouettes = {k: s for k, _, s in evaluation}
    expected = clustering.choose_k(silhouettes, clustering.elbow_knee({k: i for k, i, _ in evaluation}))
    assert (meta["k"].value, meta["k_reason"].value, meta["k_criterion"].value) == (*expected, "silhouette")
    assert meta["silhouette"].value == silhouettes[meta["k"].value]
