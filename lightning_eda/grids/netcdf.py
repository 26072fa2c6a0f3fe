"""The gridded products as CF-1.8 netCDF-4: one file per hour and frame length, frames along ``time``.

``data/grids/<bucket>/<resolution>km/<YYYY-MM-DD>/glm_grid_<N>min_<YYYYMMDD>T<HH>.nc`` holds the hour's 60/N
frames of N minutes (``1min`` and the accumulations), each frame's start and end in ``time_bounds``, on ``x``/``y``
scan angles (rad, ABI's order: x west to east, y north to south) with the ``goes_imager_projection`` grid mapping.

Cells without a flash hold the fill value (read as missing, NaN in xarray), as in NOAA's GLM gridded products.
Speed: netCDF4 defines the file (dimensions, coordinates, attributes, compressed 64 × 64 chunks); the cells are then
written as pre-compressed chunks with HDF5's direct chunk write, and only the chunks lightning touched. A frame at
2 km over the real minute's lightning is 3,300 × 4,100 cells in which 166 chunks of 64 × 64 hold a flash: writing
the whole frame through xarray took 1.35 s, writing its chunks 1/20 of that. Unwritten chunks read as the fill value.
No Dagster here.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from zlib_ng import zlib_ng as zlib  # zlib streams HDF5's deflate filter reads, in 0.6 of zlib's time at level 1

from lightning_eda.grids.fixed_grid import Extent, FixedGrid
from lightning_eda.grids.products import VARIABLES, frame_bounds
from lightning_eda.sorted_keys import sort_with_order

GRIDS_DIR = "grids"
CHUNK = 64
#: Level 1: the 1-minute file of a busy hour in 3.1-3.5 s with zlib-ng (21 MB) where zlib took 4.6-8.7 s (15 MB) and
#: zlib-ng's level 2 5.8 s (14 MB), at load 6; zlib's level 4 took 117 µs a chunk against 29 µs at level 1.
DEFLATE_LEVEL = 1
TIME_UNITS = "seconds since 2000-01-01 12:00:00"  # the GOES-R products' epoch (J2000)
_EPOCH = datetime(2000, 1, 1, 12)
GRID_MAPPING = "goes_imager_projection"

#: Each variable's storage type, fill value and CF attributes.
VARIABLE_SPECS: dict[str, tuple[str, object, dict[str, str]]] = {
    "flash_extent_density": (
        "i4",
        0,
        {"long_name": "Flash extent density: flashes whose events' footprints touch the cell", "units": "1"},
    ),
    "minimum_flash_area": (
        "f4",
        np.float32(np.nan),
        {"long_name": "Minimum area of the flashes touching the cell", "units": "km2"},
    ),
    "total_optical_energy": (
        "f4",
        np.float32(np.nan),
        {"long_name": "Total optical energy of the events whose footprints cover the cell", "units": "J"},
    ),
    "average_flash_area": (
        "f4",
        np.float32(np.nan),
        {"long_name": "Average area of the flashes touching the cell", "units": "km2"},
    ),
    "flash_centroid_density": (
        "i4",
        0,
        {"long_name": "Flash centroid density: flashes whose centroid lies in the cell", "units": "1"},
    ),
}


def grid_file(data_dir: str | os.PathLike, bucket: str, resolution_km: float, hour: datetime, minutes: int) -> Path:
    """Where the hour's ``minutes``-minute frames of ``bucket`` at ``resolution_km`` go."""
    return (
        Path(data_dir)
        / GRIDS_DIR
        / bucket
        / f"{resolution_km:g}km"
        / f"{hour:%Y-%m-%d}"
        / f"glm_grid_{minutes}min_{hour:%Y%m%dT%H}.nc"
    )


