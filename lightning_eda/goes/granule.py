"""Decode one GOES GLM Level-2 LCFA granule into flash, group and event tables.

Every packed variable is decoded from its own attributes by the small functions of :mod:`lightning_eda.goes.variables`
(netCDF4's automatic decoding gets two of the archive's three time encodings wrong); this module reads the file, checks
the areas against the hierarchy (a flash or group smaller than its parts wrapped around), and builds the tables with
the columns and widths of the store's :data:`GLM_SCHEMAS`.

All timestamps are naive UTC: ``datetime`` in :attr:`Granule.meta`, ``datetime64[ns]`` in the tables.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lightning_eda.files import atomic_write
from lightning_eda.geo import wrap_longitude
from lightning_eda.goes.layout import parse_granule_name
from lightning_eda.goes.variables import (
    area_at_ceiling,
    area_in_m2,
    decode_ids,
    decode_quality_flag,
    energy_in_joules,
    fill_mask,
    parse_time_units,
    parse_utc_text,
    time_offset_seconds,
    to_datetime64,
    unpack,
)
from lightning_eda.store.schemas import GLM_SCHEMAS

logger = logging.getLogger(__name__)

MIN_PIXEL_AREA_M2 = 50.0e6
"""A floor under the smallest GLM pixel footprint (about 64 km² at nadir in real granules).

A group is the lit pixels of one frame, so its area is at least its event count times this; less means it wrapped.
"""


def _decoded_dtypes(table: str) -> dict[str, str]:
    """The decoder's columns: the store table's (:data:`GLM_SCHEMAS`) but ``source_file``, which the ingest adds;
    times in ns, which the store truncates to µs."""
    fields = [field for field in GLM_SCHEMAS[table] if field.name != "source_file"]
    ns = np.dtype("datetime64[ns]")
    return {f.name: (ns if pa.types.is_timestamp(f.type) else np.dtype(f.type.to_pandas_dtype())).name for f in fields}


FLASH_COLUMNS = _decoded_dtypes("glm_flash")
GROUP_COLUMNS = _decoded_dtypes("glm_group")
EVENT_COLUMNS = _decoded_dtypes("glm_event")

_DIMS = {"flashes": "number_of_flashes", "groups": "number_of_groups", "events": "number_of_events"}
_COUNT_SCALARS = {"flashes": "flash_count", "groups": "group_count", "events": "event_count"}


class GranuleError(ValueError):
    """A granule that cannot be decoded; the message names the file and what is wrong."""


@dataclass
class Granule:
    """One decoded granule.

    Attributes
    ----------
    meta : dict
        ``source_file``, ``platform``, ``orbital_slot``, ``dataset_name``, ``time_start``, ``time_end``,
        ``product_time`` (naive UTC datetimes or None), ``n_flashes``, ``n_groups``, ``n_events`` (dimension lengths),
        ``declared_flashes``, ``declared_groups``, ``declared_events`` (the ``*_count`` scalars, None when absent or
        fill) and ``repairs`` (one line per variable whose encoding needed a fix).
    flashes, groups, events : pandas.DataFrame
        Columns and dtypes of :data:`FLASH_COLUMNS`, :data:`GROUP_COLUMNS`, :data:`EVENT_COLUMNS`.
    """

    meta: dict[str, Any]
    flashes: pd.DataFrame
    groups: pd.DataFrame
    events: pd.DataFrame


Columns = dict[str, np.ndarray]
"""One decoded table: column name to a NumPy array of the column's dtype, in the declared column order."""


@dataclass
class GranuleArrays:
    """One decoded granule as NumPy columns, what the ingest turns into Arrow without a pandas detour.

    Attributes
    ----------
    meta : dict
        As :attr:`Granule.meta`.
    flashes, groups, events : dict of str to ndarray
        The columns of :data:`FLASH_COLUMNS`, :data:`GROUP_COLUMNS`, :data:`EVENT_COLUMNS`, in that order and dtype.
    """

    meta: dict[str, Any]
    flashes: Columns
    groups: Columns
    events: Columns

    def frames(self) -> Granule:
        """The same tables as pandas DataFrames."""
        return Granule(
            meta=self.meta,
            flashes=pd.DataFrame(self.flashes),
            groups=pd.DataFrame(self.groups),
            events=pd.DataFrame(self.events),
        )


