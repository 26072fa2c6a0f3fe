"""Typed run config for the jobs, shared by the sensor and the CLI."""

from __future__ import annotations

from dagster import RunConfig

from lightning_eda.orchestration.assets.ingestor import TransformConfig
from lightning_eda.orchestration.assets.preprocessor import PreprocessorConfig


def cluster_run_config(start_key: str, *, hours: int, end: str = "") -> RunConfig:
    """Cluster the window of ``hours`` hours from the hour of partition key ``start_key`` (others keep defaults).

    The window's start travels as the partition key, the one form the schedule, the sensor and the CLI all hold;
    ``end`` (``YYYY-MM-DDTHH:MM``) instead ends it to the minute, and ``start_key`` may then be a minute too.
    """
    return RunConfig(
        ops={"preprocessor": PreprocessorConfig(window_start=start_key, window_hours=hours, window_end=end)}
    )


def ingest_run_config(*, redecode: bool = False) -> RunConfig:
    """Ingest an hour; ``redecode`` decodes its granules again even when they are already loaded."""
    return RunConfig(ops={"transform": TransformConfig(redecode=redecode)})
