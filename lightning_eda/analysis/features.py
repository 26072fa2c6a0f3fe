"""Preprocessing of GLM flashes for clustering: cleaning, equal-area projection, scaling.

k-means measures squared Euclidean distance, so the features must be coordinates in which a distance means the
same thing everywhere. Raw degrees do not: a degree of longitude is 111 km at the equator and 72 km at 50°N. The
flashes are therefore projected with a Lambert azimuthal equal-area projection centred on the data, then z-scored.
Everything needed to map cluster centres back to latitude/longitude is kept in a :class:`FeatureTransform`, which
serialises to a plain dict for storage as JSON metadata.

No Dagster imports here; assets call these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from lightning_eda.analysis.storm_scale import StormSegmentation, segment_storms
from lightning_eda.geo import wrap_longitude

logger = logging.getLogger(__name__)

#: Mean Earth radius (IUGG R1) in km; the projection uses a spherical Earth.
EARTH_RADIUS_KM = 6371.0088

#: Reasons a row can be dropped by :func:`clean_flashes`, in the order they are applied.
DROP_REASONS = ("missing_coordinates", "out_of_range", "quality_flag", "duplicate")

_FLASH_KEY = ["source_file", "flash_id"]
_PROJECTION_NAME = "laea_sphere"


def clean_flashes(
    df: pd.DataFrame, *, quality_flags: Collection[Any] | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop flashes that cannot be clustered and count why.

    Parameters
    ----------
    df : DataFrame
        Flashes with at least the columns ``source_file, flash_id, lat, lon`` (and ``quality_flag`` when
        ``quality_flags`` is given). Other columns are carried through unchanged.
    quality_flags : collection, optional
        When given, only rows whose ``quality_flag`` is in it are kept (an empty collection keeps nothing).
        ``None`` (default) keeps every flag.

    Returns
    -------
    clean_df : DataFrame
        The kept rows in their original order, with a fresh ``RangeIndex`` so it lines up with the rows of
        :func:`build_features`.
    drop_counts : dict[str, int]
        Rows dropped per reason; every key of :data:`DROP_REASONS` is present, 0 when nothing was dropped.

    Notes
    -----
    The filters are applied in the order of :data:`DROP_REASONS` and each dropped row is counted once, under the
    first reason that applies:

    1. ``missing_coordinates``: ``lat`` or ``lon`` is NaN.
    2. ``out_of_range``: ``lat`` outside [-90, 90] or ``lon`` outside [-180, 180) (infinities included).
    3. ``quality_flag``: ``quality_flag`` not in ``quality_flags``.
    4. ``duplicate``: a later row with the same ``(source_file, flash_id)`` as a kept one. Duplicates are removed
       last so that, when one copy of a flash is invalid, a valid copy is the one kept.

    The sum of the counts plus ``len(clean_df)`` equals ``len(df)``.
    """
    required = ["lat", "lon", *_FLASH_KEY]
    if quality_flags is not None:
        if isinstance(quality_flags, (str, bytes)):
            raise TypeError(f"quality_flags must be a collection of flags, not the string {quality_flags!r}")
        required.append("quality_flag")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"clean_flashes: missing columns {missing}; got {list(df.columns)}")

    lat = pd.to_numeric(df["lat"], errors="coerce")
    lon = pd.to_numeric(df["lon"], errors="coerce")
    keep = np.ones(len(df), dtype=bool)
    counts: dict[str, int] = {}

    def _drop(reason: str, bad: np.ndarray) -> None:
        nonlocal keep
        newly = bad & keep
        counts[reason] = int(newly.sum())
        keep &= ~newly

    _drop("missing_coordinates", (lat.isna() | lon.isna()).to_numpy())
    # ``>=``/``<`` comparisons are False for NaN, so the negated form also catches anything not a finite value.
    in_range = (lat >= -90.0) & (lat <= 90.0) & (lon >= -180.0) & (lon < 180.0)
    _drop("out_of_range", ~in_range.to_numpy())
    if quality_flags is not None:
        _drop("quality_flag", ~df["quality_flag"].isin(list(quality_flags)).to_numpy())
    else:
        counts["quality_flag"] = 0
    kept_key = df.loc[keep, _FLASH_KEY]
    dup = np.zeros(len(df), dtype=bool)
    dup[np.flatnonzero(keep)] = kept_key.duplicated(keep="first").to_numpy()
    _drop("duplicate", dup)

    drop_counts = {reason: counts[reason] for reason in DROP_REASONS}
    clean = df.loc[keep].reset_index(drop=True)
    logger.info("clean_flashes: kept %d of %d rows; dropped %s", len(clean), len(df), drop_counts)
    return clean, drop_counts


