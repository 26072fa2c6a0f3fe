"""The analysis behind the ``storm_tracks`` asset: track the window hour by hour, keep each hour, draw, report.

Each hour of the preprocessor's window is tracked from the state the hour before left in the store (none: the
tracks start afresh) and written as that hour's folder (:class:`~lightning_eda.store.track_hours.TrackHours`), so
one run over two hours and two runs of an hour each write the same rows. No Dagster here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import pandas as pd

from lightning_eda.analysis.analysis_store import AnalysisStore
from lightning_eda.analysis.jumps import ERDMANN_POELMAN_2023, SCHULTZ_2009, JumpCriteria
from lightning_eda.analysis.runs import Markdown, Report
from lightning_eda.analysis.track_frames import projection_centre, storm_frames
from lightning_eda.analysis.tracks import TrackingOptions, TrackResult, TrackState, frame_grid, track_window
from lightning_eda.analysis.window import AnalysisWindow
from lightning_eda.store import database
from lightning_eda.store.track_hours import STATE_TABLE

#: The lightning-jump criteria by the name the asset's config takes.
JUMP_PRESETS = {"schultz2009": SCHULTZ_2009, "erdmann_poelman2023": ERDMANN_POELMAN_2023}
#: The tracks the map labels and the rate chart draws.
STRONGEST_TRACKS = 6
#: The columns of ``track_summary`` the "strongest tracks" table shows.
STRONGEST_TRACK_COLUMNS = ["track_id", "start", "end", "path_km", "mean_speed_ms", "peak_flash_rate", "n_jumps"]
#: Names the frame clusterer in the hour's settings: hours tracked by another one are not continued.
CLUSTERER = "storm_scale_kmeans"
#: ``continued_from`` of a window whose first hour started afresh (no stored state of the hour before it).
NOT_CONTINUED = "none"
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class TrackSettings:
    """The asset's config, parsed: frames, the speed gate, what a storm is, the jump criteria."""

    frame_minutes: int = 5
    max_speed_ms: float = 30.0
    min_flashes: int = 5
    jumps: JumpCriteria = SCHULTZ_2009

    def options(self, window: AnalysisWindow, granule: str = "") -> TrackingOptions:
        """The tracking options for the window; ``granule``, one of its files, names the satellite."""
        return TrackingOptions(
            projection_centre=projection_centre(window.box, window.bucket_at(window.start), granule),
            frame_minutes=self.frame_minutes,
            max_speed_ms=self.max_speed_ms,
            min_flashes=self.min_flashes,
            jumps=self.jumps,
        )


def jump_criteria(preset: str, *, sigma_level: float | None = None, rate_threshold: float | None = None):
    """The named preset, with its σ level and rate threshold overridden where given."""
    if preset not in JUMP_PRESETS:
        raise ValueError(f"jump_criteria={preset!r}: expected one of {', '.join(JUMP_PRESETS)}")
    overrides = {"sigma_level": sigma_level, "rate_threshold": rate_threshold}
    return JumpCriteria(**{**asdict(JUMP_PRESETS[preset]), **{k: v for k, v in overrides.items() if v is not None}})


def stored_settings(options: TrackingOptions) -> dict:
    """What an hour records it was tracked with (JSON): the next hour continues it only under the same."""
    return {**asdict(options), "projection_centre": list(options.projection_centre), "clusterer": CLUSTERER}


def strongest_tracks(summary: pd.DataFrame, n: int = STRONGEST_TRACKS) -> pd.DataFrame:
    """The ``n`` tracks of highest peak flash rate (ties: more flashes, then the earlier id)."""
    order = summary.sort_values(["peak_flash_rate", "n_flashes", "track_id"], ascending=[False, False, True])
    return order.head(n)


@dataclass(frozen=True)
class WindowTracks:
    """The tables of every hour of a window, joined; ``summary`` has one row per track, its latest."""

    storm_track: pd.DataFrame
    summary: pd.DataFrame
    track_rate: pd.DataFrame
    events: pd.DataFrame
    continued_from: datetime | None
    settings: dict

    @classmethod
    def of(cls, results: list[TrackResult], continued_from: datetime | None, settings: dict) -> WindowTracks:
        def joined(name: str) -> pd.DataFrame:
            return pd.concat([getattr(r, name) for r in results], ignore_index=True)

        summary = joined("track_summary").drop_duplicates("track_id", keep="last").reset_index(drop=True)
        events = joined("track_event")
        return cls(joined("storm_track"), summary, joined("track_rate"), events, continued_from, settings)

    @property
    def jumps(self) -> pd.DataFrame:
        return self.track_rate[self.track_rate["jump"]].reset_index(drop=True)


