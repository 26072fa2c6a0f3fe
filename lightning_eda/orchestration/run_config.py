"""Typed run config for the jobs, shared by the sensor and the CLI."""

from __future__ import annotations

from datetime import datetime

from dagster import RunConfig

from lightning_eda.orchestration.assets.clustering import PreprocessorConfig


def cluster_run_config(start: datetime, *, hours: int) -> RunConfig:
    """Cluster the window of ``hours`` hours from ``start`` (the other assets keep their defaults)."""
    return RunConfig(ops={"preprocessor": PreprocessorConfig(window_start=f"{start:%Y-%m-%d %H:%M}", window_hours=hours)})
