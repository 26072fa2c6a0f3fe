"""Where a map looks: the box of longitude and latitude it shows, its projection, its gridlines and their labels.

Pure NumPy, no plotting library: the box is decided here, from the flashes and centroids, before anything is drawn,
so tests can check it directly. Longitudes near the antimeridian are handled by unwrapping them onto the smallest
arc that holds them all (:func:`lon_arc`, :func:`unwrap_longitude`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lightning_eda.geo import format_degrees, wrap_longitude

logger = logging.getLogger(__name__)

#: Mercator keeps shapes right but diverges at the poles; beyond this latitude the map falls back to plate carrée.
MERCATOR_MAX_LAT = 80.0
#: A degenerate box (one flash, or all on one spot) grows to this size in degrees.
MIN_SPAN_DEG = 3.0
_MIN_PAD_DEG = 0.5
_PAD_FRACTION = 0.08
#: Target width/height of the map box, matching the axes left over beside the legend; the data box is widened
#: in one direction to fill it, which shows more context instead of blank margins.
MAP_ASPECT = 1.3
#: A map is a 360° world map rather than an unwrapped arc once the data span more longitude than this.
_WORLD_ARC_DEG = 300.0

Extent = tuple[float, float, float, float]  # (lon_min, lon_max, lat_min, lat_max), degrees; lon_max may pass 180


@dataclass(frozen=True)
class MapInput:
    """Validated map input: valid flashes only, longitudes in [-180, 180)."""

    lat: np.ndarray
    lon: np.ndarray
    labels: np.ndarray
    energy: np.ndarray | None
    centroids: np.ndarray  # (k_c, 2) lat, lon; rows that cannot be drawn are flagged in centroid_ok
    centroid_ok: np.ndarray
    k: int

    @property
    def n(self) -> int:
        return int(self.lat.size)

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)

    @classmethod
    def from_args(cls, lat, lon, labels, centroids_latlon, energy) -> MapInput:
        """Check lengths and labels, skip flashes that cannot be drawn (logged), wrap longitudes."""
        lat_a = np.asarray(lat, dtype=np.float64).reshape(-1)
        lon_a = np.asarray(lon, dtype=np.float64).reshape(-1)
        lab = np.asarray(labels).reshape(-1)
        if not lat_a.size == lon_a.size == lab.size:
            raise ValueError(f"cluster_map: lat, lon, labels lengths differ: {lat_a.size}, {lon_a.size}, {lab.size}")
        if lab.size and not np.all(np.mod(lab, 1) == 0):
            raise ValueError("cluster_map: labels must be integers")
        lab = lab.astype(np.int64)
        if lab.size and lab.min() < 0:
            raise ValueError(f"cluster_map: labels must be >= 0, got min {int(lab.min())}")
        energy_a = None
        if energy is not None:
            energy_a = np.asarray(energy, dtype=np.float64).reshape(-1)
            if energy_a.size != lat_a.size:
                raise ValueError(f"cluster_map: energy has {energy_a.size} values for {lat_a.size} flashes")
        cent = np.empty((0, 2)) if centroids_latlon is None else np.asarray(centroids_latlon, dtype=np.float64)
        cent = cent.reshape(-1, 2)

        ok = np.isfinite(lat_a) & np.isfinite(lon_a) & (np.abs(lat_a) <= 90)
        if not ok.all():
            logger.warning("cluster_map: skipping %d flashes with invalid coordinates", int((~ok).sum()))
        return cls(
            lat=lat_a[ok],
            lon=wrap_longitude(lon_a[ok]),
            labels=lab[ok],
            energy=None if energy_a is None else energy_a[ok],
            centroids=np.c_[cent[:, 0], wrap_longitude(cent[:, 1])],
            centroid_ok=np.all(np.isfinite(cent), axis=1) & (np.abs(cent[:, 0]) <= 90),
            k=max(cent.shape[0], int(lab.max()) + 1 if lab.size else 0),
        )


def lon_arc(lon: np.ndarray) -> tuple[float, float]:
    """Smallest arc of longitude containing every value: (start in [-180, 180), width in degrees).

    The arc is the complement of the widest gap between neighbouring longitudes on the circle, so data around
    the antimeridian (e.g. 175°E to 175°W) gives start 175 and width 10 rather than start -175 and width 350.
    """
    s = np.sort(np.unique(lon))
    if s.size == 1:
        return float(s[0]), 0.0
    gaps = np.diff(np.append(s, s[0] + 360.0))
    i = int(np.argmax(gaps))
    start = float(s[(i + 1) % s.size])
    return start, float(360.0 - gaps[i])


def unwrap_longitude(lon: np.ndarray, start: float) -> np.ndarray:
    """Shift longitudes by multiples of 360 into [start, start + 360)."""
    return start + np.mod(lon - start, 360.0)


def unwrap_start(extent: Extent) -> float:
    """Start of the 360° window, centred on the map, into which longitudes are unwrapped to be drawn.

    That is also where pyproj, wrapping about the central meridian, puts them.
    """
    lon_min, lon_max = extent[:2]
    return (lon_min + lon_max) / 2 - 180.0


def is_mercator(extent: Extent) -> bool:
    """Mercator when the box lies within ±:data:`MERCATOR_MAX_LAT`, plate carrée otherwise."""
    return -MERCATOR_MAX_LAT <= extent[2] and extent[3] <= MERCATOR_MAX_LAT


def _merc_y(lat: np.ndarray | float) -> np.ndarray:
    return np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))


def _merc_lat(y: np.ndarray | float) -> np.ndarray:
    return np.degrees(2 * np.arctan(np.exp(y)) - np.pi / 2)


def auto_extent(lon_u: np.ndarray, lat: np.ndarray) -> Extent:
    """Map box (lon_min, lon_max, lat_min, lat_max) around unwrapped longitudes and latitudes.

    Pads by 8 % of the span (at least 0.5°), grows degenerate boxes to 3°, then widens the box in longitude or
    latitude to the map aspect (in Mercator units when the box fits in ±80°), clamping latitude to the valid
    range and longitude to one turn of the globe.
    """
    lon_min, lon_max = float(lon_u.min()), float(lon_u.max())
    lat_min, lat_max = float(lat.min()), float(lat.max())

    def padded(lo: float, hi: float) -> tuple[float, float]:
        pad = max(_PAD_FRACTION * (hi - lo), _MIN_PAD_DEG)
        lo, hi = lo - pad, hi + pad
        if hi - lo < MIN_SPAN_DEG:
            mid = (lo + hi) / 2
            lo, hi = mid - MIN_SPAN_DEG / 2, mid + MIN_SPAN_DEG / 2
        return lo, hi

    lon_min, lon_max = padded(lon_min, lon_max)
    lat_min, lat_max = padded(lat_min, lat_max)
    lat_min, lat_max = max(lat_min, -90.0), min(lat_max, 90.0)

    mercator = is_mercator((lon_min, lon_max, lat_min, lat_max))
    to_y, from_y = (_merc_y, _merc_lat) if mercator else (np.radians, np.degrees)
    lat_limit = MERCATOR_MAX_LAT if mercator else 90.0
    width = np.radians(lon_max - lon_min)
    y0, y1 = float(to_y(lat_min)), float(to_y(lat_max))
    if width / (y1 - y0) < MAP_ASPECT:
        extra = np.degrees((y1 - y0) * MAP_ASPECT - width) / 2
        lon_min, lon_max = lon_min - extra, lon_max + extra
    else:
        extra = (width / MAP_ASPECT - (y1 - y0)) / 2
        lat_min = max(float(from_y(y0 - extra)), -lat_limit)
        lat_max = min(float(from_y(y1 + extra)), lat_limit)
    if lon_max - lon_min > 360.0:
        mid = (lon_min + lon_max) / 2
        lon_min, lon_max = mid - 180.0, mid + 180.0
    return lon_min, lon_max, lat_min, lat_max


def clamp_extent(extent: Sequence[float]) -> Extent:
    """Validate a caller's extent: latitudes clamped to [-90, 90]; lon_max < lon_min means crossing 180°."""
    if len(extent) != 4:
        raise ValueError(f"extent must be (lon_min, lon_max, lat_min, lat_max), got {extent!r}")
    lon_min, lon_max, lat_min, lat_max = (float(v) for v in extent)
    if not all(np.isfinite([lon_min, lon_max, lat_min, lat_max])):
        raise ValueError(f"extent must be finite, got {extent!r}")
    shift = (((lon_min + 180.0) % 360.0) - 180.0) - lon_min  # put lon_min in [-180, 180), keep the width
    lon_min, lon_max = lon_min + shift, lon_max + shift
    if lon_max <= lon_min:
        lon_max += 360.0
    lon_max = min(lon_max, lon_min + 360.0)
    lat_min, lat_max = max(min(lat_min, lat_max), -90.0), min(max(lat_min, lat_max), 90.0)
    if lat_max - lat_min < 1e-6:
        raise ValueError(f"extent has no latitude span: {extent!r}")
    return lon_min, lon_max, lat_min, lat_max


