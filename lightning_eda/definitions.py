"""The one place that assembles the project's Dagster definitions."""

from dagster import AssetSelection, Definitions, define_asset_job

from lightning_eda.orchestration.assets.archive import glm_archive
from lightning_eda.orchestration.assets.clustering import cluster_map, kmeans_cluster, storm_flash_rate
from lightning_eda.orchestration.assets.density import flash_extent_density
from lightning_eda.orchestration.assets.evaluators import elbow_evaluator, silhouette_evaluator
from lightning_eda.orchestration.assets.gridded import gridded_products
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.assets.tracking import storm_tracks
from lightning_eda.orchestration.automation import build_ingest_automation_sensor
from lightning_eda.orchestration.checks import all_checks, load_checks
from lightning_eda.orchestration.constants import (
    CLUSTERING,
    DENSITY,
    EVALUATORS,
    INGEST_JOB,
    INGESTOR,
    PREPROCESSOR,
    STORM_TRACKS,
)
from lightning_eda.orchestration.executors import executor_from_env
from lightning_eda.orchestration.freshness import build_freshness
from lightning_eda.orchestration.resources import resources_from_env
from lightning_eda.orchestration.schedules import build_automation

ingest_assets = [extract, transform, load]
#: What a terminal's ingest runs with its assets: the load checks, whose blocking ones fail the run (so
#: ``lightning-eda run`` and ``backfill`` do not cluster a window over an hour with duplicated keys or damaged files).
ingest_checks = [load_checks]
clustering_assets = [
    preprocessor,
    elbow_evaluator,
    silhouette_evaluator,
    kmeans_cluster,
    cluster_map,
    storm_flash_rate,
    flash_extent_density,
    gridded_products,
    storm_tracks,
]

ingest_job = define_asset_job(
    INGEST_JOB,
    selection=AssetSelection.groups(INGESTOR),
    description="Extract, transform and load one hour of GLM granules.",
)
cluster_job = define_asset_job(
    "cluster_window",
    selection=AssetSelection.groups(PREPROCESSOR, EVALUATORS, CLUSTERING, DENSITY, STORM_TRACKS),
    description="Preprocess the window's flashes, evaluate k, cluster and map them, map their flash extent density, "
    "grid them on the GOES fixed grid and track their storms.",
)

hourly_ingest, cluster_after_ingest = build_automation(ingest_job, cluster_job)
ingest_freshness_checks, ingest_freshness_sensor = build_freshness(ingest_assets)
ingest_automation = build_ingest_automation_sensor([glm_archive, *ingest_assets])

defs = Definitions(
    assets=[glm_archive, *ingest_assets, *clustering_assets],
    asset_checks=[*all_checks, *ingest_freshness_checks],
    jobs=[ingest_job, cluster_job],
    schedules=[hourly_ingest],
    sensors=[cluster_after_ingest, ingest_freshness_sensor, ingest_automation],
    resources=resources_from_env(),
    executor=executor_from_env(),
)
