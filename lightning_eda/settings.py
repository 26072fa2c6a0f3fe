"""Configuration from the environment, validated before anything touches the network.

Every check raises :class:`ConfigError` with one line that names the variable and what it allows, so the CLI can
print it as is and the Dagster run fails with the same message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from lightning_eda.goes import satellites
from lightning_eda.utc import days_in_year, utc_now

#: GOES-East, resolved hour by hour to the operational satellite's bucket (:mod:`lightning_eda.goes.satellites`).
DEFAULT_BUCKET = satellites.EAST
DEFAULT_PRODUCT = "GLM-L2-LCFA"
DEFAULT_DATA_DIR = "data"
FIRST_GLM_YEAR = 2017  # GOES-16's GLM began producing data in 2017.

# S3 bucket naming rules (virtual-host compatible): 3-63 chars of lowercase letters, digits, dots and hyphens,
# beginning and ending with a letter or digit.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PRODUCT_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,63}$")


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line meant for the user."""


def validate_bucket(bucket: str, variable: str = "S3_BUCKET") -> str:
    """A bucket name, or a slot alias (``east``, ``west``, any case) returned in lower case."""
    if satellites.is_alias(bucket or ""):
        return bucket.strip().lower()
    if not _BUCKET_RE.fullmatch(bucket or "") or ".." in bucket:
        raise ConfigError(
            f"{variable}={bucket!r} is not a valid S3 bucket name: use 3-63 lowercase letters, digits, '.' or '-' "
            f"(e.g. noaa-goes19, noaa-goes18, noaa-goes16), or east / west for the slot's operational satellite"
        )
    return bucket


def bucket_at(bucket: str, hour: datetime) -> str:
    """The real bucket holding ``hour`` for S3_BUCKET ``bucket`` (an alias resolves to the slot's satellite)."""
    try:
        return satellites.bucket_at(validate_bucket(bucket), hour)
    except satellites.NoOperationalSatellite as exc:
        raise ConfigError(str(exc)) from None


def buckets_for_hours(bucket: str, hours: list[datetime]) -> dict[datetime, str]:
    """Each hour's real bucket, all resolved before any download (an hour no satellite covers raises)."""
    return {hour: bucket_at(bucket, hour) for hour in hours}


def validate_product(product: str, variable: str = "PRODUCT") -> str:
    if not _PRODUCT_RE.fullmatch(product or ""):
        raise ConfigError(
            f"{variable}={product!r} is not a valid product name: use upper-case letters, digits and '-' "
            f"(e.g. GLM-L2-LCFA)"
        )
    return product


def _parse_int(variable: str, raw: str, low: int, high: int, allowed: str) -> int:
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):  # str.isdigit() alone accepts '²' and other scripts' digits
        raise ConfigError(f"{variable}={raw!r} is not a whole number: allowed {allowed}")
    value = int(text)
    if not low <= value <= high:
        raise ConfigError(f"{variable}={raw!r} is out of range: allowed {allowed}")
    return value


def hour_from_parts(year: str, doy: str, hour: str, *, now: datetime | None = None) -> datetime:
    """The UTC hour named by GOES_YEAR, GOES_DOY (day of year) and GOES_HOUR, as a naive UTC datetime."""
    now = now or utc_now()
    y = _parse_int("GOES_YEAR", year, FIRST_GLM_YEAR, now.year, f"{FIRST_GLM_YEAR}..{now.year}")
    n_days = days_in_year(y)
    d = _parse_int("GOES_DOY", doy, 1, n_days, f"001..{n_days:03d} for {y}")
    h = _parse_int("GOES_HOUR", hour, 0, 23, "00..23")
    start = datetime(y, 1, 1) + timedelta(days=d - 1, hours=h)
    if start + timedelta(hours=1) > now:
        raise ConfigError(
            f"GOES_YEAR/GOES_DOY/GOES_HOUR name {start:%Y-%m-%d %H}:00 UTC, which is not a complete hour yet"
        )
    return start


def latest_complete_hour(now: datetime | None = None, lag: timedelta = timedelta(minutes=0)) -> datetime:
    """The most recent UTC hour that has ended (``lag`` allows for NOAA's publication latency)."""
    now = (now or utc_now()) - lag
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def hour_from_env(env: Mapping[str, str], *, now: datetime | None = None) -> datetime:
    """GOES_YEAR/GOES_DOY/GOES_HOUR when all are set; the latest complete hour when none are."""
    names = ("GOES_YEAR", "GOES_DOY", "GOES_HOUR")
    given = {name: env.get(name, "").strip() for name in names}
    present = [name for name in names if given[name]]
    if not present:
        return latest_complete_hour(now)
    if len(present) != len(names):
        missing = ", ".join(name for name in names if not given[name])
        raise ConfigError(f"set all of GOES_YEAR, GOES_DOY, GOES_HOUR or none of them (missing: {missing})")
    return hour_from_parts(given["GOES_YEAR"], given["GOES_DOY"], given["GOES_HOUR"], now=now)