# --------------------------------------------------------------------------------------------------------------
# Lambert azimuthal equal-area projection (spherical)
# --------------------------------------------------------------------------------------------------------------


def _frame(lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (centre, east, north) of the tangent frame at (lat0, lon0), in Earth-centred coordinates."""
    p0, l0 = np.radians(lat0), np.radians(lon0)
    centre = np.array([np.cos(p0) * np.cos(l0), np.cos(p0) * np.sin(l0), np.sin(p0)])
    east = np.array([-np.sin(l0), np.cos(l0), 0.0])
    north = np.array([-np.sin(p0) * np.cos(l0), -np.sin(p0) * np.sin(l0), np.cos(p0)])
    return centre, east, north


def laea_forward(
    lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float, radius: float = EARTH_RADIUS_KM
) -> tuple[np.ndarray, np.ndarray]:
    """Project latitude/longitude (degrees) to Lambert azimuthal equal-area x, y (units of ``radius``).

    Parameters
    ----------
    lat, lon : array_like
        Coordinates in degrees; any shape, broadcast together. Longitudes may use any 360° convention.
    lat0, lon0 : float
        Centre of the projection in degrees; it maps to (0, 0), x grows east and y north there.
    radius : float, default EARTH_RADIUS_KM
        Sphere radius; x and y come out in the same unit (km by default).

    Returns
    -------
    x, y : ndarray of float64

    Notes
    -----
    Snyder (1987), *Map Projections — A Working Manual*, USGS PP 1395, eqs. 24-2 to 24-4, written with unit
    vectors: for a point P on the unit sphere and the tangent frame (C, E, N) at the centre,
    ``x = R k E·P``, ``y = R k N·P`` with ``k = sqrt(2 / (1 + C·P))``. Areas are preserved exactly; distances
    from the centre are ``2 R sin(c/2)`` for a great-circle angle ``c``, so scale errors grow as ``c²/8``
    (0.08 % at 500 km). The antipode of the centre (``C·P = -1``) has no image and gives non-finite values.
    """
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    cos_phi = np.cos(phi)
    px, py, pz = cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)
    c, e, n = _frame(lat0, lon0)
    dot_c = c[0] * px + c[1] * py + c[2] * pz
    dot_e = e[0] * px + e[1] * py
    dot_n = n[0] * px + n[1] * py + n[2] * pz
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.sqrt(2.0 / (1.0 + dot_c))
    return radius * k * dot_e, radius * k * dot_n


def laea_inverse(
    x: np.ndarray, y: np.ndarray, lat0: float, lon0: float, radius: float = EARTH_RADIUS_KM
) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`laea_forward`: x, y (units of ``radius``) to latitude and longitude in degrees.

    Returns longitudes in [-180, 180). Points farther than ``2 * radius`` from the centre (outside the image of
    the sphere) give NaN.

    Notes
    -----
    With ``t = rho / (2R)`` the great-circle angle from the centre satisfies ``sin(c/2) = t``, so
    ``P = cos(c) C + sin(c) (x E + y N) / rho`` with ``cos c = 1 - 2t²`` and ``sin(c)/rho = sqrt(1 - t²) / R``.
    Latitude comes from ``atan2`` rather than ``asin``, which keeps full precision near the poles; nothing
    divides by ``rho``, so the centre itself needs no special case.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    t2 = (x * x + y * y) / (2.0 * radius) ** 2
    with np.errstate(invalid="ignore"):
        s = np.sqrt(1.0 - t2) / radius
    cos_c = 1.0 - 2.0 * t2
    c, e, n = _frame(lat0, lon0)
    px = cos_c * c[0] + s * (x * e[0] + y * n[0])
    py = cos_c * c[1] + s * (x * e[1] + y * n[1])
    pz = cos_c * c[2] + s * (y * n[2])
    lat = np.degrees(np.arctan2(pz, np.hypot(px, py)))
    lon = wrap_longitude(np.degrees(np.arctan2(py, px)))
    return lat, lon


def projection_centre(lat: np.ndarray, lon: np.ndarray) -> tuple[float, float]:
    """Centre for the projection: arithmetic mean latitude and circular mean longitude (degrees).

    The circular mean (direction of the summed unit vectors ``(cos λ, sin λ)``) keeps data that straddles the
    antimeridian centred near ±180° instead of near 0°. If the longitudes cancel out (e.g. spread evenly round
    the globe) the mean direction is undefined and 0 is used. Empty input gives (0, 0).
    """
    lat = np.asarray(lat, dtype=np.float64)
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    if lat.size == 0:
        return 0.0, 0.0
    s, c = np.sin(lam).mean(), np.cos(lam).mean()
    lon0 = float(np.degrees(np.arctan2(s, c))) if np.hypot(s, c) > 1e-12 else 0.0
    return float(lat.mean()), float(wrap_longitude(lon0))


# --------------------------------------------------------------------------------------------------------------
# Feature transform
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureTransform:
    """Map latitude/longitude to clustering features and back.

    ``features = ((x - x_mean) / x_std, (y - y_mean) / y_std)`` where ``x, y`` (km) are the Lambert azimuthal
    equal-area coordinates about ``(lat0, lon0)`` on a sphere of radius ``radius_km``.

    Build one with :meth:`fit` (or :func:`build_features`); store it with :meth:`to_dict` and restore it with
    :meth:`from_dict`.
    """

    lat0: float
    lon0: float
    x_mean: float
    y_mean: float
    x_std: float
    y_std: float
    radius_km: float = EARTH_RADIUS_KM

    def __post_init__(self) -> None:
        for name in ("lat0", "lon0", "x_mean", "y_mean", "x_std", "y_std", "radius_km"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise ValueError(f"FeatureTransform: {name}={value!r} must be finite")
        for name in ("x_std", "y_std", "radius_km"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FeatureTransform: {name}={getattr(self, name)!r} must be > 0")
        if not -90.0 <= self.lat0 <= 90.0:
            raise ValueError(f"FeatureTransform: lat0={self.lat0!r} must be in [-90, 90]")

    @classmethod
    def fit(cls, lat: np.ndarray, lon: np.ndarray) -> FeatureTransform:
        """Centre the projection on the data and take the mean and (population) std of the projected x, y.

        A standard deviation of 0 (all points on one line or one spot) is replaced by 1 so that scaling never
        divides by zero. Empty input gives the centre (0, 0), means 0 and stds 1.
        """
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if lat.shape != lon.shape:
            raise ValueError(f"FeatureTransform.fit: lat shape {lat.shape} != lon shape {lon.shape}")
        lat0, lon0 = projection_centre(lat, lon)
        if lat.size == 0:
            return cls(lat0=lat0, lon0=lon0, x_mean=0.0, y_mean=0.0, x_std=1.0, y_std=1.0)
        x, y = laea_forward(lat, lon, lat0, lon0)
        x_std, y_std = float(x.std()), float(y.std())
        return cls(
            lat0=lat0,
            lon0=lon0,
            x_mean=float(x.mean()),
            y_mean=float(y.mean()),
            x_std=x_std if x_std > 0 else 1.0,
            y_std=y_std if y_std > 0 else 1.0,
        )

    def to_xy(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projected (unscaled) coordinates in km."""
        return laea_forward(lat, lon, self.lat0, self.lon0, self.radius_km)

    def to_features(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Features of shape (n, 2), float64, for 1-d ``lat``, ``lon`` of length n (degrees)."""
        lat = np.asarray(lat, dtype=np.float64).reshape(-1)
        lon = np.asarray(lon, dtype=np.float64).reshape(-1)
        if lat.shape != lon.shape:
            raise ValueError(f"to_features: lat has {lat.size} values, lon has {lon.size}")
        x, y = self.to_xy(lat, lon)
        out = np.empty((lat.size, 2), dtype=np.float64)
        out[:, 0] = (x - self.x_mean) / self.x_std
        out[:, 1] = (y - self.y_mean) / self.y_std
        return out

    def to_latlon(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map features of shape (n, 2) (e.g. k-means centroids) back to (lat, lon) in degrees, lon in [-180, 180)."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != 2:
            raise ValueError(f"to_latlon: features must have shape (n, 2), got {f.shape}")
        x = f[:, 0] * self.x_std + self.x_mean
        y = f[:, 1] * self.y_std + self.y_mean
        return laea_inverse(x, y, self.lat0, self.lon0, self.radius_km)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (plain floats plus the projection name)."""
        return {"projection": _PROJECTION_NAME, **{k: float(v) for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureTransform:
        """Inverse of :meth:`to_dict`. Raises ``ValueError`` for another projection or missing fields."""
        projection = data.get("projection", _PROJECTION_NAME)
        if projection != _PROJECTION_NAME:
            raise ValueError(f"FeatureTransform.from_dict: projection={projection!r}, expected {_PROJECTION_NAME!r}")
        fields = ("lat0", "lon0", "x_mean", "y_mean", "x_std", "y_std")
        missing = [f for f in fields if f not in data]
        if missing:
            raise ValueError(f"FeatureTransform.from_dict: missing fields {missing}")
        kwargs = {f: float(data[f]) for f in fields}
        return cls(**kwargs, radius_km=float(data.get("radius_km", EARTH_RADIUS_KM)))


def build_features(clean_df: pd.DataFrame) -> tuple[np.ndarray, FeatureTransform]:
    """Clustering features for cleaned flashes (see :func:`clean_flashes`).

    Returns
    -------
    features : ndarray of float64, shape (n, 2)
        z-scored equal-area (x, y), row i for row i of ``clean_df``.
    transform : FeatureTransform
        Fitted on ``clean_df``; ``transform.to_latlon(centroids)`` gives the centroids' coordinates.

    Raises ``ValueError`` if coordinates are missing or out of range (run :func:`clean_flashes` first).
    An empty frame gives an empty (0, 2) array and the default transform.
    """
    for col in ("lat", "lon"):
        if col not in clean_df.columns:
            raise ValueError(f"build_features: missing column {col!r}; got {list(clean_df.columns)}")
    lat = clean_df["lat"].to_numpy(dtype=np.float64)
    lon = clean_df["lon"].to_numpy(dtype=np.float64)
    bad = ~((lat >= -90) & (lat <= 90) & (lon >= -180) & (lon < 180))
    if bad.any():
        raise ValueError(
            f"build_features: {int(bad.sum())} rows have missing or out-of-range coordinates "
            f"(first at position {int(np.flatnonzero(bad)[0])}); run clean_flashes first"
        )
    transform = FeatureTransform.fit(lat, lon)
    return transform.to_features(lat, lon), transform


FEATURE_COLUMNS = ["source_file", "flash_id", "time_start", "time_end", "lat", "lon", "energy", "quality_flag", "area"]


@dataclass(frozen=True)
class LatLonBox:
    """A region: latitudes ``lat_min..lat_max``, longitudes ``lon_min..lon_max`` (degrees, edges included).

    ``lon_min > lon_max`` means the box crosses the antimeridian: ``lon_min=170, lon_max=-170`` is the 20° around
    180°.
    """

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def __post_init__(self) -> None:
        if not -90.0 <= self.lat_min < self.lat_max <= 90.0:
            raise ValueError(
                f"box latitudes {self.lat_min}..{self.lat_max} must satisfy -90 <= lat_min < lat_max <= 90"
            )
        for name in ("lon_min", "lon_max"):
            if not -180.0 <= getattr(self, name) <= 180.0:
                raise ValueError(f"box {name}={getattr(self, name)} must lie in [-180, 180]")
        if self.lon_min == self.lon_max:
            raise ValueError("box lon_min and lon_max must differ (lon_min > lon_max crosses the antimeridian)")

    @property
    def crosses_antimeridian(self) -> bool:
        return self.lon_min > self.lon_max

    def contains(self, lat, lon) -> np.ndarray:
        lat = np.asarray(lat, dtype=np.float64)
        lon = wrap_longitude(lon)
        lon_min, lon_max = float(wrap_longitude(self.lon_min)), float(self.lon_max)
        if self.crosses_antimeridian:
            in_lon = (lon >= lon_min) | (lon <= lon_max)
        else:
            in_lon = (lon >= self.lon_min) & (lon <= self.lon_max)
        return (lat >= self.lat_min) & (lat <= self.lat_max) & in_lon

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(lon_min, lon_max, lat_min, lat_max), as :func:`lightning_eda.plots.cluster_map.cluster_map` takes it."""
        return self.lon_min, self.lon_max, self.lat_min, self.lat_max

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Preprocessed:
    """The preprocessor's output: one row per kept flash (``flash_features``) and the drop counts per reason."""

    features: pd.DataFrame
    dropped: dict[str, int]
    transform: FeatureTransform
    storms: StormSegmentation
    time_weight_km_per_min: float = 0.0


def preprocess(
    flashes: pd.DataFrame,
    *,
    quality_flags: Collection[Any] | None = None,
    box: LatLonBox | None = None,
    time_weight_km_per_min: float = 0.0,
) -> Preprocessed:
    """Keep the flashes in ``box``, clean them, fit the equal-area transform and z-score them.

    ``features`` keeps :data:`FEATURE_COLUMNS` and adds ``row_id`` (the feature row), ``x_km``, ``y_km`` (equal-area
    coordinates), ``f_x``, ``f_y`` (the z-scored position k-means sees) and ``f_t``: with a time weight ``w`` (km per
    minute), the flash's time in minutes from the first flash times ``w``, centred and divided by the same spatial
    scale as the position (the geometric mean of the x and y standard deviations), so that in feature space two
    flashes ``Δt`` minutes apart are as far apart as two flashes ``w·Δt`` km apart at the same moment. ``w = 0``
    (the default) makes ``f_t`` zero: clustering in space only. ``storm`` is the flash's storm (``storms``, from
    :func:`~lightning_eda.analysis.storm_scale.segment_storms` on ``x_km``, ``y_km``; -1 outside every storm): done
    once here, so the storm-scale k, the evaluators' range and the k-means all read the same storms. Empty when nothing
    survives.
    """
    if time_weight_km_per_min < 0 or not np.isfinite(time_weight_km_per_min):
        raise ValueError(f"time_weight_km_per_min={time_weight_km_per_min!r} must be a number >= 0")
    outside = 0
    if box is not None:
        inside = box.contains(flashes["lat"].to_numpy(), flashes["lon"].to_numpy())
        outside = int((~inside).sum())
        flashes = flashes.loc[inside].reset_index(drop=True)
    clean, dropped = clean_flashes(flashes, quality_flags=quality_flags)
    X, transform = build_features(clean)
    x_km, y_km = transform.to_xy(clean["lat"].to_numpy(), clean["lon"].to_numpy())
    f_t = np.zeros(len(clean))
    if time_weight_km_per_min > 0 and len(clean):
        minutes = (clean["time_start"] - clean["time_start"].min()).dt.total_seconds().to_numpy() / 60.0
        t_km = minutes * time_weight_km_per_min
        f_t = (t_km - t_km.mean()) / np.sqrt(transform.x_std * transform.y_std)
    storms = segment_storms(x_km, y_km)
    features = clean[FEATURE_COLUMNS].assign(
        row_id=np.arange(len(clean)),
        x_km=x_km,
        y_km=y_km,
        f_x=X[:, 0],
        f_y=X[:, 1],
        f_t=f_t,
        storm=storms.labels.astype(np.int32),
    )
    return Preprocessed(
        features=features,
        dropped={"outside_box": outside, **dropped},
        transform=transform,
        storms=storms,
        time_weight_km_per_min=float(time_weight_km_per_min),
    )


def feature_matrix(features: pd.DataFrame, time_weight_km_per_min: float) -> np.ndarray:
    """What k-means clusters: ``f_x, f_y``, and ``f_t`` when time counts."""
    columns = ["f_x", "f_y", "f_t"] if time_weight_km_per_min > 0 else ["f_x", "f_y"]
    return features[columns].to_numpy(dtype=np.float64)
