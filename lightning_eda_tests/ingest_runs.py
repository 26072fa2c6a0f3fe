"""Runs of the ingest assets as the tests make them: in process, on the session's local S3 server."""

from __future__ import annotations

from pathlib import Path

from dagster import materialize

from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.resources import build_resources
from lightning_eda.testing.real_minute import BUCKET, KEY_2018


def resources_for(data_dir: Path, bucket: str = BUCKET, **archive) -> dict:
    """The pipeline's resources over ``data_dir`` reading ``bucket``; ``archive`` overrides the S3 settings."""
    return build_resources(data_dir, bucket=bucket, **archive)


def run_hour(data_dir: Path, key: str = KEY_2018, bucket: str = BUCKET):
    """Extract, transform and load one hour; raises on a failed step."""
    return materialize([extract, transform, load], partition_key=key, resources=resources_for(data_dir, bucket))
