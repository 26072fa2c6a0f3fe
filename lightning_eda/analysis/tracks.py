"""Storms tracked through time: frames, storm clusters per frame, links between frames, and lightning jumps per track.

A window of flashes (an hour, or several) is cut into frames of ``frame_minutes`` on a fixed clock grid. Each frame's
flashes are clustered into storms by a pluggable ``cluster_frame`` (seeded with where the open tracks are expected
to be), and the storms are linked to the open tracks by the rule in ``docs/tracking.md``: a storm may continue a
track only if the track could have reached it at ``max_speed_ms`` (plus ``slack_km`` for the storm's own size); among
those, the nearest to the track's predicted position wins; a second storm near one track is a split (the larger
child keeps the id, the other gets a new id whose parent is the old one); a track left without a storm next to one
that took another track's storm is a merge (the larger parent's id continues, the other ends ``merged_into`` it).

Everything a later window needs (the open tracks, their motion, their latest 2-minute flash rates) is in a
:class:`TrackState`, which round-trips through a table, so that tracking 04:00-06:00 in one call gives exactly the
same ids and rows as 04:00-05:00 and then 05:00-06:00 with the state handed over. Track ids are made from the frame
a track starts in, so they never depend on what was tracked before. No Dagster here.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lightning_eda.analysis.features import laea_forward, laea_inverse
from lightning_eda.analysis.jumps import (
    JUMP_COLUMNS,
    SCHULTZ_2009,
    JumpCriteria,
    sigma_jump_columns,
)
from lightning_eda.analysis.storms import PERIOD_MINUTES
from lightning_eda.analysis.track_frames import FrameStorms, link_storms
from lightning_eda.analysis.track_state import TIME_DTYPE, OpenTrack, TrackState, nullable_ids, times

logger = logging.getLogger(__name__)

#: ``cluster_frame(x_km, y_km, expected_centres_km)``: one storm label per flash (-1: in no storm). The expected
#: centres, shape (m, 2) or None when no track is open, are the open tracks' predicted positions, to seed k-means.
FrameClusterer = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]

#: Ids are ``YYYYMMDDHHMM`` of the frame a track starts in, times this, plus its rank among that frame's new tracks.
ID_FRAME_FACTOR = 10_000

STORM_TRACK_COLUMNS = [
    "track_id",
    "frame_start",
    "frame_end",
    "lat",
    "lon",
    "x_km",
    "y_km",
    "n_flashes",
    "flash_rate",
    "extent_km",
    "total_energy",
    "mean_area",
    "parent_id",
    "event",
]
FLASH_TRACK_COLUMNS = ["source_file", "flash_id", "time_start", "frame_start", "track_id"]
TRACK_EVENT_COLUMNS = ["frame_start", "event", "track_id", "other_track_id"]
TRACK_SUMMARY_COLUMNS = [
    "track_id",
    "parent_id",
    "merged_into",
    "start",
    "end",
    "duration_min",
    "n_frames",
    "n_flashes",
    "path_km",
    "mean_speed_ms",
    "peak_flash_rate",
    "n_jumps",
    "first_jump",
    "is_open",
]
TRACK_RATE_COLUMNS = ["track_id", *JUMP_COLUMNS]


@dataclass(frozen=True)
class TrackingOptions:
    """How flashes become tracks.

    Attributes
    ----------
    projection_centre : (lat, lon) in degrees
        Centre of the Lambert azimuthal equal-area plane positions are measured in (km). It must stay the same for
        as long as tracks are continued (a state made under another centre is refused): take the region's centre.
    frame_minutes : int, default 5
        Frame length; must divide 60, so that frames tile every hour the same way.
    max_speed_ms : float, default 30.0
        Fastest storm motion (m/s) a link may imply.
    slack_km : float, default 15.0
        Added to ``max_speed_ms × Δt``: a storm's centroid wanders within its own size from frame to frame.
    min_flashes : int, default 5
        A frame's cluster with fewer flashes is not a storm: its flashes get no track.
    max_missed_frames : int, default 1
        A track with no storm for more frames than this ends; until then it coasts at its last velocity.
    jumps : JumpCriteria, default SCHULTZ_2009
        Lightning-jump criteria (:data:`lightning_eda.analysis.jumps.ERDMANN_POELMAN_2023` is the GLM-tuned
        alternative).
    """

    projection_centre: tuple[float, float]
    frame_minutes: int = 5
    max_speed_ms: float = 30.0
    slack_km: float = 15.0
    min_flashes: int = 5
    max_missed_frames: int = 1
    jumps: JumpCriteria = SCHULTZ_2009

    def __post_init__(self) -> None:
        lat0, lon0 = self.projection_centre
        if not (-90.0 <= lat0 <= 90.0 and -180.0 <= lon0 <= 180.0):
            raise ValueError(f"TrackingOptions: projection_centre={self.projection_centre!r} is not a (lat, lon)")
        if int(self.frame_minutes) != self.frame_minutes or self.frame_minutes < 1 or 60 % self.frame_minutes:
            raise ValueError(f"TrackingOptions: frame_minutes={self.frame_minutes!r} must be a whole divisor of 60")
        for name in ("max_speed_ms", "slack_km"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"TrackingOptions: {name}={value!r} must be a finite number >= 0")
        if int(self.min_flashes) != self.min_flashes or self.min_flashes < 1:
            raise ValueError(f"TrackingOptions: min_flashes={self.min_flashes!r} must be an integer >= 1")
        if int(self.max_missed_frames) != self.max_missed_frames or self.max_missed_frames < 0:
            raise ValueError(f"TrackingOptions: max_missed_frames={self.max_missed_frames!r} must be an integer >= 0")

    @property
    def frame(self) -> pd.Timedelta:
        return pd.Timedelta(minutes=self.frame_minutes)


@dataclass(frozen=True)
class TrackResult:
    """What :func:`track_window` found in one window.

    Attributes
    ----------
    storm_track : DataFrame
        :data:`STORM_TRACK_COLUMNS`, one row per track per frame it had a storm in: centroid (lat, lon and km in the
        plane), flashes, flash rate (per minute of the frame), extent (diagonal of the box holding the middle 90 %
        of its flashes), total optical energy (J), mean flash area, ``parent_id`` (the track it split from) and
        ``event``: ``start``, ``continue``, ``split`` (first frame of a split-off track) or ``merge`` (a frame in
        which other tracks ended in this one).
    flash_track : DataFrame
        :data:`FLASH_TRACK_COLUMNS`, every flash of the window with its frame and track (``<NA>``: in no storm).
    track_event : DataFrame
        :data:`TRACK_EVENT_COLUMNS`: ``split`` (``track_id`` split from ``other_track_id``) and ``merge``
        (``track_id`` ended in ``other_track_id``).
    track_summary : DataFrame
        :data:`TRACK_SUMMARY_COLUMNS`, one row per track open at some time in the window, over its whole life up to
        the window's end (earlier windows included, through the state).
    track_rate : DataFrame
        :data:`TRACK_RATE_COLUMNS`, each track's 2-minute periods judged by the jump algorithm, in time order.
    state_after : TrackState
        The tracks open at the window's end.
    """

    storm_track: pd.DataFrame
    flash_track: pd.DataFrame
    track_event: pd.DataFrame
    track_summary: pd.DataFrame
    track_rate: pd.DataFrame
    state_after: TrackState

    @property
    def jumps(self) -> pd.DataFrame:
        """One row per lightning jump: the track and the jump's first flagged period."""
        return self.track_rate[self.track_rate["jump"]].reset_index(drop=True)


