"""GOES-East and GOES-West by date: which bucket held the operational satellite of a slot at a given hour.

goes2go users choose data by slot ("East", "West"), not by satellite; NOAA's buckets are per satellite
(``noaa-goes16`` ... ``noaa-goes19``). ``S3_BUCKET=east`` or ``west`` resolves here, hour by hour, through
:data:`SLOTS`; a real bucket name pins one satellite and passes through unchanged. The store always records the real
bucket. No Dagster here.

Handover times (UTC), each the moment the new satellite became the slot's operational one:

- GOES-16 → GOES-East 2017-12-18 (NOAA, "GOES-16 is now GOES-East", 18 December 2017). NOAA announced the day, not
  an hour: the slot starts at 00:00 UTC that day. Earlier hours were GOES-13's, which is not on these buckets.
- GOES-17 → GOES-West 2019-02-12 18:00 UTC (NOAA OSPO; NOAA's news release gives 12 February 2019). Before it the
  slot was GOES-15's, not on these buckets. The hour is OSPO's, not confirmed by a second source here.
- GOES-18 → GOES-West 2023-01-04 18:00 UTC (NOAA OSPO; NESDIS, "GOES-18 is now GOES West", 4 January 2023, gives
  the day). The hour is OSPO's, not confirmed by a second source here.
- GOES-19 → GOES-East 2025-04-07 15:00 UTC (NOAA OSPO). NOAA's earlier transition plan named 2025-04-04 15:10 UTC
  (11:10 EDT) for GOES-19 entering service; GLM.md records both dates. OSPO's time is used; an hour in between
  that ``noaa-goes16`` lacks fails with "no granules", and ``S3_BUCKET=noaa-goes19`` reads it from the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from lightning_eda.utc import naive_utc

EAST = "east"
WEST = "west"
_HOUR = timedelta(hours=1)


class NoOperationalSatellite(ValueError):
    """An alias names an hour before any satellite of the slot was on NOAA's GOES-R buckets."""


@dataclass(frozen=True)
class Tenure:
    """A satellite operational in a slot from ``since`` (inclusive) until the next tenure's ``since``."""

    satellite: int
    bucket: str
    since: datetime


#: The operational satellite of each slot, in order of handover (see the module docstring for the sources).
SLOTS: dict[str, tuple[Tenure, ...]] = {
    EAST: (
        Tenure(16, "noaa-goes16", datetime(2017, 12, 18, 0)),
        Tenure(19, "noaa-goes19", datetime(2025, 4, 7, 15)),
    ),
    WEST: (
        Tenure(17, "noaa-goes17", datetime(2019, 2, 12, 18)),
        Tenure(18, "noaa-goes18", datetime(2023, 1, 4, 18)),
    ),
}
ALIASES = tuple(SLOTS)


def is_alias(bucket: str) -> bool:
    """Whether ``bucket`` names a slot (``east``, ``west``, any case) rather than a bucket."""
    return bucket.strip().lower() in SLOTS


def tenure_at(slot: str, moment: datetime) -> Tenure:
    """The slot's operational satellite at ``moment``.

    Raises
    ------
    NoOperationalSatellite
        If ``moment`` is before the slot's first satellite on the buckets.
    """
    tenures = SLOTS[slot.strip().lower()]
    moment = naive_utc(moment)
    current = None
    for tenure in tenures:
        if tenure.since <= moment:
            current = tenure
    if current is None:
        first = tenures[0]
        raise NoOperationalSatellite(
            f"S3_BUCKET={slot} has no satellite on NOAA's GOES-R buckets at {moment:%Y-%m-%d %H:%M} UTC: "
            f"GOES-{first.satellite} became GOES-{slot.strip().capitalize()} on {first.since:%Y-%m-%d %H:%M} UTC "
            f"(set S3_BUCKET to a bucket such as {first.bucket} to read a satellite outside its slot)"
        )
    return current


def bucket_at(bucket: str, hour: datetime) -> str:
    """The real bucket to read ``hour`` from: the slot's satellite for an alias, else ``bucket`` itself."""
    return tenure_at(bucket, hour).bucket if is_alias(bucket) else bucket


@dataclass(frozen=True)
class BucketSpan:
    """Part of a time window read from one real bucket: [start, end), with the hour folders it touches."""

    bucket: str
    start: datetime
    end: datetime

    @property
    def ends(self) -> tuple[datetime, datetime]:
        return self.start, self.end

    @property
    def first_hour(self) -> datetime:
        return self.start.replace(minute=0, second=0, microsecond=0)

    def hours(self) -> list[datetime]:
        """The hour folders whose granules can hold flashes of the span."""
        hours, hour = [], self.first_hour
        while hour < self.end:
            hours.append(hour)
            hour += _HOUR
        return hours


def slot_buckets(bucket: str) -> tuple[str, ...]:
    """Every real bucket ``bucket`` may read: the slot's satellites' for an alias, else ``bucket`` alone."""
    return tuple(t.bucket for t in SLOTS[bucket.strip().lower()]) if is_alias(bucket) else (bucket,)


def bucket_spans(bucket: str, start: datetime, end: datetime) -> list[BucketSpan]:
    """[start, end) cut at the slot's handovers, each piece with its real bucket; one piece for a real bucket.

    Handovers fall on whole hours, so each hour folder belongs to exactly one piece.
    """
    if not is_alias(bucket):
        return [BucketSpan(bucket, start, end)]
    cuts = [t.since for t in SLOTS[bucket.strip().lower()] if start < t.since < end]
    edges = [start, *cuts, end]
    return [BucketSpan(bucket_at(bucket, a), a, b) for a, b in pairwise(edges)]
