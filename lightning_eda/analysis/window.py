"""The analysis window: which hours' flashes the preprocessor kept, where, and how it projected them.

Every analysis after the preprocessor (evaluators, k-means, maps, density) works on the same window. It travels as an
:class:`AnalysisWindow` and becomes text only at the store's boundary: :meth:`AnalysisWindow.to_row` gives the row of
``feature_window`` (the projection, the box and the drop counts as JSON), :meth:`AnalysisWindow.from_row` reads it
back. No Dagster here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from lightning_eda.analysis.features import FeatureTransform, LatLonBox
from lightning_eda.goes import satellites


def box_from_edges(
    lat_min: float | None, lat_max: float | None, lon_min: float | None, lon_max: float | None
) -> LatLonBox | None:
    """The region of four edges, or None when none is set; ``ValueError`` when only some are, naming the others."""
    edges = {"lat_min": lat_min, "lat_max": lat_max, "lon_min": lon_min, "lon_max": lon_max}
    missing = [name for name, value in edges.items() if value is None]
    if len(missing) == len(edges):
        return None
    if missing:
        raise ValueError(f"set all of lat_min, lat_max, lon_min, lon_max or none (missing: {', '.join(missing)})")
    return LatLonBox(**edges)


@dataclass(frozen=True)
class WindowRequest:
    """What the preprocessor is asked for, every value already parsed and checked.

    ``start`` None means the latest loaded hour (looked up only then). ``end`` (to the minute, with ``start``) ends
    the window there instead of ``hours`` after the start.
    :func:`~lightning_eda.analysis.features.preprocess` checks the time weight.
    """

    start: datetime | None
    hours: int = 1
    box: LatLonBox | None = None
    quality_flags: tuple[int, ...] | None = None
    time_weight_km_per_min: float = 0.0
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.hours < 1:
            raise ValueError(f"window_hours={self.hours} must be at least 1")
        if self.end is not None and (self.start is None or self.end <= self.start):
            raise ValueError(f"window_end={self.end:%Y-%m-%d %H:%M} must come after window_start={self.start}")

    def bounds(self, latest_loaded: datetime | None) -> tuple[datetime, datetime]:
        """[start, end): from ``start``, or from ``latest_loaded`` when no start was given."""
        start = self.start if self.start is not None else latest_loaded
        if start is None:
            raise ValueError("no hour is loaded yet: materialize the ingestor assets first")
        return start, self.end if self.end is not None else start + timedelta(hours=self.hours)


@dataclass(frozen=True)
class AnalysisWindow:
    """The preprocessor's window: [start, end) of ``bucket``, the region kept and the projection fitted.

    ``bucket`` is S3_BUCKET as set: a real bucket, or ``east`` / ``west``, read hour by hour from the slot's satellite
    (:meth:`spans`). ``start`` and ``end`` are to the minute; on a whole hour they take the hour's granules whole.
    """

    bucket: str
    start: datetime
    end: datetime
    transform: FeatureTransform
    box: LatLonBox | None = None
    time_weight_km_per_min: float = 0.0
    n_input: int = 0
    n_features: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    storm_count: int = 0  # storms segment_storms found among the kept flashes: the storm-scale k
    storm_reason: str = ""  # segment_storms' one line on how they were found

    def spans(self) -> list[satellites.BucketSpan]:
        """The window cut at the slot's handovers, each piece with the real bucket its hour folders are under."""
        return satellites.bucket_spans(self.bucket, self.start, self.end)

    def bucket_at(self, hour: datetime) -> str:
        """The real bucket of ``hour`` of the window."""
        return satellites.bucket_at(self.bucket, hour)

    @property
    def text(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC"

    @property
    def title(self) -> str:
        """What the maps and charts print above themselves."""
        return f"{self.text} · {self.bucket}"

    @property
    def extent(self) -> tuple[float, float, float, float] | None:
        """The map extent of the region kept, or None to fit the map to the flashes."""
        return self.box.extent if self.box else None

    def to_row(self) -> dict[str, Any]:
        """The row of ``feature_window``."""
        return {
            "bucket": self.bucket,
            "window_start": self.start,
            "window_end": self.end,
            "n_input": self.n_input,
            "n_features": self.n_features,
            "dropped": json.dumps(dict(self.dropped)),
            "transform": json.dumps(self.transform.to_dict()),
            "box": json.dumps(self.box.to_dict()) if self.box else None,
            "time_weight_km_per_min": self.time_weight_km_per_min,
            "storm_count": self.storm_count,
            "storm_reason": self.storm_reason,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AnalysisWindow:
        """Inverse of :meth:`to_row` (timestamps may come back as pandas or NumPy values)."""
        box = row.get("box")
        weight = row.get("time_weight_km_per_min")
        return cls(
            bucket=str(row["bucket"]),
            start=pd.Timestamp(row["window_start"]).to_pydatetime(),
            end=pd.Timestamp(row["window_end"]).to_pydatetime(),
            transform=FeatureTransform.from_dict(json.loads(row["transform"])),
            box=LatLonBox(**json.loads(box)) if isinstance(box, str) and box else None,
            time_weight_km_per_min=float(weight) if weight is not None and pd.notna(weight) else 0.0,
            n_input=int(row["n_input"]),
            n_features=int(row["n_features"]),
            dropped={str(k): int(v) for k, v in json.loads(row.get("dropped") or "{}").items()},
            storm_count=int(row["storm_count"]),
            storm_reason=str(row["storm_reason"]),
        )
