"""The ``storm_tracks`` group: storms followed from frame to frame through the window, hour by hour, with jumps."""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from lightning_eda.analysis import track_runs
from lightning_eda.analysis.track_runs import TrackSettings
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.constants import ANALYSIS_POOL, STORM_TRACKS
from lightning_eda.orchestration.metadata import materialized
from lightning_eda.orchestration.resources import LightningDataResource


class StormTracksConfig(Config):
    frame_minutes: int = Field(default=5, description="Frame length in minutes; a whole divisor of 60.")
    max_speed_ms: float = Field(default=30.0, description="Fastest storm motion (m/s) a link between frames may imply.")
    min_flashes: int = Field(default=5, description="A frame's cluster with fewer flashes is not a storm.")
    jump_criteria: str = Field(
        default="schultz2009",
        description="Lightning-jump criteria: 'schultz2009' (2σ, 10 flashes/min) or 'erdmann_poelman2023' "
        "(1.5σ, 15 flashes/min, tuned on GLM).",
    )
    sigma_level: float | None = Field(default=None, description="Override the criteria's σ level.")
    rate_threshold: float | None = Field(
        default=None, description="Override the criteria's flash-rate threshold (flashes/min)."
    )

    def settings(self) -> TrackSettings:
        """The settings parsed once; ``ValueError`` names the one that is wrong."""
        jumps = track_runs.jump_criteria(
            self.jump_criteria, sigma_level=self.sigma_level, rate_threshold=self.rate_threshold
        )
        return TrackSettings(
            frame_minutes=self.frame_minutes, max_speed_ms=self.max_speed_ms, min_flashes=self.min_flashes, jumps=jumps
        )


@asset(
    pool=ANALYSIS_POOL,
    group_name=STORM_TRACKS,
    deps=[preprocessor],
    kinds={"parquet", "numpy", "matplotlib"},
    description="Storms tracked through the window's frames, hour by hour from the state the hour before left "
    "(tables storm_track, flash_track, track_summary, track_event, track_jump; storm_tracks.png, "
    "track_flash_rate.png).",
)
def storm_tracks(
    context: AssetExecutionContext, config: StormTracksConfig, data: LightningDataResource
) -> MaterializeResult:
    return materialized(context, lambda: track_runs.track_storms(data.analyses, config.settings()))
