"""The ``kmeans_cluster`` group: the final k-means over the window, the storm tables, the map and the rate chart."""

from typing import Any

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field, field_validator

from lightning_eda.analysis import clustering, runs
from lightning_eda.orchestration.assets.evaluators import elbow_evaluator, silhouette_evaluator
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.constants import ANALYSIS_POOL, CLUSTERING
from lightning_eda.orchestration.metadata import failing_with_message, reported
from lightning_eda.orchestration.resources import LightningDataResource


class KMeansConfig(Config):
    # Dagster's config schema has no int-or-"auto" type, so the field accepts any scalar and the validator below
    # turns it into an int or "auto" when the run config is read: a bad value fails the run before any step.
    k: Any = Field(
        default=clustering.AUTO_K,
        description="Number of clusters (a whole number), or 'auto': best silhouette, the elbow's knee breaking ties.",
    )
    n_init: int = Field(default=10, description="k-means restarts (best kept).")
    seed: int = Field(default=0, description="Random seed.")

    @field_validator("k")
    @classmethod
    def _k_is_a_count_or_auto(cls, value):
        return clustering.parse_k(value)


@asset(
    pool=ANALYSIS_POOL,
    group_name=CLUSTERING,
    deps=[preprocessor, elbow_evaluator, silhouette_evaluator],
    kinds={"numpy", "duckdb"},
    description="Fit the final k-means (k from config or auto) → flash_cluster and cluster_summary.",
)
def kmeans_cluster(context: AssetExecutionContext, config: KMeansConfig, data: LightningDataResource) -> MaterializeResult:
    with failing_with_message():
        report = runs.cluster_window(data.analyses, k=config.k, n_init=config.n_init, seed=config.seed)
    return reported(context, report)


@asset(
    pool=ANALYSIS_POOL,
    group_name=CLUSTERING,
    deps=[kmeans_cluster],
    kinds={"matplotlib"},
    description="Lightning Events Map: flashes coloured by cluster with centroids, over coastlines (PNG).",
)
def cluster_map(context: AssetExecutionContext, data: LightningDataResource) -> MaterializeResult:
    with failing_with_message():
        report = runs.draw_cluster_map(data.analyses)
    return reported(context, report)


@asset(
    pool=ANALYSIS_POOL,
    group_name=CLUSTERING,
    deps=[kmeans_cluster],
    kinds={"matplotlib"},
    description="Flash rate per minute of the largest clusters, with their lightning jumps (storm_flash_rate.png).",
)
def storm_flash_rate(context: AssetExecutionContext, data: LightningDataResource) -> MaterializeResult:
    with failing_with_message():
        report = runs.draw_storm_flash_rate(data.analyses)
    return reported(context, report)
