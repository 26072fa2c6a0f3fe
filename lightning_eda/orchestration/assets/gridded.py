"""The ``density`` group's gridded products: FED, MFA, TOE, AFA and FCD on the GOES ABI fixed grid, as CF netCDF."""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from lightning_eda.analysis import grid_runs
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.constants import ANALYSIS_POOL, DENSITY
from lightning_eda.orchestration.metadata import materialized
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource


class GriddedConfig(Config):
    resolution_km: float = Field(
        default=grid_runs.DEFAULT_RESOLUTION_KM,
        description="Fixed-grid cell size at nadir, km: 2 (ABI's 56 µrad grid), 4, 8 or 10.",
    )
    accumulation_minutes: int = Field(
        default=grid_runs.DEFAULT_ACCUMULATION_MINUTES,
        description="Length of the accumulations written beside the 1-minute frames; must divide an hour.",
    )
    full_disk: bool = Field(
        default=False, description="Grid the whole ABI full disk instead of the window's region or lightning."
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=DENSITY,
    deps=[preprocessor],
    kinds={"netcdf", "parquet", "matplotlib"},
    description="Flash extent density, minimum and average flash area, total optical energy and flash centroid "
    "density on the GOES ABI fixed grid over the preprocessor's window: 1-minute frames and N-minute "
    "accumulations as CF netCDF under grids/, the accumulations' cells as table grid_cell, gridded_fed_map.png.",
)
def gridded_products(
    context: AssetExecutionContext, config: GriddedConfig, archive: GlmArchiveResource, data: LightningDataResource
) -> MaterializeResult:
    return materialized(
        context,
        lambda: grid_runs.gridded_products(
            data.analyses,
            product=archive.product,
            resolution_km=config.resolution_km,
            accumulation_minutes=config.accumulation_minutes,
            full_disk=config.full_disk,
        ),
    )
