"""What a tracking window hands to the next: the open tracks, as objects while a window runs and as a table between
windows (the store keeps it keyed by the hour it ends). No Dagster here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from lightning_eda.analysis.features import laea_forward, laea_inverse
from lightning_eda.analysis.jumps import JumpHistory

#: Every time column, as the store keeps them.
TIME_DTYPE = "datetime64[us]"

STATE_COLUMNS = [
    "track_id",
    "parent_id",
    "start",
    "last_seen",
    "end",
    "x_km",
    "y_km",
    "lat",
    "lon",
    "vx_ms",
    "vy_ms",
    "missed",
    "n_frames",
    "n_flashes",
    "last_n_flashes",
    "path_km",
    "peak_flash_rate",
    "n_jumps",
    "first_jump",
    "recent_rates",
    "last_flagged",
]


@dataclass
class OpenTrack:
    """One open track while a window is processed (positions in the options' plane, km; velocity in m/s)."""

    track_id: int
    parent_id: int  # -1: none
    start: pd.Timestamp  # start of its first frame
    last_seen: pd.Timestamp  # start of the last frame it had a storm in
    end: pd.Timestamp  # end of that frame
    x_km: float
    y_km: float
    vx_ms: float = 0.0
    vy_ms: float = 0.0
    missed: int = 0
    n_frames: int = 1
    n_flashes: int = 0
    last_n_flashes: int = 0
    path_km: float = 0.0
    peak_flash_rate: float = 0.0
    n_jumps: int = 0
    first_jump: pd.Timestamp | None = None
    jump_history: JumpHistory = field(default_factory=JumpHistory)
    merged_into: int = -1

    def continued(
        self, frame_start: pd.Timestamp, frame_end: pd.Timestamp, centre: np.ndarray, n_flashes: int, flash_rate: float
    ) -> OpenTrack:
        """This track one storm later: its velocity is the step just made, averaged with the previous estimate."""
        seconds = (frame_start - self.last_seen).total_seconds()
        step_x, step_y = centre[0] - self.x_km, centre[1] - self.y_km
        vx, vy = step_x * 1000.0 / seconds, step_y * 1000.0 / seconds
        if self.n_frames > 1:
            vx, vy = 0.5 * (self.vx_ms + vx), 0.5 * (self.vy_ms + vy)
        return replace(
            self,
            last_seen=frame_start,
            end=frame_end,
            x_km=float(centre[0]),
            y_km=float(centre[1]),
            vx_ms=vx,
            vy_ms=vy,
            missed=0,
            n_frames=self.n_frames + 1,
            n_flashes=self.n_flashes + n_flashes,
            last_n_flashes=n_flashes,
            path_km=self.path_km + float(np.hypot(step_x, step_y)),
            peak_flash_rate=max(self.peak_flash_rate, flash_rate),
        )

    def predicted(self, at: pd.Timestamp) -> tuple[float, float]:
        seconds = (at - self.last_seen).total_seconds()
        return self.x_km + self.vx_ms * seconds / 1000.0, self.y_km + self.vy_ms * seconds / 1000.0


@dataclass(frozen=True)
class TrackState:
    """The tracks still open at the end of a window: what the next window continues.

    ``tracks`` has :data:`STATE_COLUMNS`, one row per open track sorted by id; :meth:`to_frame` and
    :meth:`from_frame` pass it through a table (e.g. the store's, keyed by the hour the state ends) unchanged:
    floats stay float64 so that continuing from a stored state is bit-for-bit continuing in memory.
    """

    tracks: pd.DataFrame

    @classmethod
    def empty(cls) -> TrackState:
        return cls._of([], (0.0, 0.0))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> TrackState:
        missing = [c for c in STATE_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"TrackState.from_frame: missing columns {missing}")
        return cls(frame[STATE_COLUMNS].sort_values("track_id", kind="stable").reset_index(drop=True))

    def to_frame(self) -> pd.DataFrame:
        return self.tracks.copy()

    def __len__(self) -> int:
        return len(self.tracks)

    @classmethod
    def _of(cls, tracks: list[OpenTrack], centre: tuple[float, float]) -> TrackState:
        x = np.array([t.x_km for t in tracks], dtype=np.float64)
        y = np.array([t.y_km for t in tracks], dtype=np.float64)
        lat, lon = laea_inverse(x, y, *centre)
        frame = pd.DataFrame(
            {
                "track_id": pd.Series([t.track_id for t in tracks], dtype="int64"),
                "parent_id": nullable_ids([t.parent_id for t in tracks]),
                "start": times([t.start for t in tracks]),
                "last_seen": times([t.last_seen for t in tracks]),
                "end": times([t.end for t in tracks]),
                "x_km": x,
                "y_km": y,
                "lat": lat,
                "lon": lon,
                "vx_ms": np.array([t.vx_ms for t in tracks], dtype=np.float64),
                "vy_ms": np.array([t.vy_ms for t in tracks], dtype=np.float64),
                "missed": np.array([t.missed for t in tracks], dtype=np.int64),
                "n_frames": np.array([t.n_frames for t in tracks], dtype=np.int64),
                "n_flashes": np.array([t.n_flashes for t in tracks], dtype=np.int64),
                "last_n_flashes": np.array([t.last_n_flashes for t in tracks], dtype=np.int64),
                "path_km": np.array([t.path_km for t in tracks], dtype=np.float64),
                "peak_flash_rate": np.array([t.peak_flash_rate for t in tracks], dtype=np.float64),
                "n_jumps": np.array([t.n_jumps for t in tracks], dtype=np.int64),
                "first_jump": times([t.first_jump for t in tracks]),
                "recent_rates": pd.Series([list(t.jump_history.rates) for t in tracks], dtype=object),
                "last_flagged": times([t.jump_history.last_flagged for t in tracks]),
            }
        )
        return cls(frame)

    def _tracks(self, centre: tuple[float, float]) -> list[OpenTrack]:
        """The open tracks, after checking the state was made in the plane centred on ``centre``."""
        rows = self.tracks
        if len(rows):
            x, y = laea_forward(rows["lat"].to_numpy(float), rows["lon"].to_numpy(float), *centre)
            off = np.hypot(x - rows["x_km"].to_numpy(float), y - rows["y_km"].to_numpy(float))
            if off.max() > 1e-3:
                raise ValueError(
                    f"TrackState: its positions are {off.max():.3f} km off in the plane centred on {centre}: "
                    "the state was made with another projection_centre"
                )
        return [
            OpenTrack(
                track_id=int(r.track_id),
                parent_id=-1 if pd.isna(r.parent_id) else int(r.parent_id),
                start=pd.Timestamp(r.start),
                last_seen=pd.Timestamp(r.last_seen),
                end=pd.Timestamp(r.end),
                x_km=float(r.x_km),
                y_km=float(r.y_km),
                vx_ms=float(r.vx_ms),
                vy_ms=float(r.vy_ms),
                missed=int(r.missed),
                n_frames=int(r.n_frames),
                n_flashes=int(r.n_flashes),
                last_n_flashes=int(r.last_n_flashes),
                path_km=float(r.path_km),
                peak_flash_rate=float(r.peak_flash_rate),
                n_jumps=int(r.n_jumps),
                first_jump=None if pd.isna(r.first_jump) else pd.Timestamp(r.first_jump),
                jump_history=JumpHistory(
                    rates=tuple(float(v) for v in r.recent_rates),
                    last_flagged=None if pd.isna(r.last_flagged) else pd.Timestamp(r.last_flagged),
                ),
            )
            for r in rows.itertuples(index=False)
        ]


def nullable_ids(values) -> pd.Series:
    ids = pd.Series(np.asarray(values, dtype=np.int64), dtype="Int64")
    return ids.mask(ids < 0)


def times(values) -> pd.Series:
    """Timestamps (None: NaT) at the store's resolution."""
    return pd.to_datetime(pd.Series([pd.NaT if v is None else v for v in values], dtype=object)).astype(TIME_DTYPE)