def track_hours(
    analyses: AnalysisStore, flashes: pd.DataFrame, window: AnalysisWindow, settings: TrackSettings
) -> WindowTracks:
    """Track each hour of the window from the stored state of the hour before, and replace that hour's folder."""
    options = settings.options(window, str(flashes["source_file"].iloc[0]) if len(flashes) else "")
    made_with = stored_settings(options)
    start, end = tracked_span(window, options)
    results, continued_from = [], None
    first = hour = start.replace(minute=0, second=0, microsecond=0)  # a window to the minute: its hours
    while hour < end:
        bucket = window.bucket_at(hour)  # the hour's real bucket: east/west change satellite at a handover
        state = analyses.tracks.state_before(bucket, hour, made_with)
        if state is not None and hour == first:  # later hours continue this run's own
            continued_from = hour - _HOUR
        before = TrackState.empty() if state is None else TrackState.from_frame(state)
        frames = pd.Timestamp(max(hour, start)), pd.Timestamp(min(hour + _HOUR, end))
        result = track_window(flashes, *frames, before, storm_frames, options)
        tables = {
            "storm_track": result.storm_track,
            "flash_track": result.flash_track,
            "track_event": result.track_event,
            "track_summary": result.track_summary,
            "track_rate": result.track_rate,
            STATE_TABLE: result.state_after.to_frame(),
        }
        analyses.tracks.write_hour(bucket, hour, tables, made_with)
        results.append(result)
        hour += _HOUR
    return WindowTracks.of(results, continued_from, made_with)


def tracked_span(window: AnalysisWindow, options: TrackingOptions) -> tuple[datetime, datetime]:
    """The window's whole frames on the frame grid (10 minutes by default): a window to the minute, such as
    ``--recent 30min`` at 18:47 (18:17-18:47), is tracked over 18:20-18:40; its partial frames at either end would
    read as low flash rates. ``ValueError`` when it holds no whole step of the grid."""
    grid = frame_grid(options)
    start, end = pd.Timestamp(window.start).ceil(grid), pd.Timestamp(window.end).floor(grid)
    if not end > start:
        raise ValueError(
            f"storm tracks need whole {grid.total_seconds() / 60:.0f}-minute frames on the clock and the window "
            f"{window.text} holds none: widen it"
        )
    return start.to_pydatetime(), end.to_pydatetime()


def track_storms(analyses: AnalysisStore, settings: TrackSettings) -> Report:
    """The ``storm_tracks`` asset: the window's tracks into the store, the track map and the rate chart."""
    from lightning_eda.plots.tracks import storm_tracks_map, track_flash_rate

    with analyses.connect() as con:
        window = analyses.read_window(con)
        flashes = database.read_features(con)
    tracks = track_hours(analyses, flashes, window, settings)
    strongest = strongest_tracks(tracks.summary)
    ids = [int(t) for t in strongest["track_id"]]
    jumps = tracks.jumps
    png = storm_tracks_map(tracks.storm_track, tracks.summary, jumps, ids, title=window.title, extent=window.extent)
    track_map = analyses.save_plot(png, "storm_tracks", "Storm tracks")
    png = track_flash_rate(tracks.track_rate, tracks.summary, ids, title=window.title)
    rate_chart = analyses.save_plot(png, "track_flash_rate", "Flash rate of the strongest tracks")
    events = tracks.events["event"].value_counts()
    continued = NOT_CONTINUED if tracks.continued_from is None else f"{tracks.continued_from:%Y-%m-%d %H:00}"
    metadata = {
        "tracks": len(tracks.summary),
        "track_frames": len(tracks.storm_track),
        "open_at_end": int(tracks.summary["is_open"].sum()),
        "splits": int(events.get("split", 0)),
        "merges": int(events.get("merge", 0)),
        "lightning_jumps": len(jumps),
        "continued_from": continued,
        "settings": tracks.settings,
        "strongest_tracks": Markdown(strongest[STRONGEST_TRACK_COLUMNS].to_markdown(index=False)),
        "map": track_map,
        "flash_rate": rate_chart,
    }
    log = (
        f"{len(tracks.summary)} tracks over {window.text} ({metadata['splits']} splits, {metadata['merges']} merges, "
        f"{len(jumps)} lightning jumps); continued from {continued}; plots at {track_map.path}, {rate_chart.path}"
    )
    return Report(metadata, log)