def track_window(
    flashes: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    state_before: TrackState,
    cluster_frame: FrameClusterer,
    options: TrackingOptions,
) -> TrackResult:
    """Track the storms of the flashes starting in ``[start, end)``, continuing the tracks of ``state_before``.

    Parameters
    ----------
    flashes : DataFrame
        Flash rows as the store has them: at least ``source_file``, ``flash_id``, ``time_start``, ``lat``, ``lon``,
        ``energy``, ``area``. Rows starting outside the window are ignored; row order does not matter (flashes are
        taken in ``time_start, source_file, flash_id`` order).
    start, end : Timestamp
        The window; both on the frame grid and on even minutes (2-minute jump periods never straddle windows).
    state_before : TrackState
        The tracks the previous window left open (:meth:`TrackState.empty` for the first).
    cluster_frame : FrameClusterer
        Storms of one frame's flashes.
    options : TrackingOptions

    Returns
    -------
    TrackResult
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    _check_window(start, end, options)
    missing = [
        c for c in ("source_file", "flash_id", "time_start", "lat", "lon", "energy", "area") if c not in flashes.columns
    ]
    if missing:
        raise ValueError(f"track_window: flashes lack columns {missing}")
    inside = (flashes["time_start"] >= start) & (flashes["time_start"] < end)
    window = flashes.loc[inside].sort_values(["time_start", "source_file", "flash_id"], kind="stable")
    window = window.reset_index(drop=True)
    x, y = laea_forward(window["lat"].to_numpy(float), window["lon"].to_numpy(float), *options.projection_centre)
    frame_of = ((window["time_start"] - start) // options.frame).to_numpy(dtype=np.int64)
    frame_starts = pd.date_range(start, end, freq=options.frame, inclusive="left")
    bounds = np.searchsorted(frame_of, np.arange(len(frame_starts) + 1))

    tracker = OpenTracker(state_before._tracks(options.projection_centre), options)
    flash_track = np.full(len(window), -1, dtype=np.int64)
    energy = window["energy"].to_numpy(float)
    area = window["area"].to_numpy(float)
    for f, frame_start in enumerate(frame_starts):
        rows = slice(bounds[f], bounds[f + 1])
        flash_track[rows] = tracker.step(frame_start, x[rows], y[rows], energy[rows], area[rows], cluster_frame)

    storm_track = _storm_track_table(tracker.rows, options.projection_centre)
    flash_table = pd.DataFrame(
        {
            "source_file": window["source_file"],
            "flash_id": window["flash_id"],
            "time_start": window["time_start"].astype(TIME_DTYPE),
            "frame_start": pd.Series(frame_starts[frame_of] if len(window) else [], dtype=TIME_DTYPE),
            "track_id": nullable_ids(flash_track),
        }
    )[FLASH_TRACK_COLUMNS]
    track_rate = _judge_jumps(tracker, storm_track, flash_table, options)
    events = pd.DataFrame(tracker.events, columns=TRACK_EVENT_COLUMNS)
    events = events.astype({"frame_start": TIME_DTYPE, "track_id": "int64", "other_track_id": "int64"})
    summary = _summary_table([*tracker.closed, *tracker.open], {t.track_id for t in tracker.open})
    logger.info(
        "track_window %s..%s: %d flashes, %d track-frames, %d tracks open at the end, %d jumps",
        start,
        end,
        len(window),
        len(storm_track),
        len(tracker.open),
        int(track_rate["jump"].sum()),
    )
    return TrackResult(
        storm_track=storm_track,
        flash_track=flash_table,
        track_event=events,
        track_summary=summary,
        track_rate=track_rate,
        state_after=TrackState._of(tracker.open, options.projection_centre),
    )


def frame_grid(options: TrackingOptions) -> pd.Timedelta:
    """The step both frames and jump periods fall on: a tracked span starts and ends on it."""
    return pd.Timedelta(minutes=int(np.lcm(options.frame_minutes, PERIOD_MINUTES)))


def _check_window(start: pd.Timestamp, end: pd.Timestamp, options: TrackingOptions) -> None:
    if not end > start:
        raise ValueError(f"track_window: end={end} must be after start={start}")
    grid = frame_grid(options)
    for name, at in (("start", start), ("end", end)):
        if at.floor(grid) != at:
            raise ValueError(f"track_window: {name}={at} is not on the {grid} grid of frames and jump periods")


class OpenTracker:
    """The frame-by-frame loop: open tracks, links, and the rows each frame adds."""

    def __init__(self, tracks: list[OpenTrack], options: TrackingOptions):
        self.open = tracks
        self.closed: list[OpenTrack] = []
        self.options = options
        self.rows: list[dict] = []
        self.events: list[tuple] = []

    def step(self, frame_start, x, y, energy, area, cluster_frame: FrameClusterer) -> np.ndarray:
        """Cluster and link one frame; returns each flash's track id (-1: none)."""
        options = self.options
        frame_end = frame_start + options.frame
        expected = np.array([t.predicted(frame_start) for t in self.open], dtype=np.float64).reshape(-1, 2)
        labels = np.full(len(x), -1, dtype=np.int64)
        if len(x):
            labels = np.asarray(cluster_frame(x, y, expected if len(expected) else None))
            if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(
                    f"cluster_frame returned {labels.dtype} labels of shape {labels.shape}, "
                    f"expected integers of shape ({len(x)},)"
                )
        storms = FrameStorms.of(x, y, energy, area, labels, options.min_flashes)
        sizes, centres = storms.n_flashes, storms.centres

        last = np.array([(t.x_km, t.y_km) for t in self.open], dtype=np.float64).reshape(-1, 2)
        seconds = np.array([(frame_start - t.last_seen).total_seconds() for t in self.open], dtype=np.float64)
        gate = options.max_speed_ms * seconds / 1000.0 + options.slack_km
        links = link_storms(last, expected, gate, np.array([t.last_n_flashes for t in self.open]), centres, sizes)

        new = links.track_of_storm < 0
        if new.sum() > ID_FRAME_FACTOR:
            raise ValueError(f"{int(new.sum())} new tracks in the frame at {frame_start}: ids allow {ID_FRAME_FACTOR}")
        open_ids = np.array([t.track_id for t in self.open] + [-1], dtype=np.int64)  # [-1]: a new storm's -1
        first_id = int(frame_start.strftime("%Y%m%d%H%M")) * ID_FRAME_FACTOR
        track_ids = np.where(new, first_id + np.cumsum(new) - 1, open_ids[links.track_of_storm])

        continued: list[OpenTrack] = []
        for c in range(len(sizes)):
            carried = links.track_of_storm[c]
            rate = sizes[c] / options.frame_minutes
            if carried >= 0:
                track = self.open[carried].continued(frame_start, frame_end, centres[c], int(sizes[c]), rate)
                event = "merge" if links.merged[c] else "continue"
            else:
                parent = links.parent_of_storm[c]
                velocity = (self.open[parent].vx_ms, self.open[parent].vy_ms) if parent >= 0 else (0.0, 0.0)
                track = OpenTrack(
                    track_id=int(track_ids[c]),
                    parent_id=self.open[parent].track_id if parent >= 0 else -1,
                    start=frame_start,
                    last_seen=frame_start,
                    end=frame_end,
                    x_km=centres[c, 0],
                    y_km=centres[c, 1],
                    vx_ms=velocity[0],
                    vy_ms=velocity[1],
                    n_flashes=int(sizes[c]),
                    last_n_flashes=int(sizes[c]),
                    peak_flash_rate=rate,
                )
                event = "split" if parent >= 0 else "start"
                if parent >= 0:
                    self.events.append((frame_start, "split", track.track_id, track.parent_id))
            continued.append(track)
            self.rows.append(
                {
                    "track_id": track.track_id,
                    "frame_start": frame_start,
                    "frame_end": frame_end,
                    "x_km": centres[c, 0],
                    "y_km": centres[c, 1],
                    "n_flashes": int(sizes[c]),
                    "flash_rate": rate,
                    "extent_km": storms.extent_km[c],
                    "total_energy": storms.total_energy[c],
                    "mean_area": storms.mean_area[c],
                    "parent_id": track.parent_id,
                    "event": event,
                }
            )

        for t, track in enumerate(self.open):
            into = links.merged_into[t]
            if into >= 0:
                track.merged_into = int(track_ids[into])
                self.events.append((frame_start, "merge", track.track_id, track.merged_into))
                self.closed.append(track)
            elif t not in links.track_of_storm:
                track.missed += 1
                (self.closed if track.missed > options.max_missed_frames else continued).append(track)
        self.open = sorted(continued, key=lambda t: t.track_id)
        return np.append(track_ids, -1)[storms.storm_of]  # storm -1 (none) picks the appended -1


