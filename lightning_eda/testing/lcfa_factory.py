"""Write small GLM L2 LCFA granules with known values, so tests never depend on downloaded files.

The files copy the real product's layout: the same dimensions, variable names, storage types and packing
(int16/int32 with ``_Unsigned``, ``scale_factor``, ``add_offset``, ``_FillValue``), the time ``units`` of the three
encodings described in ``docs/glm_format.md``, the ``*_count`` and ``product_time`` scalars and the global
attributes. Tables are given in physical units (seconds after the granule start, degrees, J, m²) and packed here;
``NaN`` energy or area and a quality flag of -1 are written as the fill value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from lightning_eda.goes.layout import format_granule_name

ERAS = ("2018-ms", "2018-missing-unsigned", "2019+")
AREA_UNITS = ("m2", "km2")
DEFAULT_START = datetime(2019, 6, 1, 12, 0, 0)
PRODUCT_TIME_EPOCH = datetime(2000, 1, 1, 12, 0, 0)

_F = np.float32
_ENERGY_2018 = {"scale_factor": _F(1.52597e-15), "add_offset": _F(0.0)}
_ENERGY_2019 = {
    "event": {"scale_factor": _F(1.9024e-17), "add_offset": _F(2.8515e-16)},
    "group": {"scale_factor": _F(9.9988e-17), "add_offset": _F(2.8515e-16)},
    "flash": {"scale_factor": _F(9.99996e-16), "add_offset": _F(2.8515e-16)},
}
_AREA = {
    "km2": {"scale_factor": _F(0.15163901), "add_offset": _F(63.095734), "units": "km2"},
    "m2": {"scale_factor": _F(152601.86), "add_offset": _F(0.0), "units": "m2"},
}
_LAT = {"scale_factor": _F(0.00203128), "add_offset": _F(-66.56)}
_LON_OFFSET = {"East": _F(-141.56), "West": _F(-203.56)}
_WEST_PLATFORMS = {"G17", "G18"}

_DIMS = {"flash": "number_of_flashes", "group": "number_of_groups", "event": "number_of_events"}
_TABLES = {"flash": "flashes", "group": "groups", "event": "events"}
_FILLED = {
    "event_energy",
    "group_energy",
    "flash_energy",
    "group_area",
    "flash_area",
    "group_quality_flag",
    "flash_quality_flag",
}

_COLUMNS = {
    "flash": ("flash_id", "time_start", "time_end", "lat", "lon", "energy", "area", "quality_flag"),
    "group": ("group_id", "parent_flash_id", "time", "lat", "lon", "energy", "area", "quality_flag"),
    "event": ("event_id", "parent_group_id", "time", "lat", "lon", "energy"),
}


def sample_tables() -> dict[str, dict[str, list]]:
    """A small consistent hierarchy with known values: 2 flashes, 3 groups, 5 events.

    Ids are chosen above the signed range (flash ids > 32767, group and event ids > 2**31) so a decoder that
    ignores ``_Unsigned`` fails; times include a flash starting 1.5 s before the granule; one flash has fill energy
    and area.
    """
    g1, g2, g3 = 3_000_000_001, 3_000_000_002, 3_000_000_003
    return {
        "flashes": {
            "flash_id": [40_000, 65_000],
            "time_start": [-1.5, 3.25],
            "time_end": [0.5, 19.75],
            "lat": [30.5, -12.25],
            "lon": [-95.0, -60.5],
            "energy": [2.0e-13, np.nan],
            "area": [3.0e8, np.nan],
            "quality_flag": [0, 3],
        },
        "groups": {
            "group_id": [g1, g2, g3],
            "parent_flash_id": [40_000, 40_000, 65_000],
            "time": [-1.5, 0.5, 3.25],
            "lat": [30.51, 30.49, -12.26],
            "lon": [-95.01, -94.99, -60.51],
            "energy": [5.0e-15, 6.0e-15, 7.0e-15],
            "area": [1.5e8, 2.0e8, 1.4e8],
            "quality_flag": [0, 1, 0],
        },
        "events": {
            "event_id": [4_000_000_001, 4_000_000_002, 4_000_000_003, 4_000_000_004, 4_000_000_005],
            "parent_group_id": [g1, g1, g2, g3, g3],
            "time": [-1.5, -1.5, 0.5, 3.25, 3.25],
            "lat": [30.5, 30.52, 30.49, -12.25, -12.27],
            "lon": [-95.0, -95.02, -94.99, -60.5, -60.52],
            "energy": [2.0e-15, 3.0e-15, 6.0e-15, 3.0e-15, 4.0e-15],
        },
    }


def empty_tables() -> dict[str, dict[str, list]]:
    """Tables with no rows, for zero-record granules."""
    return {table: {column: [] for column in _COLUMNS[level]} for level, table in _TABLES.items()}


def lcfa_name(platform: str = "G16", start: datetime = DEFAULT_START, seconds: float = 20.0) -> str:
    """A valid granule file name for a granule of ``seconds`` starting at ``start``, created 2 s after its end."""
    end = start + timedelta(seconds=seconds)
    return format_granule_name(platform, start, end, end + timedelta(seconds=2))


def time_encoding(era: str, start: datetime, *, stray_unsigned: bool = False) -> dict[str, Any]:
    """Attributes of every ``*_time_offset`` variable in one era (docs/glm_format.md, "Time: the trap")."""
    epoch = f"{start:%Y-%m-%d %H:%M:%S}.{start.microsecond // 1000:03d}"
    if era == "2018-ms":
        attrs = {"scale_factor": _F(2.0), "add_offset": _F(0.0), "units": f"milliseconds since {epoch}"}
        return {"_Unsigned": "true", **attrs} if stray_unsigned else attrs
    attrs = {"scale_factor": _F(0.0003814756), "add_offset": _F(-5.0), "units": f"seconds since {epoch}"}
    if era == "2018-missing-unsigned":
        return attrs
    if era == "2019+":
        return {"_Unsigned": "true", **attrs}
    raise ValueError(f"era {era!r} is not one of {ERAS}")


def energy_encoding(era: str, level: str) -> dict[str, Any]:
    """Packing of ``<level>_energy`` (level: flash, group, event); the 2018 files share one scale."""
    packing = _ENERGY_2018 if era == "2018-ms" else _ENERGY_2019[level]
    return {"_Unsigned": "true", **packing, "units": "J"}


def area_encoding(area_units: str) -> dict[str, Any]:
    """Packing of ``flash_area`` and ``group_area``: km² before 2019, m² after."""
    return {"_Unsigned": "true", **_AREA[area_units]}


def event_lon_encoding(platform: str) -> dict[str, Any]:
    """Packing of ``event_lon``; GOES-West's offset puts decoded longitudes below -180."""
    side = "West" if platform in _WEST_PLATFORMS else "East"
    return {
        "_Unsigned": "true",
        "scale_factor": _LAT["scale_factor"],
        "add_offset": _LON_OFFSET[side],
        "units": "degrees_east",
    }


