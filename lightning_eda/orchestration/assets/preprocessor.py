"""The ``preprocessor`` group: the window's flashes, cleaned and projected to features (``flash_features``).

The clustering assets are not partitioned: each works on the window the preprocessor selected (an hour by default, a
day or any range of hours when configured), recorded in ``feature_window`` so every downstream asset reads the same one.
"""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from lightning_eda.analysis import runs
from lightning_eda.analysis.window import WindowRequest, box_from_edges
from lightning_eda.orchestration.assets.ingestor import load
from lightning_eda.orchestration.constants import ANALYSIS_POOL, PREPROCESSOR
from lightning_eda.orchestration.metadata import materialized
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.settings import parse_hour, parse_minute


class PreprocessorConfig(Config):
    window_start: str = Field(
        default="",
        description=(
            "UTC start of the window, e.g. '2018-07-02 04:00' or a partition key; empty: the latest loaded hour."
        ),
    )
    window_hours: int = Field(default=1, description="Length of the window in hours (24 for a day).")
    window_end: str = Field(
        default="",
        description="UTC end of the window to the minute, e.g. '2024-06-01 18:40' (excluded); set, it replaces "
        "window_hours, and window_start may fall inside an hour too.",
    )
    quality_flags: list[int] | None = Field(
        default=None, description="Keep only flashes with these quality flags, e.g. [0]; null keeps all."
    )
    lat_min: float | None = Field(default=None, description="Region: southern edge (degrees); set all four or none.")
    lat_max: float | None = Field(default=None, description="Region: northern edge (degrees).")
    lon_min: float | None = Field(default=None, description="Region: western edge (degrees).")
    lon_max: float | None = Field(
        default=None, description="Region: eastern edge (degrees); below lon_min crosses the antimeridian."
    )
    time_weight_km_per_min: float = Field(
        default=0.0,
        description="Space-time clustering: a minute between two flashes counts as this many km (0: space only).",
    )

    def request(self) -> WindowRequest:
        """The settings parsed once; ``ValueError`` names the one that is wrong."""
        return WindowRequest(
            start=self._start(),
            hours=self.window_hours,
            end=parse_minute(self.window_end, "window_end") if self.window_end.strip() else None,
            box=box_from_edges(self.lat_min, self.lat_max, self.lon_min, self.lon_max),
            quality_flags=None if self.quality_flags is None else tuple(self.quality_flags),
            time_weight_km_per_min=self.time_weight_km_per_min,
        )

    def _start(self):
        """On a whole hour unless an end to the minute is set."""
        if not self.window_start.strip():
            return None
        parse = parse_minute if self.window_end.strip() else parse_hour
        return parse(self.window_start, "window_start")


@asset(
    pool=ANALYSIS_POOL,
    group_name=PREPROCESSOR,
    deps=[load],
    kinds={"duckdb", "numpy"},
    description="Clean the window's flashes and project them to z-scored equal-area features (table flash_features).",
)
def preprocessor(
    context: AssetExecutionContext, config: PreprocessorConfig, archive: GlmArchiveResource, data: LightningDataResource
) -> MaterializeResult:
    return materialized(
        context, lambda: runs.preprocess_window(data.analyses, bucket=archive.bucket, request=config.request())
    )