def write_hour(
    path: str | os.PathLike,
    grid: FixedGrid,
    extent: Extent,
    hour: datetime,
    minutes: int,
    cells: pd.DataFrame,
    attributes: dict[str, str] | None = None,
) -> Path:
    """Write one hour's frames (:meth:`~lightning_eda.grids.products.GriddedHour.frames` of ``minutes``) atomically.

    ``attributes`` are added to the global ones (platform, orbital slot, …).
    """
    import h5py
    import netCDF4

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    starts, ends = frame_bounds(hour, minutes)
    x, y = grid.centres(extent)
    chunks = (1, min(CHUNK, extent.ny), min(CHUNK, extent.nx))
    try:
        with netCDF4.Dataset(partial, "w", format="NETCDF4") as ds:
            ds.setncatts(_global_attributes(grid, extent, starts[0], ends[-1], minutes, attributes or {}))
            ds.createDimension("time", len(starts))
            ds.createDimension("y", extent.ny)
            ds.createDimension("x", extent.nx)
            ds.createDimension("nv", 2)
            _coordinates(ds, x, y, starts, ends, minutes)
            projection = ds.createVariable(GRID_MAPPING, "i4")
            projection.setncatts(grid.projection.cf_attributes())
            for name in VARIABLES:
                dtype, fill, attrs = VARIABLE_SPECS[name]
                var = ds.createVariable(
                    name,
                    dtype,
                    ("time", "y", "x"),
                    zlib=True,
                    complevel=DEFLATE_LEVEL,
                    shuffle=False,
                    chunksizes=chunks,
                    fill_value=fill,
                )
                var.setncatts({**attrs, "grid_mapping": GRID_MAPPING, "coordinates": "time y x"})
                var.setncattr("cell_methods", "time: sum" if name != "minimum_flash_area" else "time: minimum")
        with h5py.File(partial, "r+") as h5:
            _write_chunks(h5, cells, extent, chunks)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _coordinates(ds, x: np.ndarray, y: np.ndarray, starts: list[datetime], ends: list[datetime], minutes: int):
    for axis, values, direction in (("x", x, "east"), ("y", y, "north")):
        var = ds.createVariable(axis, "f8", (axis,))
        var.setncatts(
            {
                "standard_name": f"projection_{axis}_coordinate",
                "long_name": f"GOES fixed grid projection {axis}-coordinate (scan angle {direction} of the subpoint)",
                "units": "rad",
                "axis": axis.upper(),
            }
        )
        var[:] = values
    tv = ds.createVariable("time", "f8", ("time",))
    tv.setncatts(
        {
            "standard_name": "time",
            "long_name": f"start of each {minutes}-minute frame",
            "units": TIME_UNITS,
            "calendar": "standard",
            "axis": "T",
            "bounds": "time_bounds",
        }
    )
    tv[:] = [_seconds(s) for s in starts]
    bv = ds.createVariable("time_bounds", "f8", ("time", "nv"))
    bv.setncatts({"long_name": "start and end of each frame", "units": TIME_UNITS, "calendar": "standard"})
    bv[:] = np.array([[_seconds(s), _seconds(e)] for s, e in zip(starts, ends, strict=True)])


def _global_attributes(grid, extent, start, end, minutes, extra) -> dict[str, object]:
    return {
        "Conventions": "CF-1.8",
        "title": f"GLM gridded flash products, {minutes}-minute frames, on the GOES ABI fixed grid",
        "institution": "lightning_eda",
        "source": "GOES GLM Level-2 LCFA (flashes, groups, events)",
        "spatial_resolution": f"{grid.resolution_km:g}km at nadir",
        "scan_angle_step_rad": grid.step,
        "event_footprint": (
            f"each event covers the {grid.footprint_cells} x {grid.footprint_cells} block of cells nearest it "
            "(a GLM pixel of 8 km at nadir, constant in scan angle)"
        ),
        "frame_minutes": minutes,
        "time_coverage_start": f"{start:%Y-%m-%dT%H:%M:%SZ}",
        "time_coverage_end": f"{end:%Y-%m-%dT%H:%M:%SZ}",
        "fixed_grid_columns": f"{extent.ix0}..{extent.ix1}",
        "fixed_grid_rows": f"{extent.iy0}..{extent.iy1}",
        **extra,
    }


def _seconds(moment: datetime) -> float:
    return (moment - _EPOCH).total_seconds()


def _write_chunks(h5, cells: pd.DataFrame, extent: Extent, chunks: tuple[int, int, int]) -> None:
    """Write the chunks lightning touched, each compressed here (the variables' only filter is deflate).

    A frame's chunks are built together, one array per variable (compressing them in a second thread while this one
    wrote saved nothing measurable: the hours are gridded on every core already). A chunk all fill (a chunk with
    flashes but no flash centroid, for ``flash_centroid_density``) is left unwritten, as it reads the same.
    """
    if cells.empty:
        return
    _, ch_y, ch_x = chunks
    row = extent.iy1 - cells["iy"].to_numpy(np.int64)
    col = cells["ix"].to_numpy(np.int64) - extent.ix0
    tiles_x = extent.nx // ch_x + 1
    tiles = (extent.ny // ch_y + 1) * tiles_x
    key, order = sort_with_order(cells["frame"].to_numpy(np.int64) * tiles + (row // ch_y) * tiles_x + col // ch_x)
    row, col = row[order], col[order]
    values = {name: cells[name].to_numpy()[order] for name in VARIABLES}
    datasets = {name: h5[name].id for name in VARIABLES}
    bounds = np.flatnonzero(np.r_[True, key[1:] // tiles != key[:-1] // tiles, True])

    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        frame_tiles, slot = np.unique(key[a:b], return_inverse=True)
        local = (slot, row[a:b] % ch_y, col[a:b] % ch_x)
        origins = [(int(t // tiles), int(t % tiles // tiles_x) * ch_y, int(t % tiles_x) * ch_x) for t in frame_tiles]
        for name in VARIABLES:
            dtype, fill, _ = VARIABLE_SPECS[name]
            blocks = np.full((len(frame_tiles), ch_y, ch_x), fill, dtype=np.dtype(dtype))
            blocks[local] = values[name][a:b]
            written = ~np.all(blocks == fill, axis=(1, 2)) if fill == 0 else np.ones(len(frame_tiles), dtype=bool)
            for i in np.flatnonzero(written):
                datasets[name].write_direct_chunk(origins[i], zlib.compress(blocks[i], DEFLATE_LEVEL))