@dataclass(frozen=True)
class Settings:
    """Everything a run reads from the environment."""

    bucket: str
    product: str
    data_dir: Path
    source_dir: Path | None
    write_csv: bool = False
    keep_raw: bool = True

    def bucket_at(self, hour: datetime) -> str:
        """The real bucket of ``hour`` (S3_BUCKET itself unless it is ``east`` or ``west``)."""
        return bucket_at(self.bucket, hour)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        values = env_values(env)
        return cls(
            bucket=validate_bucket(values["bucket"]),
            product=validate_product(values["product"]),
            data_dir=Path(values["data_dir"]),
            source_dir=validate_source_dir(values["source_dir"]),
            **env_flags(values),
        )


def env_values(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The raw settings with their defaults, not yet validated (the code location must load even when one is bad)."""
    env = os.environ if env is None else env
    return {
        "bucket": env.get("S3_BUCKET", "").strip() or DEFAULT_BUCKET,
        "product": env.get("PRODUCT", "").strip() or DEFAULT_PRODUCT,
        "data_dir": env.get("LIGHTNING_EDA_DATA_DIR", "").strip() or DEFAULT_DATA_DIR,
        "source_dir": env.get("GOES_SOURCE_DIR", "").strip() or None,
        "write_csv": env.get("LIGHTNING_EDA_CSV", "").strip() or "0",
        "keep_raw": env.get("LIGHTNING_EDA_KEEP_RAW", "").strip() or "1",
    }


HOURS_PER_RUN_VARIABLE = "LIGHTNING_EDA_HOURS_PER_RUN"
DEFAULT_HOURS_PER_RUN = 6
MAX_HOURS_PER_RUN = 168


def hours_per_run(env: Mapping[str, str] | None = None) -> int:
    """How many hour partitions one run of a Dagster backfill ingests (``LIGHTNING_EDA_HOURS_PER_RUN``, default 6).

    A run costs a process and a plan per step whatever it carries (about 5.7 CPU-s, BENCHMARKS.md §8); a batch pays
    it once for its hours. A larger batch keeps fewer workers busy on a short backfill and redoes more after a lost
    step (the committed hours of the batch are skipped, but checked and listed again).
    """
    env = os.environ if env is None else env
    raw = env.get(HOURS_PER_RUN_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_HOURS_PER_RUN
    return _parse_int(HOURS_PER_RUN_VARIABLE, raw, 1, MAX_HOURS_PER_RUN, f"1 to {MAX_HOURS_PER_RUN} (hours)")


#: The yes/no settings: field of :class:`Settings` → environment variable.
FLAG_VARIABLES = {"write_csv": "LIGHTNING_EDA_CSV", "keep_raw": "LIGHTNING_EDA_KEEP_RAW"}


def env_flags(
    values: Mapping[str, str | None], on_error: Callable[[ConfigError], None] | None = None
) -> dict[str, bool]:
    """The yes/no settings of :func:`env_values`; a bad one raises, or with ``on_error`` is reported and left out."""
    flags = {}
    for field, variable in FLAG_VARIABLES.items():
        try:
            flags[field] = parse_flag(variable, values[field])
        except ConfigError as exc:
            if on_error is None:
                raise
            on_error(exc)
    return flags


_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def parse_flag(variable: str, raw: str) -> bool:
    """A yes/no setting: 1/0, true/false, yes/no or on/off."""
    value = _FLAGS.get(str(raw).strip().lower())
    if value is None:
        raise ConfigError(f"{variable}={raw!r} is not a yes/no value: use 1 or 0 (also true/false, yes/no, on/off)")
    return value


def validate_source_dir(source_dir: str | None) -> Path | None:
    if source_dir is None:
        return None
    if not Path(source_dir).is_dir():
        raise ConfigError(f"GOES_SOURCE_DIR={source_dir!r} is not a directory")
    return Path(source_dir)


_WINDOW_FORMATS = ("%Y-%m-%d-%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H", "%Y-%m-%dT%H", "%Y-%m-%d")


def parse_minute(text: str, variable: str = "window_start") -> datetime:
    """A UTC minute given as ISO-like text (2024-06-01T18:10, 2024-06-01 18:10), a partition key or a date."""
    for fmt in _WINDOW_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    raise ConfigError(f"{variable}={text!r} is not a UTC time: use YYYY-MM-DDTHH:MM, e.g. 2024-06-01T18:10")


def parse_hour(text: str, variable: str = "window_start") -> datetime:
    """An hour given as a partition key (2018-07-02-04:00), ISO-like text (2018-07-02 04:00) or a date."""
    try:
        moment = parse_minute(text, variable)
    except ConfigError:
        raise ConfigError(
            f"{variable}={text!r} is not an hour: use YYYY-MM-DD HH:MM (UTC) or a partition key"
        ) from None
    if moment.minute:
        raise ConfigError(f"{variable}={text!r} must fall on a whole hour")
    return moment


_DURATION_RE = re.compile(r"(?:(?P<hours>[0-9]+)\s*h(?:ours?)?)?\s*(?:(?P<minutes>[0-9]+)\s*m(?:in(?:utes?)?)?)?")


def parse_duration(text: str, variable: str = "--recent") -> timedelta:
    """A length of time as goes2go's ``recent`` takes it: 30min, 90min, 2h, 1h30min (whole minutes)."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None or not (match["hours"] or match["minutes"]):
        raise ConfigError(f"{variable}={text!r} is not a duration: use e.g. 30min, 90min, 2h or 1h30min")
    duration = timedelta(hours=int(match["hours"] or 0), minutes=int(match["minutes"] or 0))
    if not timedelta(minutes=1) <= duration <= timedelta(hours=MAX_BACKFILL_HOURS):
        raise ConfigError(f"{variable}={text!r} is out of range: from 1min to {MAX_BACKFILL_HOURS}h")
    return duration


def now_from_env(env: Mapping[str, str]) -> datetime:
    """The clock: now in UTC, or LIGHTNING_EDA_NOW (a UTC minute) to replay a past moment or test ``--recent``."""
    given = env.get("LIGHTNING_EDA_NOW", "").strip()
    return parse_minute(given, "LIGHTNING_EDA_NOW") if given else utc_now()


@dataclass(frozen=True)
class TimeWindow:
    """A clustering window to the minute, [start, end) UTC, and the hours of granules it touches."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> list[datetime]:
        first = self.start.replace(minute=0, second=0, microsecond=0)
        count = -(-(self.end - first) // timedelta(hours=1))  # ceil: an end inside an hour touches that hour
        return [first + timedelta(hours=i) for i in range(count)]

    @property
    def whole_hours(self) -> bool:
        return self.start.minute == self.end.minute == 0

    @property
    def text(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC"


def time_window(start: datetime, end: datetime, *, now: datetime, flags: str = "--start/--end") -> TimeWindow:
    """[start, end) checked: end after start, within the GLM era, ending by ``now`` (to the minute).

    A window may reach into the hour in progress: its granules published so far are loaded (see
    :func:`hour_in_progress`), and the run after the hour ends completes it.
    """
    if start.second or start.microsecond or end.second or end.microsecond:
        raise ConfigError(f"{flags}: {start} – {end} must be whole minutes")
    if end <= start:
        raise ConfigError(f"{flags}: the end {end:%Y-%m-%dT%H:%M} must come after the start {start:%Y-%m-%dT%H:%M}")
    if start.year < FIRST_GLM_YEAR:
        raise ConfigError(f"{flags}: the start {start:%Y-%m-%dT%H:%M} is before GLM data exist ({FIRST_GLM_YEAR})")
    latest_end = now_minute(now)
    if end > latest_end:
        raise ConfigError(
            f"{flags}: the end {end:%Y-%m-%dT%H:%M} UTC is in the future (it is {latest_end:%Y-%m-%dT%H:%M} UTC)"
        )
    window = TimeWindow(start, end)
    if len(window.hours) > MAX_BACKFILL_HOURS:
        raise ConfigError(f"{flags}: the window touches {len(window.hours)} hours; at most {MAX_BACKFILL_HOURS}")
    return window


def recent_window(duration: timedelta, *, now: datetime) -> TimeWindow:
    """The last ``duration`` up to ``now`` (to the minute): at 18:45, 30min is 18:15–18:45, reaching into the hour in
    progress, as goes2go's ``recent`` does."""
    end = now_minute(now)
    return time_window(end - duration, end, now=now, flags="--recent")


def now_minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def hour_in_progress(hour: datetime, now: datetime) -> bool:
    """True while ``hour`` has not ended: it is no partition yet (Dagster makes an hour's partition when it ends)."""
    return hour + timedelta(hours=1) > now


MAX_BACKFILL_HOURS = 24 * 366


def hour_range(start: datetime, end: datetime, *, now: datetime | None = None) -> list[datetime]:
    """Every hour from start to end, both included; each must be a complete hour of the GLM era."""
    now = now or utc_now()
    if start.year < FIRST_GLM_YEAR:
        raise ConfigError(f"--start {start:%Y-%m-%d %H}:00 is before GLM data exist ({FIRST_GLM_YEAR})")
    if end < start:
        raise ConfigError(f"--end {end:%Y-%m-%d %H}:00 is before --start {start:%Y-%m-%d %H}:00")
    if end + timedelta(hours=1) > now:
        raise ConfigError(f"--end {end:%Y-%m-%d %H}:00 UTC is not a complete hour yet")
    count = int((end - start) / timedelta(hours=1)) + 1
    if count > MAX_BACKFILL_HOURS:
        raise ConfigError(f"the range holds {count} hours; at most {MAX_BACKFILL_HOURS} per backfill")
    return [start + timedelta(hours=i) for i in range(count)]