def write_lcfa(
    path: str | Path,
    *,
    flashes: Mapping[str, Sequence] | None = None,
    groups: Mapping[str, Sequence] | None = None,
    events: Mapping[str, Sequence] | None = None,
    era: str = "2019+",
    area_units: str = "m2",
    platform: str = "G16",
    orbital_slot: str | None = None,
    start: datetime = DEFAULT_START,
    seconds: float = 20.0,
    stray_unsigned_time: bool = False,
    global_attributes: bool | Mapping[str, Any] = True,
    declared_counts: Mapping[str, int | None] | None = None,
    omit: Iterable[str] = (),
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
    raw: Mapping[str, Sequence[int]] | None = None,
) -> Path:
    """Write an LCFA-format NetCDF-4 granule with known contents.

    Parameters
    ----------
    path : path-like
        The file to create.
    flashes, groups, events : mapping of column to values, optional
        Physical values (see :func:`sample_tables` for the columns); each defaults to its :func:`sample_tables`
        table.
    era : {"2019+", "2018-ms", "2018-missing-unsigned"}
        Time encoding, and the energy packing of that era.
    area_units : {"m2", "km2"}
        Units and packing of the area variables (inputs are always in m²).
    platform, orbital_slot : str
        ``platform_ID`` and ``orbital_slot``; the slot defaults from the platform (G17/G18 West, others East).
    start, seconds : datetime, float
        Granule start (also the time epoch) and length.
    stray_unsigned_time : bool
        Add ``_Unsigned="true"`` to millisecond time variables, as some mid-2018 files do.
    global_attributes : bool or mapping
        False writes none; a mapping overrides or (with None) removes individual attributes.
    declared_counts : mapping, optional
        ``{"flashes": n, ...}`` values of the ``*_count`` scalars (None writes the fill value); default the row counts.
    omit : iterable of str
        Variables not to write.
    attrs : mapping, optional
        ``{variable: {attribute: value}}`` overrides; a None value removes the attribute.
    raw : mapping, optional
        ``{variable: stored values}`` written as given, bypassing packing (for fills, wraps and out-of-range values).

    Returns
    -------
    Path
    """
    path = Path(path)
    given = {"flash": flashes, "group": groups, "event": events}
    samples = sample_tables()
    columns = {
        level: _columns(table if table is not None else samples[_TABLES[level]], level)
        for level, table in given.items()
    }
    specs = _variable_specs(columns, era, area_units, platform, start, stray_unsigned_time)
    _apply_overrides(specs, attrs or {}, raw or {}, set(omit))
    slot = orbital_slot or ("GOES-West" if platform in _WEST_PLATFORMS else "GOES-East")
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        for level, dim in _DIMS.items():
            ds.createDimension(dim, _row_count(columns[level], level))
        ds.createDimension("number_of_time_bounds", 2)
        for name, (dtype, dims, var_attrs, values) in specs.items():
            _write_variable(ds, name, dtype, dims, var_attrs, values)
        _write_scalars(ds, columns, start, seconds, declared_counts, set(omit))
        _write_global_attributes(ds, path.name, platform, slot, start, seconds, global_attributes)
    return path


