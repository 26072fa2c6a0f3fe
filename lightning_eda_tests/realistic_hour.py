"""Realistic scenes of flashes built in memory from the real granules, for tests and benchmarks.

The realistic hour is what ``benchmarks/synthetic_hour.py`` writes to disk, decoded: the busy real granules (files
over 100 kB) cycled over the 180 20-s slots of an hour, each copy's times shifted into its slot. The other scenes
vary it the ways real hours vary: another subset and order of granules, positions jittered by a few km (the same
storms flashing at slightly different places), storms drifting with the wind through the hour, and a day made of
hours whose storms sit in other places.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from lightning_eda.analysis.features import FeatureTransform, laea_forward, laea_inverse
from lightning_eda.goes.granule import read_granule

SLOT = timedelta(seconds=20)
SLOTS_PER_HOUR = 180
BUSY_BYTES = 100_000
HOUR = datetime(2024, 7, 1, 18)
FLASH_COLUMNS = ["source_file", "flash_id", "time_start", "time_end", "lat", "lon", "energy", "area", "quality_flag"]


def busy_granules(real_granules: Sequence[Path]) -> list[Path]:
    """The granules that hold flashes (an empty granule is about 84 kB), in name order."""
    return sorted(p for p in real_granules if p.stat().st_size > BUSY_BYTES)


def granule_flashes(path: Path) -> pd.DataFrame:
    """The flashes of one real granule, with its file name as ``source_file`` and times relative to its start."""
    granule = read_granule(path)
    start = pd.Timestamp(granule.flashes["time_start"].min()).floor("20s")
    flashes = granule.flashes.assign(source_file=path.name)
    for column in ("time_start", "time_end"):
        flashes[column] = flashes[column] - start
    return flashes[FLASH_COLUMNS]


def cycled_hour(
    granules: Sequence[pd.DataFrame], *, hour: datetime = HOUR, offset: int = 0, slots: int = SLOTS_PER_HOUR
) -> pd.DataFrame:
    """``slots`` copies of the granules' flashes, cycled from ``granules[offset]``, slot i starting at
    ``hour + i·20 s``.

    Each copy gets its own ``source_file`` (the slot's number), so ``(source_file, flash_id)`` stays a key.
    """
    copies = []
    for slot in range(slots):
        flashes = granules[(slot + offset) % len(granules)]
        start = pd.Timestamp(hour + slot * SLOT)
        copies.append(
            flashes.assign(
                source_file=f"slot{slot:03d}_" + flashes["source_file"],
                time_start=start + flashes["time_start"],
                time_end=start + flashes["time_end"],
            )
        )
    return pd.concat(copies, ignore_index=True)


def realistic_hour(real_granules: Sequence[Path], *, offset: int = 0) -> pd.DataFrame:
    """The hour of the storm-scale issue: the busy granules cycled over 180 slots (44,010 flashes with the 5 files)."""
    return cycled_hour([granule_flashes(p) for p in busy_granules(real_granules)], offset=offset)


def _move(flashes: pd.DataFrame, dx_km: np.ndarray, dy_km: np.ndarray) -> pd.DataFrame:
    """The flashes moved by (dx, dy) km on the ground, in the equal-area plane about their own centre."""
    lat, lon = flashes["lat"].to_numpy(float), flashes["lon"].to_numpy(float)
    transform = FeatureTransform.fit(lat, lon)
    x, y = laea_forward(lat, lon, transform.lat0, transform.lon0)
    new_lat, new_lon = laea_inverse(x + dx_km, y + dy_km, transform.lat0, transform.lon0)
    return flashes.assign(lat=new_lat.astype(np.float32), lon=new_lon.astype(np.float32))


def jittered(flashes: pd.DataFrame, sigma_km: float, seed: int) -> pd.DataFrame:
    """Every flash moved by an independent normal step of ``sigma_km`` in x and in y."""
    rng = np.random.default_rng(seed)
    return _move(flashes, rng.normal(0, sigma_km, len(flashes)), rng.normal(0, sigma_km, len(flashes)))


def drifting(flashes: pd.DataFrame, velocity_kmh: tuple[float, float]) -> pd.DataFrame:
    """Storms carried by a steady wind: each flash moved by ``velocity × (its time − the first flash's time)``."""
    hours = (flashes["time_start"] - flashes["time_start"].min()).dt.total_seconds().to_numpy() / 3600.0
    return _move(flashes, velocity_kmh[0] * hours, velocity_kmh[1] * hours)


def day_like(granules: Sequence[pd.DataFrame], *, hours: int = 24, seed: int = 0) -> pd.DataFrame:
    """``hours`` hours of the granules' flashes in a row, each hour's storms displaced as a whole by a few hundred km.

    Storms are born and die over a day, so each hour's cells sit somewhere new (one random displacement of up to
    600 km per hour and granule), and within the hour they drift with a 40 km/h wind.
    """
    rng = np.random.default_rng(seed)
    day = []
    for hour in range(hours):
        shifted = [_move(g, *rng.uniform(-600, 600, (2, 1))) for g in granules]
        one = cycled_hour(shifted, hour=HOUR + timedelta(hours=hour), offset=hour)
        day.append(drifting(one, (40.0, 10.0)).assign(source_file=f"h{hour:02d}_" + one["source_file"]))
    return pd.concat(day, ignore_index=True)
