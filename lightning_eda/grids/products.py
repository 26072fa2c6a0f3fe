"""An hour of flashes, groups and events gridded on the fixed grid: FED, MFA, TOE, AFA and FCD per minute.

Definitions (those of glmtools and NOAA's GLM gridded products, with the approximations said here):

- **Footprint.** Each event covers its GLM pixel, taken as a square of 8 km at nadir in scan angle (a constant
  angular size, so it grows on the ground toward the limb as GLM's pixels do), snapped to the grid: the K × K block
  of cells (K = 8 km / cell size, rounded, at least 1; 2 km: 4 × 4) whose centre is nearest the event. glmtools
  uses a lookup table of the real pixel corners instead.
- **Frames.** A flash, with all its events, counts in the 1-minute frame of its start time. The few flashes that
  start before their granule's hour (by up to ~2 s, GLM writes a flash when it ends) count in the hour's first frame,
  so every hour's file holds exactly that hour's granules.
- ``flash_extent_density``: flashes any of whose events' footprints touch the cell.
- ``minimum_flash_area`` (km²): the smallest of those flashes' areas; ``average_flash_area`` their mean (flashes
  whose area is unknown count in FED but not in the areas).
- ``total_optical_energy`` (J): each event's energy spread evenly over its K² cells, so the sum over the cells equals
  the sum over the events gridded (to float precision).
- ``flash_centroid_density``: flashes whose centroid lies in the cell (no footprint).

A flash lies in one granule, so frames of different hours never share a flash and N-minute accumulations are sums
(mins for MFA) of the 1-minute frames. Vectorised: each (flash, footprint) and (flash, cell) pair is deduplicated by
sorting one int64 key. No Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from lightning_eda.analysis.features import LatLonBox
from lightning_eda.goes.hierarchy import event_flash_rows
from lightning_eda.grids.fixed_grid import Extent, FixedGrid
from lightning_eda.sorted_keys import distinct, distinct_inverse, reduce_by_key, sorted_contains

MINUTES_PER_HOUR = 60
#: The products' variables, in the files' and the table's order.
VARIABLES = (
    "flash_extent_density",
    "minimum_flash_area",
    "total_optical_energy",
    "average_flash_area",
    "flash_centroid_density",
)
_SUMS = ("flash_extent_density", "total_optical_energy", "area_sum", "area_count", "flash_centroid_density")


@dataclass(frozen=True)
class GriddedHour:
    """One hour on an extent of the grid: ``cells`` has a row per (frame, cell) touched.

    ``cells`` columns: ``frame`` (minute of the hour), ``ix``, ``iy`` (the grid's cell indices), the sums
    ``flash_extent_density``, ``total_optical_energy``, ``area_sum`` (km²), ``area_count``,
    ``flash_centroid_density``, and ``minimum_flash_area`` (km², NaN when no area is known).
    """

    hour: datetime
    extent: Extent | None
    cells: pd.DataFrame
    counts: dict[str, float] = field(default_factory=dict)

    def frames(self, minutes: int = 1) -> pd.DataFrame:
        """The cells of ``minutes``-minute frames (``frame`` becomes the frame's number in the hour) with the
        products' five variables."""
        check_accumulation(minutes)
        cells = self.cells
        if minutes > 1 and len(cells):
            ix, iy = cells["ix"].to_numpy(np.int64), cells["iy"].to_numpy(np.int64)
            x0, y0 = ix.min(), iy.min()
            nx, ny = ix.max() - x0 + 1, iy.max() - y0 + 1
            keys, reduced = reduce_by_key(
                ((cells["frame"].to_numpy(np.int64) // minutes) * ny + (iy - y0)) * nx + (ix - x0),
                sums={name: cells[name].to_numpy() for name in _SUMS},
                mins={"minimum_flash_area": np.nan_to_num(cells["minimum_flash_area"].to_numpy(), nan=np.inf)},
            )
            mfa = reduced["minimum_flash_area"]
            reduced["minimum_flash_area"] = np.where(np.isfinite(mfa), mfa, np.nan)
            cells = pd.DataFrame(
                {"frame": keys // (nx * ny), "ix": keys % nx + x0, "iy": keys // nx % ny + y0, **reduced}
            )
        area_count = cells["area_count"].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            average = np.where(area_count > 0, cells["area_sum"].to_numpy() / area_count, np.nan)
        return pd.DataFrame(
            {
                "frame": cells["frame"].to_numpy(np.int64),
                "ix": cells["ix"].to_numpy(np.int64),
                "iy": cells["iy"].to_numpy(np.int64),
                "flash_extent_density": cells["flash_extent_density"].to_numpy(np.int64),
                "minimum_flash_area": cells["minimum_flash_area"].to_numpy(np.float64),
                "total_optical_energy": cells["total_optical_energy"].to_numpy(np.float64),
                "average_flash_area": average,
                "flash_centroid_density": cells["flash_centroid_density"].to_numpy(np.int64),
            }
        )


def check_accumulation(minutes: int) -> None:
    if not (isinstance(minutes, int) and 1 <= minutes <= MINUTES_PER_HOUR and MINUTES_PER_HOUR % minutes == 0):
        raise ValueError(
            f"accumulation_minutes={minutes!r} must divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)"
        )


def grid_hour(
    events: pd.DataFrame,
    groups: pd.DataFrame,
    flashes: pd.DataFrame,
    grid: FixedGrid,
    hour: datetime,
    *,
    extent: Extent | None = None,
    box: LatLonBox | None = None,
    footprint: bool = True,
) -> GriddedHour:
    """Grid one hour's granules (rows of ``glm_event``, ``glm_group``, ``glm_flash``) into 1-minute frames.

    ``extent`` None means the hour's lightning, snapped to the grid with room for every footprint. With ``box``,
    only events (and flash centroids) inside it count. ``footprint=False`` counts each event in its centre cell only
    (the comparison the README quotes). Events whose flash is not in ``flashes`` (orphans), that the satellite cannot
    see, or whose footprint leaves ``extent`` are left out and counted in :attr:`GriddedHour.counts`.
    """
    k = grid.footprint_cells if footprint else 1
    start = pd.Timestamp(hour)
    minute = (pd.to_datetime(flashes["time_start"]) - start) // pd.Timedelta(minutes=1)
    flash_frame = np.clip(minute.to_numpy(np.int64), 0, MINUTES_PER_HOUR - 1)
    area_km2 = flashes["area"].to_numpy(np.float64) / 1e6

    event_flash = event_flash_rows(events, groups, flashes)
    has_flash = event_flash >= 0
    counts: dict[str, float] = {"events_in": len(events), "orphan_events": int((~has_flash).sum())}
    fi = event_flash[has_flash]
    lat = events["lat"].to_numpy(np.float64)[has_flash]
    lon = events["lon"].to_numpy(np.float64)[has_flash]
    energy = np.nan_to_num(events["energy"].to_numpy(np.float64)[has_flash])
    if box is not None:
        inside = box.contains(lat, lon)
        counts["events_outside_box"] = int((~inside).sum())
        fi, lat, lon, energy = fi[inside], lat[inside], lon[inside], energy[inside]
    x, y = _scan_angles(grid, lat, lon)
    seen = np.isfinite(x)
    counts["events_off_disk"] = int((~seen).sum())
    bx, by = grid.footprint_corner(x[seen], y[seen], k)
    fi, energy = fi[seen], energy[seen]
    if extent is None:
        if not len(bx):
            return GriddedHour(hour, None, _empty_cells(), {**counts, "events_gridded": 0, "flashes": 0})
        extent = Extent(int(bx.min()), int(bx.max()) + k - 1, int(by.min()), int(by.max()) + k - 1)
    fits = extent.contains(bx, by) & extent.contains(bx + k - 1, by + k - 1)
    counts["events_outside_extent"] = int((~fits).sum())
    bx, by, fi, energy = bx[fits], by[fits], fi[fits], energy[fits]
    counts["events_gridded"] = len(bx)
    counts["energy_gridded"] = float(energy.sum())

    nx, n_cells = extent.nx, extent.nx * extent.ny
    corner = (by - extent.iy0) * nx + (bx - extent.ix0)
    offsets = (np.arange(k)[:, None] * nx + np.arange(k)[None, :]).reshape(-1)

    # Flash extent: the distinct (flash, cell) pairs of the flashes' footprints
    pairs = distinct(fi * n_cells + corner)
    pairs = distinct((pairs[:, None] + offsets[None, :]).reshape(-1))
    pair_flash, pair_cell = pairs // n_cells, pairs % n_cells
    area = area_km2[pair_flash]
    known = np.isfinite(area)
    fed_keys, fed = reduce_by_key(
        flash_frame[pair_flash] * n_cells + pair_cell,
        sums={
            "count": np.ones(len(pairs), np.int64),
            "area_sum": np.where(known, area, 0.0),
            "area_count": known.astype(np.int64),
        },
        mins={"area_min": np.where(known, area, np.inf)},
    )

    # Optical energy: each event's energy over its K² cells, in its flash's frame
    toe_keys, toe = reduce_by_key(flash_frame[fi] * n_cells + corner, sums={"energy": energy})
    toe_keys, toe = reduce_by_key(
        (toe_keys[:, None] + offsets[None, :]).reshape(-1), sums={"energy": np.repeat(toe["energy"] / k**2, k**2)}
    )

    # Flash centroids
    flat, flon = flashes["lat"].to_numpy(np.float64), flashes["lon"].to_numpy(np.float64)
    fx, fy = grid.projection.to_scan(flat, flon)
    centroid = np.isfinite(fx) & (box.contains(flat, flon) if box is not None else True)
    cx, cy = grid.cell_of(fx[centroid], fy[centroid])
    in_extent = extent.contains(cx, cy)
    fcd_keys, fcd = reduce_by_key(
        flash_frame[centroid][in_extent] * n_cells + (cy[in_extent] - extent.iy0) * nx + (cx[in_extent] - extent.ix0),
        sums={"count": np.ones(int(in_extent.sum()), np.int64)},
    )

    # TOE's (frame, cell) keys are FED's: the same events' footprints; flash centroids almost always lie in them
    keys, at_fed, at_fcd = _union(fed_keys, fcd_keys)
    at_toe = at_fed if np.array_equal(toe_keys, fed_keys) else np.searchsorted(keys, toe_keys)
    area_min = _place(len(keys), at_fed, fed["area_min"], np.inf)
    cells = pd.DataFrame(
        {
            "frame": keys // n_cells,
            "ix": keys % n_cells % nx + extent.ix0,
            "iy": keys % n_cells // nx + extent.iy0,
            "flash_extent_density": _place(len(keys), at_fed, fed["count"], 0),
            "total_optical_energy": _place(len(keys), at_toe, toe["energy"], 0.0),
            "area_sum": _place(len(keys), at_fed, fed["area_sum"], 0.0),
            "area_count": _place(len(keys), at_fed, fed["area_count"], 0),
            "flash_centroid_density": _place(len(keys), at_fcd, fcd["count"], 0),
            "minimum_flash_area": np.where(np.isfinite(area_min), area_min, np.nan),
        }
    )
    counts["flashes"] = len(distinct(fi))
    return GriddedHour(hour, extent, cells, counts)


def _scan_angles(grid: FixedGrid, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scan angles of the events, projecting each distinct position once: events sit on GLM's pixel centres, so an
    hour's millions of events have only some 10⁵ positions."""
    key = np.round((lat + 90.0) * 1e5).astype(np.int64) * 40_000_000 + np.round((lon + 200.0) * 1e5).astype(np.int64)
    _, first, inverse = distinct_inverse(key)
    x, y = grid.projection.to_scan(lat[first], lon[first])
    return x[inverse], y[inverse]


def _union(keys: np.ndarray, more: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted union of two sorted distinct key arrays, and where each array's keys sit in it (searching sorted
    values, once per array)."""
    extra = more[~sorted_contains(keys, more)]
    if not len(extra):
        return keys, np.arange(len(keys)), np.searchsorted(keys, more)
    union = distinct(np.concatenate([keys, extra]))
    return union, np.searchsorted(union, keys), np.searchsorted(union, more)


def _place(size: int, at: np.ndarray, values: np.ndarray, default) -> np.ndarray:
    """``values`` laid at the positions ``at`` of an array of ``size``, ``default`` elsewhere."""
    values = np.asarray(values)
    if len(at) == size:  # every position (FED's keys are the union's): nothing to fill
        return values
    out = np.full(size, default, dtype=values.dtype if len(values) else type(default))
    out[at] = values
    return out


def _empty_cells() -> pd.DataFrame:
    columns = {name: pd.Series(dtype=np.int64) for name in ("frame", "ix", "iy", *_SUMS)}
    columns["total_optical_energy"] = columns["area_sum"] = pd.Series(dtype=np.float64)
    return pd.DataFrame({**columns, "minimum_flash_area": pd.Series(dtype=np.float64)})


def frame_bounds(hour: datetime, minutes: int) -> tuple[list[datetime], list[datetime]]:
    """The starts and ends of the hour's ``minutes``-minute frames."""
    starts = [hour + timedelta(minutes=m) for m in range(0, MINUTES_PER_HOUR, minutes)]
    return starts, [s + timedelta(minutes=minutes) for s in starts]