def _storm_track_table(rows: list[dict], centre: tuple[float, float]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=[c for c in STORM_TRACK_COLUMNS if c not in ("lat", "lon")])
    lat, lon = laea_inverse(table["x_km"].to_numpy(float), table["y_km"].to_numpy(float), *centre)
    table = table.assign(lat=lat, lon=lon, parent_id=nullable_ids(table["parent_id"].to_numpy(np.int64)))
    table = table.astype(
        {
            "frame_start": TIME_DTYPE,
            "frame_end": TIME_DTYPE,
            "track_id": "int64",
            "n_flashes": "int64",
            "flash_rate": "float64",
            "extent_km": "float64",
            "total_energy": "float64",
            "mean_area": "float64",
            "x_km": "float64",
            "y_km": "float64",
        }
    )
    return table[STORM_TRACK_COLUMNS]


def _judge_jumps(
    tracker: OpenTracker, storm_track: pd.DataFrame, flash_track: pd.DataFrame, options: TrackingOptions
) -> pd.DataFrame:
    """The jump algorithm on each track's 2-minute periods lying wholly in frames it had a storm in."""
    minutes = pd.DataFrame(
        {
            "track_id": np.repeat(storm_track["track_id"].to_numpy(), options.frame_minutes),
            "minute": (
                np.repeat(storm_track["frame_start"].to_numpy("datetime64[ns]"), options.frame_minutes)
                + np.tile(np.arange(options.frame_minutes) * np.timedelta64(60, "s"), len(storm_track))
            ),
        }
    )
    tracked = flash_track.dropna(subset=["track_id"])
    counts = (
        pd.DataFrame(
            {
                "track_id": tracked["track_id"].astype("int64"),
                "minute": tracked["time_start"].dt.floor("min").astype("datetime64[ns]"),
            }
        )
        .groupby(["track_id", "minute"])
        .size()
        .rename("flashes")
        .reset_index()
    )
    minutes = minutes.merge(counts, on=["track_id", "minute"], how="left").fillna({"flashes": 0})
    minutes["period_start"] = minutes["minute"].dt.floor(f"{PERIOD_MINUTES}min")
    periods = (
        minutes.groupby(["track_id", "period_start"], sort=True)
        .agg(n_minutes=("minute", "size"), flashes=("flashes", "sum"))
        .reset_index()
    )
    periods = periods[periods["n_minutes"] == PERIOD_MINUTES]
    by_id = {t.track_id: t for t in [*tracker.open, *tracker.closed]}
    ids = periods["track_id"].to_numpy(np.int64)
    starts = periods["period_start"].to_numpy("datetime64[ns]")
    rates = periods["flashes"].to_numpy(float) / PERIOD_MINUTES
    bounds = [0, *(np.flatnonzero(np.diff(ids)) + 1), len(ids)] if len(ids) else []
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        track = by_id[int(ids[lo])]
        columns, track.jump_history = sigma_jump_columns(starts[lo:hi], rates[lo:hi], options.jumps, track.jump_history)
        found = columns["period_start"][columns["jump"]]
        track.n_jumps += len(found)
        if track.first_jump is None and len(found):
            track.first_jump = pd.Timestamp(found[0])
        parts.append({"track_id": ids[lo:hi], **columns})
    judged = pd.DataFrame({c: np.concatenate([p[c] for p in parts]) if parts else [] for c in TRACK_RATE_COLUMNS})
    judged = judged.astype(
        {
            "track_id": "int64",
            "period_start": TIME_DTYPE,
            "flash_rate": float,
            "dfrdt": float,
            "threshold": float,
            "flagged": bool,
            "jump": bool,
        }
    )
    return judged.sort_values(["period_start", "track_id"], kind="stable", ignore_index=True)


