"""Typed run config for the jobs, shared by the sensor and the CLI."""

from __future__ import annotations

from datetime import datetime

from dagster import RunConfig

from lightning_eda.orchestration.assets.clustering import PreprocessorConfig
from lightning_eda.orchestration.assets.ingestor import TransformConfig


def cluster_run_config(start: datetime, *, hours: int) -> RunConfig:
    """Cluster the window of ``hours`` hours from ``start`` (the other assets keep their defaults)."""
    return RunConfig(ops={"preprocessor": PreprocessorConfig(window_start=f"{start:%Y-%m-%d %H:%M}", window_hours=hours)})


def ingest_run_config(*, redecode: bool = False) -> RunConfig:
    """Ingest an hour; ``redecode`` decodes its granules again even when they are already loaded."""
    return RunConfig(ops={"transform": TransformConfig(redecode=redecode)})
