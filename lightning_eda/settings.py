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

from lightning_eda.utc import days_in_year, utc_now

DEFAULT_BUCKET = "noaa-goes19"
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
    if not _BUCKET_RE.fullmatch(bucket or "") or ".." in bucket:
        raise ConfigError(
            f"{variable}={bucket!r} is not a valid S3 bucket name: use 3-63 lowercase letters, digits, '.' or '-' "
            f"(e.g. noaa-goes19, noaa-goes18, noaa-goes16)"
        )
    return bucket


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


def parse_hour(text: str, variable: str = "window_start") -> datetime:
    """An hour given as a partition key (2018-07-02-04:00), ISO-like text (2018-07-02 04:00) or a date."""
    for fmt in _WINDOW_FORMATS:
        try:
            moment = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        if moment.minute or moment.second:
            raise ConfigError(f"{variable}={text!r} must fall on a whole hour")
        return moment
    raise ConfigError(f"{variable}={text!r} is not an hour: use YYYY-MM-DD HH:MM (UTC) or a partition key")


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
