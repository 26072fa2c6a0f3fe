"""The ``evaluators`` group: how well each k fits the window's features (elbow and silhouette), with their plots.

The silhouette runs after the elbow so that it reuses the elbow's k-means fits (see
:class:`lightning_eda.analysis.clustering.KMeansFits`).
"""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from lightning_eda.analysis import clustering, runs
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.constants import ANALYSIS_POOL, EVALUATORS
from lightning_eda.orchestration.metadata import materialized
from lightning_eda.orchestration.resources import LightningDataResource


class ElbowConfig(Config):
    ks: list[int] = Field(
        default=[], description="Cluster counts to try; empty: about ten from half to 1.5 times the storm count."
    )
    n_init: int = Field(default=clustering.DEFAULT_N_INIT, description="k-means restarts per k (best kept).")
    seed: int = Field(default=0, description="Random seed (results are reproducible).")


class SilhouetteConfig(Config):
    ks: list[int] = Field(
        default=[], description="Cluster counts to score; empty: about ten from half to 1.5 times the storm count."
    )
    n_init: int = Field(default=clustering.DEFAULT_N_INIT, description="k-means restarts per k (best kept).")
    seed: int = Field(default=0, description="Random seed for k-means and for the sample.")
    sample_size: int = Field(
        default=clustering.DEFAULT_SILHOUETTE_SAMPLE,
        description="Above this many flashes, silhouettes are computed on a seeded random sample.",
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=EVALUATORS,
    deps=[preprocessor],
    kinds={"numpy", "duckdb"},
    description="Elbow method: k-means inertia for each k, with the knee marked (cluster_evaluation.inertia).",
)
def elbow_evaluator(
    context: AssetExecutionContext, config: ElbowConfig, data: LightningDataResource
) -> MaterializeResult:
    return materialized(
        context, lambda: runs.score_elbow(data.analyses, ks=config.ks, n_init=config.n_init, seed=config.seed)
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=EVALUATORS,
    deps=[preprocessor, elbow_evaluator],  # after the elbow, to reuse its fits
    kinds={"numpy", "duckdb"},
    description="Silhouette coefficient for each k, best k marked (cluster_evaluation.silhouette).",
)
def silhouette_evaluator(
    context: AssetExecutionContext, config: SilhouetteConfig, data: LightningDataResource
) -> MaterializeResult:
    return materialized(
        context,
        lambda: runs.score_silhouette(
            data.analyses, ks=config.ks, n_init=config.n_init, seed=config.seed, sample_size=config.sample_size
        ),
    )