def map_extent(points: MapInput, extent: Sequence[float] | None) -> Extent:
    """The caller's extent (validated), else a box fitted to flashes and centroids, else the whole world."""
    if extent is not None:
        return clamp_extent(extent)
    if points.n == 0:
        return -180.0, 180.0, -90.0, 90.0
    ok = points.centroid_ok
    all_lon = np.concatenate([points.lon, points.centroids[ok, 1]])
    all_lat = np.concatenate([points.lat, points.centroids[ok, 0]])
    start, width = lon_arc(all_lon)
    if width > _WORLD_ARC_DEG:  # data all round the globe: a plain world map reads better than an unwrapped one
        lat_min, lat_max = auto_extent(all_lon, all_lat)[2:]
        return -180.0, 180.0, lat_min, lat_max
    return auto_extent(unwrap_longitude(all_lon, start), all_lat)


def coastline_resolution(extent: Extent) -> str:
    """basemap coastline resolution: crude for continents, low for regions, intermediate for storm scale.

    'i' costs about 2 s to load (the whole file is read whatever the box), so it is kept for small maps.
    """
    span = max(extent[1] - extent[0], extent[3] - extent[2])
    if span > 90:
        return "c"
    if span > 6:
        return "l"
    return "i"


def project(m: Callable, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of the projection ``m`` (a basemap) for 1-d arrays of any length.

    pyproj sends length-1 arrays down its scalar path, which trips a NumPy deprecation (array-to-scalar
    conversion), so a single point is projected as a pair and the copy dropped; empty input skips pyproj.
    """
    lon = np.asarray(lon, dtype=np.float64).reshape(-1)
    lat = np.asarray(lat, dtype=np.float64).reshape(-1)
    if lon.size == 0:
        return lon.copy(), lat.copy()
    if lon.size == 1:
        x, y = m(np.repeat(lon, 2), np.repeat(lat, 2))
        return np.asarray(x)[:1], np.asarray(y)[:1]
    x, y = m(lon, lat)
    return np.asarray(x), np.asarray(y)


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 20, 30, 45, 60):
        if step >= raw:
            return float(step)
    return 90.0


def gridlines(lo: float, hi: float) -> np.ndarray:
    """About five round values (0.1° to 90° apart) from ``lo`` to ``hi``, both included when they fall on a step."""
    step = _nice_step(hi - lo)
    return np.arange(np.ceil(lo / step) * step, hi + step * 1e-6, step)


@dataclass(frozen=True)
class Graticule:
    """Gridline positions in map coordinates and their labels ('95°W', '30°N'), as the map's axis ticks."""

    xs: np.ndarray
    x_labels: list[str]
    ys: np.ndarray
    y_labels: list[str]


def graticule(m: Callable, extent: Extent) -> Graticule:
    """Where the meridians and parallels of a map in the projection ``m`` fall, and how they are labelled.

    Both projections used are cylindrical (x follows longitude, y follows latitude), so each gridline is fixed by
    one coordinate, projected through the middle of the box. Meridians past 180° are labelled as °E/°W.
    """
    lon_min, lon_max, lat_min, lat_max = extent
    lons = gridlines(lon_min, lon_max)
    lats = gridlines(lat_min, lat_max)
    xs, _ = project(m, lons, np.full(lons.shape, (lat_min + lat_max) / 2))
    _, ys = project(m, np.full(lats.shape, (lon_min + lon_max) / 2), lats)
    return Graticule(
        xs=xs,
        x_labels=[format_degrees(v, "E", "W", trim=True) for v in wrap_longitude(lons)],
        ys=ys,
        y_labels=[format_degrees(v, "N", "S", trim=True) for v in lats],
    )


def spread_discs(
    ax, x: np.ndarray, y: np.ndarray, *, min_points: float, rounds: int = 60
) -> tuple[np.ndarray, np.ndarray]:
    """Nudge centroid discs apart until none overlaps another (discs ``min_points`` wide, in display space).

    A few rounds of pairwise repulsion: each overlapping pair moves apart along the line joining it by half the
    overlap. Positions are returned in data coordinates; far-apart centroids do not move, and come back exactly as
    given (not through a display-space round trip, whose rounding would make them look moved).
    """
    to_display, to_data = ax.transData, ax.transData.inverted()
    start = to_display.transform(np.column_stack([x, y]))
    points = start.copy()
    min_pixels = min_points * ax.figure.dpi / 72.0
    for _ in range(rounds):
        delta = points[:, None, :] - points[None, :, :]
        dist = np.hypot(delta[..., 0], delta[..., 1])
        np.fill_diagonal(dist, np.inf)
        overlap = np.clip(min_pixels - dist, 0.0, None)
        if not overlap.any():
            break
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(dist[..., None] > 1e-9, delta / dist[..., None], 0.0)
        same = dist <= 1e-9  # exactly stacked: the two move opposite ways along one diagonal
        order = np.sign(np.subtract.outer(np.arange(len(points)), np.arange(len(points))))
        unit[same] = order[same][:, None] * np.array([0.7071, 0.7071])
        points = points + (unit * overlap[..., None] / 2).sum(axis=1)
    moved = np.any(points != start, axis=1)
    data = np.column_stack([x, y]).astype(np.float64)
    data[moved] = to_data.transform(points[moved])
    return data[:, 0], data[:, 1]
