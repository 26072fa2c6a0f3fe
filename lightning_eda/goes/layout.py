"""S3 key layout of GOES GLM Level-2 granules: names, hour prefixes and safe local paths.

NOAA's buckets (``noaa-goes16`` ... ``noaa-goes19``) store each granule as::

    GLM-L2-LCFA/YYYY/DDD/HH/OR_GLM-L2-LCFA_Gnn_sYYYYDDDHHMMSSt_eYYYYDDDHHMMSSt_cYYYYDDDHHMMSSt.nc

where ``DDD`` is the day of year, ``t`` tenths of a second, ``s``/``e`` the start and end of the granule, ``c`` its
creation time, and the ``YYYY/DDD/HH`` folder follows the start time (GOES-R PUG, vol. 5; glmtools
``parse_glm_filename``). Everything here is a pure function of strings and datetimes.

All datetimes are naive and in UTC: they never carry ``tzinfo``. Functions that accept a datetime convert an aware
one to UTC and drop the zone.

Products: names are accepted for any GLM Level-2 product spelled ``GLM-L2-<LETTERS>`` (``GLM-L2-LCFA`` is the one
this project ingests). Keys are only valid when their first folder and the product inside the file name agree with
the product the caller asks for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

from lightning_eda.utc import days_in_year, naive_utc

LCFA_PRODUCT = "GLM-L2-LCFA"

PRODUCT_RE = re.compile(r"GLM-L2-[A-Z]+")

_STAMP = r"[0-9]{14}"
GRANULE_NAME_RE = re.compile(
    r"OR_(?P<product>GLM-L2-[A-Z]+)_(?P<platform>G[0-9]{2})"
    rf"_s(?P<start>{_STAMP})_e(?P<end>{_STAMP})_c(?P<created>{_STAMP})\.nc"
)
"""Strict granule file name; use with ``fullmatch`` (ASCII digits only, no path, no trailing text)."""

_YEAR_RE = re.compile(r"[0-9]{4}")
_DOY_RE = re.compile(r"[0-9]{3}")
_HOUR_RE = re.compile(r"[0-9]{2}")


@dataclass(frozen=True)
class GranuleName:
    """The parts of a granule file name.

    Attributes
    ----------
    name : str
        The file name itself.
    product : str
        For example ``"GLM-L2-LCFA"``.
    platform : str
        ``"G16"``, ``"G17"``, ... (the name does not say East or West).
    start, end, created : datetime
        Naive UTC, with tenth-of-a-second precision.
    """

    name: str
    product: str
    platform: str
    start: datetime
    end: datetime
    created: datetime


def parse_stamp(stamp: str) -> datetime:
    """Decode a ``YYYYDDDHHMMSSt`` stamp to a naive UTC datetime.

    Why: ``strptime("2018366", "%Y%j")`` silently gives 2019-01-01, so each field is checked by hand.

    Raises
    ------
    ValueError
        If the stamp is not 14 ASCII digits or a field is out of range.
    """
    if not re.fullmatch(_STAMP, stamp):
        raise ValueError(f"time stamp {stamp!r} is not 14 digits YYYYDDDHHMMSSt")
    year, doy = int(stamp[0:4]), int(stamp[4:7])
    hour, minute, second, tenth = int(stamp[7:9]), int(stamp[9:11]), int(stamp[11:13]), int(stamp[13])
    n_days = days_in_year(year)
    if not 1 <= doy <= n_days:
        raise ValueError(f"time stamp {stamp!r}: day of year {doy} is outside 001-{n_days:03d} for {year}")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time stamp {stamp!r}: time of day {hour:02d}:{minute:02d}:{second:02d} is invalid")
    return datetime(year, 1, 1) + timedelta(
        days=doy - 1, hours=hour, minutes=minute, seconds=second, milliseconds=100 * tenth
    )


def format_stamp(moment: datetime) -> str:
    """Encode a datetime as ``YYYYDDDHHMMSSt``, truncating below a tenth of a second."""
    moment = naive_utc(moment)
    return f"{moment:%Y%j%H%M%S}{moment.microsecond // 100_000}"


def parse_granule_name(name: str) -> GranuleName:
    """Parse a granule file name (no folders) into its parts.

    Raises
    ------
    ValueError
        If ``name`` does not match :data:`GRANULE_NAME_RE`, a time stamp is invalid, or the end precedes the start.
    """
    match = GRANULE_NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"{name!r} is not a GLM L2 granule name "
            "(expected OR_GLM-L2-<PRODUCT>_Gnn_sYYYYDDDHHMMSSt_eYYYYDDDHHMMSSt_cYYYYDDDHHMMSSt.nc)"
        )
    try:
        start, end, created = (parse_stamp(match[part]) for part in ("start", "end", "created"))
    except ValueError as exc:
        raise ValueError(f"{name!r}: {exc}") from exc
    if end < start:
        raise ValueError(f"{name!r}: end {end:%Y-%m-%d %H:%M:%S} is before start {start:%Y-%m-%d %H:%M:%S}")
    return GranuleName(name, match["product"], match["platform"], start, end, created)


def format_granule_name(
    platform: str, start: datetime, end: datetime, created: datetime, product: str = LCFA_PRODUCT
) -> str:
    """Build the file name NOAA gives a granule; the inverse of :func:`parse_granule_name`."""
    _check_product(product)
    if not re.fullmatch(r"G[0-9]{2}", platform):
        raise ValueError(f"platform {platform!r} is not of the form Gnn")
    return f"OR_{product}_{platform}_s{format_stamp(start)}_e{format_stamp(end)}_c{format_stamp(created)}.nc"


def hour_prefix(product: str, hour: datetime) -> str:
    """The bucket prefix listing one hour of granules, e.g. ``GLM-L2-LCFA/2018/183/04/``.

    Minutes and seconds of ``hour`` are ignored: the prefix is the one of the hour containing it.
    """
    _check_product(product)
    hour = naive_utc(hour)
    return f"{product}/{hour:%Y}/{hour:%j}/{hour:%H}/"


def is_granule_key(key: str, product: str) -> bool:
    """Whether ``key`` is exactly ``<product>/YYYY/DDD/HH/<granule name>`` with the folder matching the start time.

    Why: keys come from a bucket listing and become local paths, so anything unusual (``..``, absolute paths,
    backslashes, extra folders, a granule filed under the wrong hour) is refused rather than interpreted.
    """
    _check_product(product)
    if not isinstance(key, str) or "\\" in key:
        return False
    parts = key.split("/")
    if len(parts) != 5:
        return False
    folder, year, doy, hour, name = parts
    if folder != product or not (_YEAR_RE.fullmatch(year) and _DOY_RE.fullmatch(doy) and _HOUR_RE.fullmatch(hour)):
        return False
    try:
        parsed = parse_granule_name(name)
    except ValueError:
        return False
    return parsed.product == product and key == hour_prefix(product, parsed.start) + name


def local_path_for_key(root: Path, key: str) -> Path:
    """Map a validated granule key to a path under ``root``, mirroring the key's folders.

    Raises
    ------
    ValueError
        If ``key`` is not a valid granule key (see :func:`is_granule_key`, with the product taken from its first
        folder), or if the resulting path would resolve outside ``root`` (for example through a symlink).
    """
    product = key.split("/", 1)[0] if isinstance(key, str) else ""
    if not PRODUCT_RE.fullmatch(product) or not is_granule_key(key, product):
        raise ValueError(f"{key!r} is not a GLM granule key of the form <product>/YYYY/DDD/HH/<granule name>")
    root = Path(root)
    path = root.joinpath(*PurePosixPath(key).parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"key {key!r} resolves outside {root}")
    return path


def _check_product(product: str) -> None:
    """Refuse product names that could inject path segments into keys."""
    if not isinstance(product, str) or not PRODUCT_RE.fullmatch(product):
        raise ValueError(f"product {product!r} is not a GLM L2 product name like {LCFA_PRODUCT!r}")
