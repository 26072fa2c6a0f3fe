"""The ``kmeans_cluster`` group: the final k-means over the window, the storm tables, the map and the rate chart."""

from collections.abc import Callable
from typing import Any

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field, field_validator

from lightning_eda.analysis import clustering, runs
from lightning_eda.analysis.analysis_store import AnalysisStore
from lightning_eda.analysis.runs import Report
from lightning_eda.orchestration.assets.evaluators import elbow_evaluator, silhouette_evaluator
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.constants import ANALYSIS_POOL, CLUSTERING
from lightning_eda.orchestration.metadata import materialized
from lightning_eda.orchestration.resources import LightningDataResource


class KMeansConfig(Config):
    # Dagster's config schema has no int-or-"auto" type, so the field accepts any scalar and the validator below
    # turns it into an int or "auto" when the run config is read: a bad value fails the run before any step.
    k: Any = Field(
        default=clustering.AUTO_K,
        description="Number of clusters (a whole number), or 'auto': chosen by `criterion`.",
    )
    criterion: str = Field(
        default=clustering.STORMS,
        description=(
            "How k=auto chooses: 'storms' (the window's storm count, k-means started from the storms; a window with"
            " no storm falls back to 'silhouette') or 'silhouette' (best silhouette, the elbow's knee breaking ties)."
        ),
    )
    n_init: int = Field(
        default=clustering.DEFAULT_N_INIT, description="k-means restarts (best kept); unused by the storms criterion."
    )
    seed: int = Field(default=0, description="Random seed.")

    @field_validator("k")
    @classmethod
    def _k_is_a_count_or_auto(cls, value):
        return clustering.parse_k(value)

    @field_validator("criterion")
    @classmethod
    def _criterion_is_known(cls, value):
        return clustering.parse_criterion(value)


@asset(
    pool=ANALYSIS_POOL,
    group_name=CLUSTERING,
    deps=[preprocessor, elbow_evaluator, silhouette_evaluator],
    kinds={"numpy", "duckdb"},
    description="Fit the final k-means (k from config, or auto: the storm count) → flash_cluster and cluster_summary.",
)
def kmeans_cluster(
    context: AssetExecutionContext, config: KMeansConfig, data: LightningDataResource
) -> MaterializeResult:
    return materialized(
        context,
        lambda: runs.cluster_window(
            data.analyses, k=config.k, criterion=config.criterion, n_init=config.n_init, seed=config.seed
        ),
    )


def _drawing(name: str, draw: Callable[[AnalysisStore], Report], description: str):
    """An asset that draws from ``kmeans_cluster``'s tables, with nothing to configure."""

    @asset(
        name=name,
        pool=ANALYSIS_POOL,
        group_name=CLUSTERING,
        deps=[kmeans_cluster],
        kinds={"matplotlib"},
        description=description,
    )
    def drawing(context: AssetExecutionContext, data: LightningDataResource) -> MaterializeResult:
        return materialized(context, lambda: draw(data.analyses))

    return drawing


cluster_map = _drawing(
    "cluster_map",
    runs.draw_cluster_map,
    "Lightning Events Map: flashes coloured by cluster with centroids, over coastlines (PNG).",
)
storm_flash_rate = _drawing(
    "storm_flash_rate",
    runs.draw_storm_flash_rate,
    "Flash rate per minute of the largest clusters, with their lightning jumps (storm_flash_rate.png).",
)