# --- reading the file ----------------------------------------------------------------------------------------------


class _Source:
    """An open granule read through HDF5 (a NetCDF-4 file is one), plus the file name, so every error can say which
    file and variable failed.

    Why h5py and not netCDF4: netCDF4 reads the whole file's metadata when it opens it (6 ms of a real granule's
    20 ms bare decode); HDF5 reads only the objects asked for, and the packed integers come as stored. Only the
    NetCDF conventions the decoder relies on are reproduced: attributes as netCDF4 returns them
    (:func:`_attribute_value`) and a dimension's length (:meth:`dimension`).
    """

    def __init__(self, file: h5py.File, file_name: str) -> None:
        self.file = file
        self.file_name = file_name
        self.repairs: list[str] = []
        self._lengths: dict[str, tuple[int | None, str]] = {}  # and what set it

    def error(self, message: str) -> GranuleError:
        return GranuleError(f"{self.file_name}: {message}")

    def _dataset(self, name: str) -> h5py.h5d.DatasetID | None:
        try:
            return h5py.h5d.open(self.file.id, name.encode())
        except KeyError:  # no such object, or a group under that name: not a variable
            return None

    def dimension(self, name: str) -> int:
        """A dimension's length: the dimension scale's for a fixed one; for an unlimited one (the real product's
        record dimensions), the length of the variables along it, which :meth:`raw` holds equal."""
        if name not in self._lengths:
            scale = self._dataset(name)
            if scale is None:
                raise self.error(f"missing dimension {name!r}")
            unlimited = scale.get_space().get_simple_extent_dims(maxdims=True)[0] == h5py.h5s.UNLIMITED
            self._lengths[name] = (None if unlimited else scale.shape[0], name)
        length = self._lengths[name][0]
        return 0 if length is None else length

    def raw(self, name: str, dimension: str, attributes: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
        """The stored values of a required 1-D variable (packed, as stored) and those of its ``attributes`` it has."""
        var = self._dataset(name)
        if var is None:
            raise self.error(f"missing required variable {name!r}")
        shape = var.shape
        if len(shape) != 1:
            raise self.error(f"variable {name!r} has shape {shape}, expected one dimension ({dimension!r})")
        length = shape[0]
        self.dimension(dimension)
        expected, owner = self._lengths[dimension]
        if expected is None:  # the first variable along an unlimited dimension sets its length
            expected, owner = self._lengths[dimension] = (length, name)
        if length != expected:
            raise self.error(f"variable {name!r} holds {length} values, {owner!r} {expected} along {dimension!r}")
        values = np.empty(shape, dtype=var.dtype)
        if length:
            var.read(h5py.h5s.ALL, h5py.h5s.ALL, values)
        return values, _attributes(var, attributes)

    def decode(self, name: str, dimension: str, decoder) -> np.ndarray:
        """Apply one decoding function (to the attributes it :func:`~lightning_eda.goes.variables.reads`), naming the
        file and variable if it refuses them."""
        raw, attrs = self.raw(name, dimension, decoder.attributes)
        try:
            return decoder(raw, attrs)
        except ValueError as exc:
            raise self.error(f"variable {name!r}: {exc}") from exc

    def times(self, name: str, dimension: str) -> np.ndarray:
        """Decode a time offset variable to datetime64[ns], recording any repair of its encoding."""
        epoch, seconds, repair = self.decode(name, dimension, time_offset_seconds)
        if repair is not None:
            self.repairs.append(f"{name}: {repair}")
            logger.debug("%s: %s: %s", self.file_name, name, repair)
        return to_datetime64(epoch, seconds)

    def lon(self, name: str, dimension: str) -> np.ndarray:
        return wrap_longitude(self.decode(name, dimension, unpack))

    def global_attr(self, name: str) -> Any:
        return _attributes(self.file.id, (name,)).get(name)

    def scalar(self, name: str) -> tuple[Any, dict[str, Any]]:
        """A scalar variable's stored value (None when absent or fill) and its decoding attributes."""
        var = self._dataset(name)
        if var is None:
            return None, {}
        attrs = _attributes(var, ("_FillValue", "units"))
        if var.shape is None or int(np.prod(var.shape)) != 1:
            return None, attrs
        raw = np.empty(var.shape, dtype=var.dtype)
        var.read(h5py.h5s.ALL, h5py.h5s.ALL, raw)
        if fill_mask(raw, attrs).any():
            return None, attrs
        return raw.reshape(()).item(), attrs


def _attributes(location, names: tuple[str, ...]) -> dict[str, Any]:
    """The named attributes an HDF5 object has, as netCDF4 would return them."""
    found = {}
    for name in names:
        key = name.encode()
        if h5py.h5a.exists(location, key):
            found[name] = _attribute_value(h5py.h5a.open(location, key))
    return found


def _attribute_value(attribute: h5py.h5a.AttrID) -> Any:
    """Text as ``str``, one number as a NumPy scalar of the stored type, several as an array (netCDF4's forms)."""
    dtype, shape = attribute.dtype, attribute.shape
    text = dtype.kind in "SO"
    if shape is None:  # HDF5's null dataspace: how the NetCDF library stores an empty attribute
        return "" if text else np.empty(0, dtype=dtype)
    values = np.empty(shape, dtype=dtype)
    attribute.read(values)
    flat = values.reshape(-1)
    if text:
        strings = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
        return strings[0] if len(strings) == 1 else strings
    return flat[0] if flat.size == 1 else values


def read_granule(path: str | os.PathLike) -> Granule:
    """Read one LCFA granule into flash, group and event tables.

    Parameters
    ----------
    path : path-like
        A local NetCDF-4 file.

    Returns
    -------
    Granule
        Empty tables with the same columns when the file holds no records.

    Raises
    ------
    GranuleError
        If the file cannot be opened or read, a required variable or dimension is missing, or units are unknown.
    """
    return read_granule_arrays(path).frames()


def read_granule_arrays(path: str | os.PathLike) -> GranuleArrays:
    """:func:`read_granule`'s tables as NumPy columns (what the ingest needs; building DataFrames costs a copy)."""
    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise GranuleError(f"{path.name}: cannot open as NetCDF-4: {exc}") from exc
    with file:
        source = _Source(file, path.name)
        try:
            events = _read_events(source)
            groups = _read_groups(source, events)
            flashes = _read_flashes(source, groups)
            meta = _read_meta(source)
        except (OSError, RuntimeError) as exc:
            raise GranuleError(f"{path.name}: read failed: {exc}") from exc
    return GranuleArrays(meta=meta, flashes=flashes, groups=groups, events=events)


def _read_events(source: _Source) -> Columns:
    dim = _DIMS["events"]
    source.dimension(dim)
    columns = {
        "event_id": source.decode("event_id", dim, decode_ids),
        "parent_group_id": source.decode("event_parent_group_id", dim, decode_ids),
        "time": source.times("event_time_offset", dim),
        "lat": source.decode("event_lat", dim, unpack),
        "lon": source.lon("event_lon", dim),
        "energy": source.decode("event_energy", dim, energy_in_joules),
    }
    return _typed(source, columns, EVENT_COLUMNS)


def _read_groups(source: _Source, events: Columns) -> Columns:
    dim = _DIMS["groups"]
    source.dimension(dim)
    group_id = source.decode("group_id", dim, decode_ids)
    area = source.decode("group_area", dim, area_in_m2)
    columns = {
        "group_id": group_id,
        "parent_flash_id": source.decode("group_parent_flash_id", dim, decode_ids),
        "time": source.times("group_time_offset", dim),
        "lat": source.decode("group_lat", dim, unpack),
        "lon": source.lon("group_lon", dim),
        "energy": source.decode("group_energy", dim, energy_in_joules),
        "area": area,
        "area_saturated": area_at_ceiling(area) | _group_area_wrapped(group_id, area, events),
        "quality_flag": source.decode("group_quality_flag", dim, decode_quality_flag),
    }
    return _typed(source, columns, GROUP_COLUMNS)


def _read_flashes(source: _Source, groups: Columns) -> Columns:
    dim = _DIMS["flashes"]
    source.dimension(dim)
    flash_id = source.decode("flash_id", dim, decode_ids)
    area = source.decode("flash_area", dim, area_in_m2)
    columns = {
        "flash_id": flash_id,
        "time_start": source.times("flash_time_offset_of_first_event", dim),
        "time_end": source.times("flash_time_offset_of_last_event", dim),
        "lat": source.decode("flash_lat", dim, unpack),
        "lon": source.lon("flash_lon", dim),
        "energy": source.decode("flash_energy", dim, energy_in_joules),
        "area": area,
        "area_saturated": area_at_ceiling(area) | _flash_area_wrapped(flash_id, area, groups),
        "quality_flag": source.decode("flash_quality_flag", dim, decode_quality_flag),
    }
    return _typed(source, columns, FLASH_COLUMNS)


def _parent_slots(ids: np.ndarray, parent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each child, the slot of its parent among the distinct ``ids`` (and whether it has one); ``inverse`` maps
    each id back to its slot. NumPy rather than a pandas groupby: this runs for every granule of every hour."""
    distinct, inverse = np.unique(ids, return_inverse=True)
    slot = np.searchsorted(distinct, parent_ids)
    found = slot < len(distinct)
    found[found] = distinct[slot[found]] == parent_ids[found]
    return slot, found, inverse.reshape(-1)


def _group_area_wrapped(group_id: np.ndarray, area: np.ndarray, events: Columns) -> np.ndarray:
    """Groups smaller than their lit pixels could cover: the packed area overflowed and wrapped around."""
    slot, found, inverse = _parent_slots(group_id, events["parent_group_id"])
    n_events = np.bincount(slot[found], minlength=len(np.unique(group_id)))[inverse] if len(group_id) else 0
    return area < n_events * MIN_PIXEL_AREA_M2


def _flash_area_wrapped(flash_id: np.ndarray, area: np.ndarray, groups: Columns) -> np.ndarray:
    """Flashes smaller than one of their own groups, or holding a saturated group: the flash area overflowed.

    Why: a flash's footprint is the union of its groups' footprints, so it can never be smaller than any of them.
    """
    if not len(flash_id):
        return np.zeros(0, dtype=bool)
    slot, found, inverse = _parent_slots(flash_id, groups["parent_flash_id"])
    n_distinct = int(inverse.max()) + 1
    max_child = np.full(n_distinct, np.nan)
    np.fmax.at(max_child, slot[found], groups["area"].astype(np.float64, copy=False)[found])  # fmax skips NaN areas
    child_saturated = np.zeros(n_distinct, dtype=bool)
    np.logical_or.at(child_saturated, slot[found], groups["area_saturated"].astype(bool, copy=False)[found])
    with np.errstate(invalid="ignore"):
        smaller = area < max_child[inverse] * (1.0 - 1e-6)
    return smaller | child_saturated[inverse]


def _typed(source: _Source, columns: Columns, dtypes: dict[str, str]) -> Columns:
    """Exactly the declared columns, in order, with the declared dtypes, also when the table has no rows.

    An id too large for its column raises instead of wrapping: the widths are the product's (uint16 flash ids).
    """
    typed = {}
    for name, dtype in dtypes.items():
        values = np.asarray(columns[name])
        typed[name] = values.astype(dtype, copy=False)
        if typed[name].dtype.kind in "iu" and not np.array_equal(typed[name], values):
            raise source.error(f"{name} holds values outside {dtype}, the store's type for it")
    return typed


def _read_meta(source: _Source) -> dict[str, Any]:
    """Granule-level facts; row counts come from dimensions because ``*_count`` scalars can disagree."""
    try:
        from_name = parse_granule_name(source.file_name)
    except ValueError:
        from_name = None
    meta = {
        "source_file": source.file_name,
        "platform": source.global_attr("platform_ID") or (from_name.platform if from_name else None),
        "orbital_slot": source.global_attr("orbital_slot"),
        "dataset_name": source.global_attr("dataset_name"),
        "time_start": _coverage_time(source, "time_coverage_start", from_name.start if from_name else None),
        "time_end": _coverage_time(source, "time_coverage_end", from_name.end if from_name else None),
        "product_time": _product_time(source),
    }
    for table, dim in _DIMS.items():
        meta[f"n_{table}"] = source.dimension(dim)
    for table, scalar in _COUNT_SCALARS.items():
        declared, _ = source.scalar(scalar)
        meta[f"declared_{table}"] = None if declared is None else int(declared)
    meta["repairs"] = list(source.repairs)
    return meta


def _coverage_time(source: _Source, attr: str, fallback: datetime | None) -> datetime | None:
    """A ``time_coverage_*`` global attribute, or the file name's time when the attribute is missing or unreadable."""
    text = source.global_attr(attr)
    if text is None:
        return fallback
    try:
        return parse_utc_text(text)
    except ValueError:
        logger.warning("%s: unreadable %s=%r, using the file name", source.file_name, attr, text)
        return fallback


def _product_time(source: _Source) -> datetime | None:
    """The ``product_time`` scalar as a datetime, decoded with its own ``units``."""
    value, attrs = source.scalar("product_time")
    if value is None:
        return None
    try:
        seconds_per_unit, epoch = parse_time_units(attrs.get("units"))
    except ValueError as exc:
        raise source.error(f"variable 'product_time': {exc}") from exc
    return epoch + timedelta(seconds=float(value) * seconds_per_unit)


# --- CSV output ----------------------------------------------------------------------------------------------------


def granule_to_csvs(granule: Granule, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write the three tables as ``<stem>_flashes.csv``, ``<stem>_groups.csv``, ``<stem>_events.csv``.

    Each file gets a leading ``source_file`` column and ISO 8601 timestamps (naive UTC, microseconds, a space
    between date and time), and appears atomically: it is written under a temporary name in ``out_dir`` and
    renamed, so readers never see half a file.

    Returns
    -------
    dict
        ``{"flashes": path, "groups": path, "events": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source_file = granule.meta["source_file"]
    stem = Path(source_file).stem
    tables = {"flashes": granule.flashes, "groups": granule.groups, "events": granule.events}
    paths = {}
    for table, frame in tables.items():
        path = out_dir / f"{stem}_{table}.csv"
        _write_csv_atomically(frame.assign(source_file=source_file)[["source_file", *frame.columns]], path)
        paths[table] = path
    return paths


def _write_csv_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temporary file next to ``path`` and rename it over ``path``.

    Arrow's CSV writer is about 20x faster than pandas' for an hour's millions of events, writes floats in their
    shortest round-trip form (values survive the CSV exactly) and missing values as empty fields.
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            # Arrow writes microsecond timestamps as "2018-07-02 04:33:39.690000" (ISO 8601 with a space, as
            # RFC 3339 allows); DuckDB and pandas read it back exactly. Formatting a "T" would triple the cost.
            table = table.set_column(index, field.name, table.column(index).cast(pa.timestamp("us"), safe=False))

    def write(handle) -> None:
        # Arrow always quotes header names; our column names are plain identifiers, so write the header ourselves.
        handle.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="needed"))

    atomic_write(path, write)
