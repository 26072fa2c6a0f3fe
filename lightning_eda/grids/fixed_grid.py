"""The GOES ABI fixed grid: scan angles x, y (radians) from the satellite, cells of 2, 4, 8 or 10 km at nadir.

The projection comes from the LCFA granules' own attributes (:meth:`GeosProjection.from_granule`). Cell edges lie on
multiples of the scan-angle step from the sub-satellite point, so the 2 km grid is NOAA's ABI 2 km grid exactly
(56 µrad, 5424 × 5424 cells over the full disk, centres at ±28 µrad, ±84 µrad, …) and each coarser grid is made of
whole 2 km cells (4 km: 2 × 2, 8 km: 4 × 4, 10 km: 5 × 5). Projected metres are scan angle × perspective height.

Cells are indexed by integers ``ix``, ``iy``: cell ``(ix, iy)`` covers scan angles ``[ix, ix + 1) × step`` in x and
``[iy, iy + 1) × step`` in y (y grows northward). No Dagster here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np

logger = logging.getLogger(__name__)

#: NOAA's ABI 2 km fixed grid step (GOES-R PUG vol. 4, 5424 columns of 56 µrad), and so the step per km at nadir.
ABI_2KM_STEP_RAD = 56e-6
STEP_RAD_PER_KM = ABI_2KM_STEP_RAD / 2.0
RESOLUTIONS_KM = (2.0, 4.0, 8.0, 10.0)
#: Half the ABI full disk at 2 km: 2712 cells of 56 µrad (the disk's x, y run from -0.151844 to +0.151844 at the
#: cell centres).
FULL_DISK_HALF_RAD = 2712 * ABI_2KM_STEP_RAD
#: A GLM pixel is about 8 km at nadir; its footprint is taken as a square of that many km at nadir in scan angle.
GLM_PIXEL_KM = 8.0

#: GRS80, the ellipsoid of ``goes_lat_lon_projection`` in every LCFA granule (used when a granule lacks it).
GRS80 = (6378137.0, 6356752.31414)
NOMINAL_HEIGHT_M = 35786023.0
#: The ABI fixed grid's nominal longitudes by orbital slot (GOES-R PUG), for when no granule is at hand.
SLOT_LONGITUDE = {"GOES-East": -75.0, "GOES-West": -137.0, "GOES-Test": -89.5}


@dataclass(frozen=True)
class GeosProjection:
    """The geostationary projection of one satellite's fixed grid (``+proj=geos +sweep=x``)."""

    longitude_of_projection_origin: float
    perspective_point_height: float  # metres above the ellipsoid
    semi_major_axis: float = GRS80[0]
    semi_minor_axis: float = GRS80[1]

    @classmethod
    def from_granule(cls, path: str | os.PathLike) -> GeosProjection:
        """The projection an LCFA granule states.

        The origin is ``lon_field_of_view`` (the slot's nominal longitude, -75.0 or -137.0 in every granule seen),
        which is where ABI centres its fixed grid; ``nominal_satellite_subpoint_lon`` (the satellite's own position,
        -75.2 in the 2021 GOES-16 file) only when that is missing, so products from both years land on ABI's cells.
        Height from ``nominal_satellite_height`` (km, float32: rounded to the metre), ellipsoid from
        ``goes_lat_lon_projection``; GRS80 and 35786.023 km when a granule lacks them (the values of every granule
        of the GOES-R series).
        """
        import netCDF4

        with netCDF4.Dataset(path) as ds:
            origin = _scalar(ds, "lon_field_of_view")
            if origin is None:
                origin = _scalar(ds, "nominal_satellite_subpoint_lon")
            if origin is None:
                slot = ds.getncattr("orbital_slot") if "orbital_slot" in ds.ncattrs() else None
                if slot not in SLOT_LONGITUDE:
                    raise ValueError(f"{os.fspath(path)}: no sub-satellite longitude and orbital_slot={slot!r}")
                origin = SLOT_LONGITUDE[slot]
            height_km = _scalar(ds, "nominal_satellite_height")
            ellipsoid = ds.variables.get("goes_lat_lon_projection")
            attrs = {k: ellipsoid.getncattr(k) for k in ellipsoid.ncattrs()} if ellipsoid is not None else {}
        return cls(
            longitude_of_projection_origin=float(origin),
            perspective_point_height=round(height_km * 1000.0) if height_km is not None else NOMINAL_HEIGHT_M,
            semi_major_axis=float(attrs.get("semi_major_axis", GRS80[0])),
            semi_minor_axis=float(attrs.get("semi_minor_axis", GRS80[1])),
        )

    @classmethod
    def for_slot(cls, orbital_slot: str) -> GeosProjection:
        """The nominal projection of a slot, when no granule of the window is kept (``LIGHTNING_EDA_KEEP_RAW=0``)."""
        if orbital_slot not in SLOT_LONGITUDE:
            raise ValueError(f"orbital_slot={orbital_slot!r} is not one of {sorted(SLOT_LONGITUDE)}")
        return cls(SLOT_LONGITUDE[orbital_slot], NOMINAL_HEIGHT_M)

    def cf_attributes(self) -> dict[str, object]:
        """The ``goes_imager_projection`` variable's attributes, as ABI's L1b/L2 files carry them."""
        a, b = self.semi_major_axis, self.semi_minor_axis
        return {
            "long_name": "GOES-R ABI fixed grid projection",
            "grid_mapping_name": "geostationary",
            "perspective_point_height": self.perspective_point_height,
            "semi_major_axis": a,
            "semi_minor_axis": b,
            "inverse_flattening": a / (a - b),
            "latitude_of_projection_origin": 0.0,
            "longitude_of_projection_origin": self.longitude_of_projection_origin,
            "sweep_angle_axis": "x",
        }

    @cached_property
    def crs(self):
        import pyproj

        return pyproj.CRS.from_cf(self.cf_attributes())

    @cached_property
    def _forward(self):
        import pyproj

        return pyproj.Transformer.from_crs(self.crs.geodetic_crs, self.crs, always_xy=True)

    @cached_property
    def _inverse(self):
        import pyproj

        return pyproj.Transformer.from_crs(self.crs, self.crs.geodetic_crs, always_xy=True)

    def to_scan(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scan angles (rad) of points in degrees; NaN off the visible disk."""
        x, y = self._forward.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        h = self.perspective_point_height
        x, y = np.asarray(x) / h, np.asarray(y) / h
        off = ~(np.isfinite(x) & np.isfinite(y))
        x[off] = np.nan
        y[off] = np.nan
        return x, y

    def to_latlon(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Degrees of scan angles (rad); NaN off the disk."""
        h = self.perspective_point_height
        lon, lat = self._inverse.transform(np.asarray(x, dtype=np.float64) * h, np.asarray(y, dtype=np.float64) * h)
        lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
        off = ~(np.isfinite(lat) & np.isfinite(lon))
        lat[off] = np.nan
        lon[off] = np.nan
        return lat, lon


@dataclass(frozen=True)
class Extent:
    """Cells ``ix0..ix1`` × ``iy0..iy1`` (inclusive) of a fixed grid."""

    ix0: int
    ix1: int
    iy0: int
    iy1: int

    def __post_init__(self) -> None:
        if self.ix1 < self.ix0 or self.iy1 < self.iy0:
            raise ValueError(f"empty extent {self}")

    @property
    def nx(self) -> int:
        return self.ix1 - self.ix0 + 1

    @property
    def ny(self) -> int:
        return self.iy1 - self.iy0 + 1

    def contains(self, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        return (ix >= self.ix0) & (ix <= self.ix1) & (iy >= self.iy0) & (iy <= self.iy1)


@dataclass(frozen=True)
class FixedGrid:
    """A fixed grid of ``resolution_km`` cells (at nadir) in a projection; the footprint an event covers on it."""

    projection: GeosProjection
    resolution_km: float = 2.0

    def __post_init__(self) -> None:
        if self.resolution_km not in RESOLUTIONS_KM:
            raise ValueError(f"resolution_km={self.resolution_km!r} must be one of {RESOLUTIONS_KM}")

    @property
    def step(self) -> float:
        """Scan-angle step of a cell (rad): 28 µrad per km at nadir, so 56 µrad at 2 km."""
        return STEP_RAD_PER_KM * self.resolution_km

    @property
    def footprint_cells(self) -> int:
        """Side K of the K × K block of cells an event's footprint covers: 8 km / the cell size, rounded, at least
        one (2 km: 4, 4 km: 2, 8 and 10 km: 1)."""
        return max(1, round(GLM_PIXEL_KM / self.resolution_km))

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cell (ix, iy) holding each scan angle; NaN angles must be removed first."""
        return np.floor(x / self.step).astype(np.int64), np.floor(y / self.step).astype(np.int64)

    def footprint_corner(self, x: np.ndarray, y: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The lower-left cell of the K × K block centred nearest each event (the block is cells ``ix..ix+K-1``)."""
        k = self.footprint_cells if k is None else k
        return (
            np.floor(x / self.step - k / 2 + 0.5).astype(np.int64),
            np.floor(y / self.step - k / 2 + 0.5).astype(np.int64),
        )

    def centres(self, extent: Extent) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre scan angles: x west to east, y north to south (ABI's order, row 0 the northernmost)."""
        x = (np.arange(extent.ix0, extent.ix1 + 1) + 0.5) * self.step
        y = (np.arange(extent.iy1, extent.iy0 - 1, -1) + 0.5) * self.step
        return x, y

    def full_disk(self) -> Extent:
        """ABI's full disk: the cells covering ±0.151872 rad (at 10 km the 1086 cells of 280 µrad go 0.08 % beyond)."""
        n = int(np.ceil(FULL_DISK_HALF_RAD / self.step - 1e-9))
        return Extent(-n, n - 1, -n, n - 1)

    def snapped(self, x_min: float, x_max: float, y_min: float, y_max: float, pad_cells: int = 0) -> Extent:
        """The cells covering a scan-angle box, ``pad_cells`` more on each side, clipped to the full disk."""
        disk = self.full_disk()
        return Extent(
            max(disk.ix0, int(np.floor(x_min / self.step)) - pad_cells),
            min(disk.ix1, int(np.floor(x_max / self.step)) + pad_cells),
            max(disk.iy0, int(np.floor(y_min / self.step)) - pad_cells),
            min(disk.iy1, int(np.floor(y_max / self.step)) + pad_cells),
        )

    def box_extent(self, lat_min: float, lat_max: float, lon_min: float, lon_max: float) -> Extent:
        """The cells covering a lat/lon box (its edges sampled every 0.1°), padded by one footprint.

        ``lon_min > lon_max`` crosses the antimeridian. ``ValueError`` when the box is not seen from the satellite.
        """
        span = (lon_max - lon_min) % 360.0 or 360.0
        lons = lon_min + np.linspace(0.0, span, max(2, int(span * 10) + 1))
        lats = np.linspace(lat_min, lat_max, max(2, int((lat_max - lat_min) * 10) + 1))
        grid_lat, grid_lon = np.meshgrid(lats, lons)
        edge = np.zeros(grid_lat.shape, dtype=bool)
        edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
        x, y = self.projection.to_scan(grid_lat[edge], (grid_lon[edge] + 180.0) % 360.0 - 180.0)
        seen = np.isfinite(x)
        if not seen.any():
            raise ValueError(
                f"the region {lat_min}..{lat_max}°N, {lon_min}..{lon_max}°E is not seen from the satellite at "
                f"{self.projection.longitude_of_projection_origin}°E"
            )
        return self.snapped(x[seen].min(), x[seen].max(), y[seen].min(), y[seen].max(), self.footprint_cells)


def _scalar(ds, name: str) -> float | None:
    """A scalar variable's value, None when absent or the fill value."""
    if name not in ds.variables:
        return None
    value = ds.variables[name][...]
    if np.ma.is_masked(value):
        return None
    value = float(np.asarray(value).reshape(-1)[0])
    return value if np.isfinite(value) else None