def write_empty_lcfa(path: str | Path, *, global_attributes: bool | Mapping[str, Any] = False, **kwargs) -> Path:
    """A zero-record granule, by default with no global attributes at all (seen in the archive)."""
    tables = empty_tables()
    return write_lcfa(
        path,
        flashes=tables["flashes"],
        groups=tables["groups"],
        events=tables["events"],
        global_attributes=global_attributes,
        **kwargs,
    )


def _columns(table: Mapping[str, Sequence], level: str) -> dict[str, np.ndarray]:
    """Check a table has every column and equal lengths."""
    missing = set(_COLUMNS[level]) - set(table)
    if missing:
        raise ValueError(f"{level} table lacks columns {sorted(missing)}")
    arrays = {column: np.asarray(table[column]) for column in _COLUMNS[level]}
    if len({len(values) for values in arrays.values()}) > 1:
        raise ValueError(f"{level} table columns have different lengths")
    return arrays


def pack_unsigned(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Pack physical values into int16 storage meant to be read as uint16; NaN becomes the fill value -1."""
    values = np.asarray(values, dtype=np.float64)
    packed = np.full(values.shape, 65535, dtype=np.int64)
    finite = np.isfinite(values)
    packed[finite] = np.round((values[finite] - float(offset)) / float(scale))
    if np.any((packed[finite] < 0) | (packed[finite] > 65534)):
        raise ValueError(f"values {values[finite]} do not fit uint16 with scale {scale} and offset {offset}")
    return packed.astype(np.uint16).view(np.int16)


def pack_signed_ms(seconds: np.ndarray, scale_ms: float) -> np.ndarray:
    """Pack offsets in seconds as signed int16 milliseconds (the 2018 encoding)."""
    packed = np.round(np.asarray(seconds, dtype=np.float64) * 1000.0 / float(scale_ms)).astype(np.int64)
    if np.any(np.abs(packed) > 32767):
        raise ValueError(f"time offsets {seconds} do not fit int16 milliseconds with scale {scale_ms}")
    return packed.astype(np.int16)


def pack_event_lon(lon: np.ndarray, encoding: dict[str, Any]) -> np.ndarray:
    """Pack event longitudes, shifting them by 360 degrees into the packed window as the product does.

    Why: GOES-West's window starts at -203.56, so a flash at 175 E is stored (and decoded by default) as -185.
    """
    low = float(encoding["add_offset"])
    high = low + 65534 * float(encoding["scale_factor"])
    lon = np.asarray(lon, dtype=np.float64)
    lon = np.where(lon > high, lon - 360.0, lon)
    lon = np.where(lon < low, lon + 360.0, lon)
    return pack_unsigned(lon, encoding["scale_factor"], encoding["add_offset"])


def _pack_time(seconds: np.ndarray, encoding: dict[str, Any]) -> np.ndarray:
    if encoding["units"].startswith("milliseconds"):
        return pack_signed_ms(seconds, encoding["scale_factor"])
    return pack_unsigned(seconds, encoding["scale_factor"], encoding["add_offset"])


def _pack_quality(flags: np.ndarray) -> np.ndarray:
    flags = np.asarray(flags, dtype=np.int64)
    return np.where(flags < 0, -1, flags).astype(np.int16)


def _unsigned_ids(ids: np.ndarray, dtype: str) -> np.ndarray:
    """Store non-negative ids in a signed type of the same width, as the product does."""
    unsigned = {"i2": np.uint16, "i4": np.uint32}[dtype]
    return np.asarray(ids, dtype=np.int64).astype(unsigned).view(dtype)


def _variable_specs(columns, era, area_units, platform, start, stray_unsigned_time) -> dict[str, tuple]:
    """``{name: (dtype, dims, attributes, stored values)}`` for every record variable."""
    times = time_encoding(era, start, stray_unsigned=stray_unsigned_time)
    area = area_encoding(area_units)
    flag = {"_Unsigned": "true", "units": "1"}
    uid = {"_Unsigned": "true", "units": "1"}
    f, g, e = columns["flash"], columns["group"], columns["event"]
    fd, gd, ed = (_DIMS["flash"],), (_DIMS["group"],), (_DIMS["event"],)
    area_scale = 1e-6 if area_units == "km2" else 1.0

    def energy(level, values):
        enc = energy_encoding(era, level)
        return ("i2", (_DIMS[level],), enc, pack_unsigned(values, enc["scale_factor"], enc["add_offset"]))

    lon_enc = event_lon_encoding(platform)
    return {
        "event_id": ("i4", ed, uid, _unsigned_ids(e["event_id"], "i4")),
        "event_time_offset": ("i2", ed, times, _pack_time(e["time"], times)),
        "event_lat": (
            "i2",
            ed,
            {"_Unsigned": "true", **_LAT, "units": "degrees_north"},
            pack_unsigned(e["lat"], _LAT["scale_factor"], _LAT["add_offset"]),
        ),
        "event_lon": ("i2", ed, lon_enc, pack_event_lon(e["lon"], lon_enc)),
        "event_energy": energy("event", e["energy"]),
        "event_parent_group_id": ("i4", ed, uid, _unsigned_ids(e["parent_group_id"], "i4")),
        "group_id": ("i4", gd, uid, _unsigned_ids(g["group_id"], "i4")),
        "group_time_offset": ("i2", gd, times, _pack_time(g["time"], times)),
        "group_lat": ("f4", gd, {"units": "degrees_north"}, g["lat"].astype(np.float32)),
        "group_lon": ("f4", gd, {"units": "degrees_east"}, g["lon"].astype(np.float32)),
        "group_area": ("i2", gd, area, pack_unsigned(g["area"] * area_scale, area["scale_factor"], area["add_offset"])),
        "group_energy": energy("group", g["energy"]),
        "group_parent_flash_id": ("i2", gd, uid, _unsigned_ids(g["parent_flash_id"], "i2")),
        "group_quality_flag": ("i2", gd, flag, _pack_quality(g["quality_flag"])),
        "flash_id": ("i2", fd, uid, _unsigned_ids(f["flash_id"], "i2")),
        "flash_time_offset_of_first_event": ("i2", fd, times, _pack_time(f["time_start"], times)),
        "flash_time_offset_of_last_event": ("i2", fd, times, _pack_time(f["time_end"], times)),
        "flash_lat": ("f4", fd, {"units": "degrees_north"}, f["lat"].astype(np.float32)),
        "flash_lon": ("f4", fd, {"units": "degrees_east"}, f["lon"].astype(np.float32)),
        "flash_area": ("i2", fd, area, pack_unsigned(f["area"] * area_scale, area["scale_factor"], area["add_offset"])),
        "flash_energy": energy("flash", f["energy"]),
        "flash_quality_flag": ("i2", fd, flag, _pack_quality(f["quality_flag"])),
    }


def _apply_overrides(specs: dict[str, tuple], attrs, raw, omit: set[str]) -> None:
    """Apply attribute and stored-value overrides and drop omitted variables, in place."""
    for name, extra in attrs.items():
        dtype, dims, var_attrs, values = specs[name]
        merged = {**var_attrs, **extra}
        specs[name] = (dtype, dims, {k: v for k, v in merged.items() if v is not None}, values)
    for name, values in raw.items():
        dtype, dims, var_attrs, _ = specs[name]
        specs[name] = (dtype, dims, var_attrs, np.asarray(values).astype(dtype))
    for name in omit & set(specs):
        del specs[name]


def _write_variable(ds: netCDF4.Dataset, name: str, dtype: str, dims, var_attrs: dict, values) -> None:
    """Create one variable holding exactly ``values`` (no automatic packing on write)."""
    fill = np.array(-1, dtype=dtype) if name in _FILLED else None
    var = ds.createVariable(name, dtype, dims, fill_value=fill)
    var.set_auto_maskandscale(False)
    for key, value in var_attrs.items():
        var.setncattr(key, value)
    if len(values):
        var[:] = np.asarray(values, dtype=dtype)


def _write_scalars(ds, columns, start, seconds, declared_counts, omit: set[str]) -> None:
    """``product_time`` and the ``*_count`` scalars (whose values may disagree with the dimensions)."""
    declared = {_TABLES[level]: _row_count(columns[level], level) for level in _DIMS}
    declared.update(declared_counts or {})
    for level, table in _TABLES.items():
        name = f"{level}_count"
        if name in omit:
            continue
        var = ds.createVariable(name, "i4", (), fill_value=np.int32(-1))
        var.setncattr("units", "count")
        var.assignValue(-1 if declared[table] is None else declared[table])
    if "product_time" not in omit:
        product_time = (start - PRODUCT_TIME_EPOCH).total_seconds()
        var = ds.createVariable("product_time", "f8", ())
        var.setncattr("units", "seconds since 2000-01-01 12:00:00")
        var.assignValue(product_time)
        bounds = ds.createVariable("product_time_bounds", "f8", ("number_of_time_bounds",))
        bounds[:] = [product_time, product_time + seconds]


def _row_count(columns: dict[str, np.ndarray], level: str) -> int:
    return len(columns[_COLUMNS[level][0]])


def _write_global_attributes(ds, name, platform, slot, start, seconds, global_attributes) -> None:
    if global_attributes is False:
        return
    end = start + timedelta(seconds=seconds)
    values = {
        "production_site": "RBU",
        "dataset_name": name,
        "orbital_slot": slot,
        "platform_ID": platform,
        "time_coverage_start": _coverage_text(start),
        "time_coverage_end": _coverage_text(end),
        "date_created": _coverage_text(end + timedelta(seconds=2)),
    }
    if isinstance(global_attributes, Mapping):
        values.update(global_attributes)
    for key, value in values.items():
        if value is not None:
            ds.setncattr(key, value)


def _coverage_text(moment: datetime) -> str:
    """The product's ``2018-07-02T04:33:00.0Z`` style: one decimal of a second."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 100_000}Z"
