"""Decode one packed variable of an LCFA granule: pure functions of its raw values and its attributes.

Every variable is decoded from its own ``_Unsigned``, ``scale_factor``, ``add_offset``, ``_FillValue`` and ``units``
instead of netCDF4's automatic decoding, because the archive holds three time encodings and default decoding gets two
of them wrong (see ``docs/glm_format.md`` and glmtools ``_check_and_fix_missing_unsigned_time``). A function that
repairs an encoding says what it changed; units that are not understood raise instead of being guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

AREA_CEILING_M2 = 1.0e10
"""Largest area the packing can hold, about 10,000 km² in both the km² and m² eras (glmtools issue #69)."""

SATURATION_FRACTION = 0.99
"""Areas within 1 % of :data:`AREA_CEILING_M2` are treated as clipped at the ceiling."""

QUALITY_FLAG_MISSING = -1
"""``quality_flag`` value written where the file holds the fill value."""

_ENERGY_UNITS = {"j", "joule", "joules"}
_AREA_UNITS_TO_M2 = {"m2": 1.0, "m^2": 1.0, "m**2": 1.0, "km2": 1.0e6, "km^2": 1.0e6, "km**2": 1.0e6}
_TIME_UNITS_TO_S = {"seconds": 1.0, "milliseconds": 1.0e-3}
_TIME_UNITS_RE = re.compile(r"\s*(?P<unit>[A-Za-z]+)\s+since\s+(?P<epoch>.+?)\s*")
_UTC_TEXT_RE = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[T ](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?"
    r"\s*(?:Z|UTC|\+00:?00)?"
)


PACKING = ("_FillValue", "_Unsigned", "scale_factor", "add_offset")
"""The attributes of a packed number: fill, signedness, scale and offset."""

_Decoder = TypeVar("_Decoder", bound=Callable)


def reads(*attributes: str) -> Callable[[_Decoder], _Decoder]:
    """Declare the attributes a decoding function reads (as its ``attributes``), so a reader fetches those and no
    others: HDF5 opens attributes one at a time, and a granule has about a hundred the decoding never looks at."""

    def declare(decoder: _Decoder) -> _Decoder:
        decoder.attributes = attributes
        return decoder

    return declare


def reinterpret_unsigned(raw: np.ndarray) -> np.ndarray:
    """View signed integers as the unsigned type of the same width (what ``_Unsigned="true"`` asks for)."""
    if raw.dtype.kind != "i":
        return raw
    return raw.view(raw.dtype.str.replace("i", "u"))


def is_unsigned(attrs: dict[str, Any]) -> bool:
    """Whether the ``_Unsigned`` attribute is present and says true."""
    return str(attrs.get("_Unsigned", "false")).strip().lower() == "true"


def fill_mask(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """True where the raw (still packed) value equals ``_FillValue``, compared in the stored type."""
    if "_FillValue" not in attrs:
        return np.zeros(raw.shape, dtype=bool)
    fill = np.asarray(attrs["_FillValue"]).astype(raw.dtype)
    return raw == fill


@reads(*PACKING)
def unpack(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Decode a packed variable to float64: unsigned view, ``raw * scale_factor + add_offset``, NaN at fill."""
    missing = fill_mask(raw, attrs)
    values = reinterpret_unsigned(raw) if is_unsigned(attrs) else raw
    scale = float(np.asarray(attrs.get("scale_factor", 1.0)))
    offset = float(np.asarray(attrs.get("add_offset", 0.0)))
    decoded = values.astype(np.float64) * scale + offset
    decoded[missing] = np.nan
    return decoded


@reads("_Unsigned")
def decode_ids(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Decode an id variable to int64, honouring ``_Unsigned`` (flash ids are uint16 stored as int16); the table
    narrows it to the column's width."""
    values = reinterpret_unsigned(raw) if is_unsigned(attrs) else raw
    return values.astype(np.int64)


@reads("_FillValue", "_Unsigned")
def decode_quality_flag(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Decode a quality flag to int16, writing :data:`QUALITY_FLAG_MISSING` where the file holds the fill value."""
    flags = decode_ids(raw, attrs)
    flags[fill_mask(raw, attrs)] = QUALITY_FLAG_MISSING
    return flags.astype(np.int16)


def parse_utc_text(text: str) -> datetime:
    """Parse ``2018-07-02T04:33:00.0Z`` or ``2018-07-02 04:33:00.000`` to a naive UTC datetime.

    Why: ``datetime.fromisoformat`` only accepts 3 or 6 fraction digits before Python 3.11, and GLM writes one.
    """
    match = _UTC_TEXT_RE.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"cannot read {text!r} as a UTC date and time")
    moment = datetime.strptime(f"{match['date']} {match['time']}", "%Y-%m-%d %H:%M:%S")
    frac = match["frac"] or "0"
    return moment + timedelta(microseconds=round(int(frac) * 10 ** (6 - len(frac))))


def parse_time_units(units: Any) -> tuple[float, datetime]:
    """Split ``"<unit> since <epoch>"`` into seconds per unit and the epoch.

    Raises
    ------
    ValueError
        If the unit is not ``seconds`` or ``milliseconds`` or the epoch is unreadable.
    """
    if units is None:
        raise ValueError("unknown time units None (expected 'seconds since ...' or 'milliseconds since ...')")
    return _parse_time_units_text(str(units))


@lru_cache(maxsize=256)
def _parse_time_units_text(units: str) -> tuple[float, datetime]:
    """:func:`parse_time_units` of a text, remembered: a granule's five time variables share one units text."""
    match = _TIME_UNITS_RE.fullmatch(units)
    if match is None or match["unit"].lower() not in _TIME_UNITS_TO_S:
        raise ValueError(f"unknown time units {units!r} (expected 'seconds since ...' or 'milliseconds since ...')")
    return _TIME_UNITS_TO_S[match["unit"].lower()], parse_utc_text(match["epoch"])


@reads(*PACKING, "units")
def time_offset_seconds(raw: np.ndarray, attrs: dict[str, Any]) -> tuple[datetime, np.ndarray, str | None]:
    """Decode a packed time offset to seconds after its epoch, for all three encodings in the archive.

    Rule (``docs/glm_format.md``, "Time: the trap"): ``milliseconds`` units mean a signed integer, whatever
    ``_Unsigned`` says (some mid-2018 files carry a stray one); ``seconds`` units mean an unsigned integer, even when
    ``_Unsigned`` is missing (late 2018).

    Returns
    -------
    epoch : datetime
        From the variable's ``units``.
    seconds : ndarray of float64
        Offsets from ``epoch``; NaN at fill.
    repair : str or None
        What was done differently from default decoding, if anything.
    """
    seconds_per_unit, epoch = parse_time_units(attrs.get("units"))
    missing = fill_mask(raw, attrs)
    repair = None
    if seconds_per_unit < 1.0:
        values = raw
        if is_unsigned(attrs) and raw.dtype.kind == "i":
            repair = "ignored stray _Unsigned: millisecond offsets are signed"
    else:
        values = reinterpret_unsigned(raw)
        if not is_unsigned(attrs) and raw.dtype.kind == "i":
            repair = "read as unsigned although _Unsigned is missing"
    scale = float(np.asarray(attrs.get("scale_factor", 1.0)))
    offset = float(np.asarray(attrs.get("add_offset", 0.0)))
    seconds = (values.astype(np.float64) * scale + offset) * seconds_per_unit
    seconds[missing] = np.nan
    return epoch, seconds, repair


def to_datetime64(epoch: datetime, seconds: np.ndarray) -> np.ndarray:
    """Add float offsets in seconds to an epoch, giving datetime64[ns] (NaT where NaN)."""
    times = np.full(seconds.shape, np.datetime64("NaT", "ns"))
    finite = np.isfinite(seconds)
    nanos = np.round(seconds[finite] * 1e9).astype(np.int64)
    times[finite] = np.datetime64(epoch, "ns") + nanos.astype("timedelta64[ns]")
    return times


@reads(*PACKING, "units")
def energy_in_joules(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Decode an energy variable, refusing units other than joules."""
    units = str(attrs.get("units", "")).strip()
    if units.lower() not in _ENERGY_UNITS:
        raise ValueError(f"unknown energy units {attrs.get('units')!r} (expected 'J')")
    return unpack(raw, attrs)


@reads(*PACKING, "units")
def area_in_m2(raw: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """Decode an area variable to m²; older files say ``km2``, newer ones ``m2``."""
    units = str(attrs.get("units", "")).strip().lower()
    if units not in _AREA_UNITS_TO_M2:
        raise ValueError(f"unknown area units {attrs.get('units')!r} (expected 'm2' or 'km2')")
    return unpack(raw, attrs) * _AREA_UNITS_TO_M2[units]


def area_at_ceiling(area_m2: np.ndarray) -> np.ndarray:
    """Areas that cannot be trusted on their own: fill (NaN), exactly zero, or at the ~10,000 km² ceiling."""
    return np.isnan(area_m2) | (area_m2 == 0.0) | (area_m2 >= SATURATION_FRACTION * AREA_CEILING_M2)
