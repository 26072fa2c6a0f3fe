"""Fixtures that serve real hours on the local S3 server and run the pipeline over them, one per test module that
shares it: the CLI's hour, the ingestor's hour, a scheduled ingest and a whole clustering run."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, materialize
from ingest_runs import resources_for

from lightning_eda.definitions import ingest_assets
from lightning_eda.orchestration.assets.clustering import cluster_map, kmeans_cluster, storm_flash_rate
from lightning_eda.orchestration.assets.evaluators import elbow_evaluator, silhouette_evaluator
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.checks import all_checks
from lightning_eda.testing.real_minute import BUCKET, KEY_2018, serve_2018_minute

CLUSTER_ASSETS = [preprocessor, elbow_evaluator, silhouette_evaluator, kmeans_cluster, cluster_map, storm_flash_rate]


@pytest.fixture(scope="module")
def served_hour(s3, real_granules):
    """Every real GOES-16 granule of 2018-07-02 under its real key, for ``lightning-eda run`` in a subprocess."""
    for path in real_granules:
        if path.name.startswith("OR_GLM-L2-LCFA_G16_s2018183"):
            s3.put_granule(BUCKET, path)
    return s3


@pytest.fixture(scope="module")
def hour_2018(s3, real_granules):
    """The busy 2018 minute, served under its real key, beside a key that is not a granule."""
    serve_2018_minute(s3, real_granules)
    s3.put(BUCKET, "GLM-L2-LCFA/2018/183/04/index.html", b"<html>not a granule</html>")
    return s3


@pytest.fixture(scope="module")
def scheduled_hour(s3, real_granules, tmp_path_factory):
    """The real 2018 hour ingested as a schedule tick would ingest it, in a persistent instance."""
    serve_2018_minute(s3, real_granules)
    data_dir = tmp_path_factory.mktemp("data")
    instance = DagsterInstance.ephemeral()
    tags = {"dagster/schedule_name": "hourly_ingest"}
    result = materialize(
        ingest_assets, partition_key=KEY_2018, resources=resources_for(data_dir), instance=instance, tags=tags
    )
    assert result.success
    yield data_dir, instance, result
    instance.dispose()


@pytest.fixture(scope="module")
def pipeline(s3, real_granules, tmp_path_factory):
    """One ingested hour and one clustering run over it, shared by the clustering asset tests."""
    serve_2018_minute(s3, real_granules)
    data_dir = tmp_path_factory.mktemp("data")
    resources = resources_for(data_dir)
    ingest = materialize(
        [extract, transform, load, *all_checks],
        partition_key=KEY_2018,
        resources=resources,
        selection=[extract, transform, load],
    )
    assert ingest.success
    run_config = {
        "ops": {
            "preprocessor": {"config": {"window_start": "2018-07-02 04:00", "window_hours": 1}},
            "elbow_evaluator": {"config": {"ks": list(range(1, 9)), "n_init": 3, "seed": 1}},
            "silhouette_evaluator": {"config": {"ks": list(range(2, 9)), "n_init": 3, "seed": 1, "sample_size": 500}},
            "kmeans_cluster": {"config": {"k": "auto", "n_init": 3, "seed": 1}},
        }
    }
    result = materialize(CLUSTER_ASSETS + all_checks, resources=resources, run_config=run_config)
    assert result.success
    return data_dir, result, ingest
