"""The one place that assembles the project's Dagster definitions."""

from dagster import Definitions, define_asset_job

from lightning_eda.assets.ingestor import extract, load, transform
from lightning_eda.partitions import hourly_partitions
from lightning_eda.resources import resources_from_env

ingest_job = define_asset_job(
    "ingest_hour", selection=[extract, transform, load], partitions_def=hourly_partitions,
    description="Extract, transform and load one hour of GLM granules.",
)

defs = Definitions(
    assets=[extract, transform, load],
    jobs=[ingest_job],
    resources=resources_from_env(),
)