def _summary_table(tracks: list[OpenTrack], open_ids: set[int]) -> pd.DataFrame:
    rows = []
    for t in sorted(tracks, key=lambda t: t.track_id):
        moving_s = (t.last_seen - t.start).total_seconds()
        rows.append(
            {
                "track_id": t.track_id,
                "parent_id": t.parent_id,
                "merged_into": t.merged_into,
                "start": t.start,
                "end": t.end,
                "duration_min": (t.end - t.start).total_seconds() / 60.0,
                "n_frames": t.n_frames,
                "n_flashes": t.n_flashes,
                "path_km": t.path_km,
                "mean_speed_ms": t.path_km * 1000.0 / moving_s if moving_s > 0 else np.nan,
                "peak_flash_rate": t.peak_flash_rate,
                "n_jumps": t.n_jumps,
                "first_jump": t.first_jump,
                "is_open": t.track_id in open_ids,
            }
        )
    table = pd.DataFrame(rows, columns=TRACK_SUMMARY_COLUMNS)
    return table.assign(
        track_id=table["track_id"].astype("int64"),
        parent_id=nullable_ids(table["parent_id"].to_numpy(np.int64)),
        merged_into=nullable_ids(table["merged_into"].to_numpy(np.int64)),
        start=times(table["start"].tolist()),
        end=times(table["end"].tolist()),
        first_jump=times(table["first_jump"].tolist()),
        is_open=table["is_open"].astype(bool),
    )
