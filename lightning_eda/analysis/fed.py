"""Flash extent density (FED): how many flashes touched each cell of an equal-area grid.

The standard GLM gridded picture (glmtools, NOAA's GLM gridded products): a flash counts once in every cell that any
of its events falls in, however many events it has there. Events reach their flash through their group
(event → ``parent_group_id`` → group → ``parent_flash_id``), within one granule, since GLM ids are unique only there.

The grid is square in the Lambert azimuthal equal-area plane of the window's :class:`FeatureTransform` (the same
projection the clustering uses), so every cell covers the same area on the ground — ``cell_km``² (10 km: 100 km²) —
at the equator and at 50°N alike. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lightning_eda.analysis.features import FeatureTransform, LatLonBox, laea_inverse
from lightning_eda.goes.hierarchy import file_codes, granule_key
from lightning_eda.sorted_keys import distinct, distinct_inverse, lookup
from lightning_eda.store.schemas import ANALYSIS_SCHEMAS

DEFAULT_CELL_KM = 10.0
FED_COLUMNS = ANALYSIS_SCHEMAS["flash_extent_density"].names


def flash_cells(
    events: pd.DataFrame, groups: pd.DataFrame, transform: FeatureTransform, cell_km: float
) -> pd.DataFrame:
    """The distinct (cell, flash) pairs: columns ``ix``, ``iy`` (cell indices), ``source_file``, ``flash_id``.

    ``events`` needs ``source_file, parent_group_id, lat, lon``; ``groups`` needs ``source_file, group_id,
    parent_flash_id``. Events whose group is not in ``groups`` (orphans, see docs/glm_format.md) or whose position
    is missing are left out.
    """
    _check_cell(cell_km)
    file_g, file_e = file_codes(groups["source_file"], events["source_file"])
    group = lookup(granule_key(file_g, groups["group_id"]), granule_key(file_e, events["parent_group_id"]))
    lat, lon = events["lat"].to_numpy(float), events["lon"].to_numpy(float)
    keep = (group >= 0) & np.isfinite(lat) & np.isfinite(lon)
    group = group[keep]
    x, y = transform.to_xy(lat[keep], lon[keep])
    ix, iy = np.floor(x / cell_km).astype(np.int64), np.floor(y / cell_km).astype(np.int64)
    if not len(ix):
        return pd.DataFrame({"ix": ix, "iy": iy, "source_file": groups["source_file"].iloc[:0].array, "flash_id": ix})
    # distinct (flash, cell) pairs as one sorted int64: the flash's rank among the hour's flashes, then the cell
    _, first_group, flash = distinct_inverse(granule_key(file_g, groups["parent_flash_id"])[group])
    ix0, iy0 = ix.min(), iy.min()
    nx, n_cells = ix.max() - ix0 + 1, (ix.max() - ix0 + 1) * (iy.max() - iy0 + 1)
    pairs = distinct(flash * n_cells + (iy - iy0) * nx + (ix - ix0))
    rows = group[first_group[pairs // n_cells]]  # a group of each pair's flash: its granule and flash id
    return pd.DataFrame(
        {
            "ix": pairs % n_cells % nx + ix0,
            "iy": pairs % n_cells // nx + iy0,
            "source_file": groups["source_file"].array.take(rows),  # a categorical stays codes
            "flash_id": groups["parent_flash_id"].to_numpy()[rows],
        }
    )


@dataclass
class FlashExtentDensity:
    """Counts accumulated hour by hour (a flash lies in one granule, so hours never share a flash).

    Use :meth:`add` for each chunk of events and groups, then :meth:`table`.
    """

    transform: FeatureTransform
    cell_km: float = DEFAULT_CELL_KM
    _counts: list[pd.Series] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_cell(self.cell_km)

    def add(self, events: pd.DataFrame, groups: pd.DataFrame) -> None:
        cells = flash_cells(events, groups, self.transform, self.cell_km)
        self._counts.append(cells.groupby(["ix", "iy"]).size())

    def table(self) -> pd.DataFrame:
        """One row per cell touched: centre ``lat``, ``lon`` (degrees) and ``x_km``, ``y_km``; ``flash_count``."""
        if not self._counts:
            return pd.DataFrame({name: pd.Series(dtype=float) for name in FED_COLUMNS}).astype({"flash_count": "int64"})
        counts = pd.concat(self._counts).groupby(level=["ix", "iy"]).sum()
        ix = counts.index.get_level_values("ix").to_numpy()
        iy = counts.index.get_level_values("iy").to_numpy()
        x_km, y_km = (ix + 0.5) * self.cell_km, (iy + 0.5) * self.cell_km
        lat, lon = laea_inverse(x_km, y_km, self.transform.lat0, self.transform.lon0, self.transform.radius_km)
        return pd.DataFrame(
            {
                "lat": lat,
                "lon": lon,
                "flash_count": counts.to_numpy().astype(np.int64),
                "x_km": x_km,
                "y_km": y_km,
                "cell_km": float(self.cell_km),
            }
        ).sort_values("flash_count", ascending=False, ignore_index=True)


def window_density(
    hours: Iterable[Mapping[str, pd.DataFrame]],
    transform: FeatureTransform,
    cell_km: float = DEFAULT_CELL_KM,
    box: LatLonBox | None = None,
) -> pd.DataFrame:
    """:meth:`FlashExtentDensity.table` of a window given hour by hour (``glm_event`` and ``glm_group`` rows each).

    With ``box``, only events inside it count. An hour at a time keeps one hour's events in memory: a flash never
    spans two granules, so the counts simply add.
    """
    density = FlashExtentDensity(transform, cell_km)
    for hour in hours:
        events = hour["glm_event"]
        if box is not None:
            events = events[box.contains(events["lat"].to_numpy(), events["lon"].to_numpy())]
        density.add(events, hour["glm_group"])
    return density.table()


def _check_cell(cell_km: float) -> None:
    if not cell_km > 0:
        raise ValueError(f"cell_km={cell_km!r} must be > 0")
