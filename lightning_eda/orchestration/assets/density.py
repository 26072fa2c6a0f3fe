"""The ``density`` group: flash extent density over the preprocessor's window, on its equal-area grid."""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from lightning_eda.analysis import runs
from lightning_eda.analysis.fed import DEFAULT_CELL_KM
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.constants import ANALYSIS_POOL, DENSITY
from lightning_eda.orchestration.metadata import materialized
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource


class DensityConfig(Config):
    cell_km: float = Field(
        default=DEFAULT_CELL_KM, description="Side of the equal-area grid's square cells, in km (10 km: 100 km² cells)."
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=DENSITY,
    deps=[preprocessor],
    kinds={"parquet", "matplotlib"},
    description="Flash extent density over the preprocessor's window: flashes touching each equal-area cell "
    "(table flash_extent_density, fed_map.png).",
)
def flash_extent_density(
    context: AssetExecutionContext, config: DensityConfig, archive: GlmArchiveResource, data: LightningDataResource
) -> MaterializeResult:
    return materialized(
        context, lambda: runs.map_flash_extent_density(data.analyses, product=archive.product, cell_km=config.cell_km)
    )
