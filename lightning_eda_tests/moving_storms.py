"""Planted moving storms: flash rows like the store's, with the cell each flash was planted in, for scoring tracking.

The scene (:func:`moving_storms`) lasts two hours from ``start`` and crosses an hour boundary:

* ten cells moving at 5-25 m/s, mostly eastward, 3-7 km across (σ of the flash positions), 4-40 flashes/min;
* a cell that splits at ``start + 50 min`` into a larger child (2/3 of its flashes, keeping its cell number) and a
  smaller one (a new cell number), drifting apart at 24 m/s;
* a pair that merges at ``start + 80 min``: the larger (20 flashes/min) keeps its number, the smaller (10) ends;
* a cell born at ``start + 44 min`` whose rate triples between ``start + 64 min`` and ``start + 66 min``, after twenty
  steady minutes;
* noise flashes spread uniformly over the region.

"Steady" here means the flashes per minute alternate between ``rate + a`` and ``rate - a`` (``a`` about a tenth of
the rate) from one 2-minute period to the next. Poisson counts would not do: the 2σ test is scale-free, and on
independent period-to-period noise it fires in about 6 % of the periods (measured on Poisson counts at 12, 20 and 40
flashes/min), which is the algorithm's known false-alarm rate, not a tracking error. Seeded and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from lightning_eda.analysis.features import laea_inverse

CENTRE = (35.0, -95.0)
NOISE_CELL = -1


@dataclass(frozen=True)
class Cell:
    """One planted cell: where it is at ``start`` (km in the plane centred on ``CENTRE``), how it moves (m/s)."""

    cell: int
    start: pd.Timestamp
    end: pd.Timestamp
    x0_km: float
    y0_km: float
    vx_ms: float
    vy_ms: float
    sigma_km: float
    rate: float  # flashes per minute
    jump_at: pd.Timestamp | None = None

    def position(self, t: pd.Timestamp | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seconds = (pd.DatetimeIndex(np.atleast_1d(t)) - self.start).total_seconds().to_numpy()
        return self.x0_km + self.vx_ms * seconds / 1000.0, self.y0_km + self.vy_ms * seconds / 1000.0

    def counts(self, minutes: pd.DatetimeIndex) -> np.ndarray:
        """Flashes in each minute: the steady alternation, tripled from ``jump_at`` (doubled in its first minute)."""
        amplitude = max(1.0, round(0.1 * self.rate))
        period_parity = (minutes.floor("2min") - pd.Timestamp(0)) // pd.Timedelta(minutes=2) % 2
        base = self.rate + np.where(period_parity == 0, amplitude, -amplitude)
        if self.jump_at is not None:
            base = np.where(minutes == self.jump_at, 2 * base, np.where(minutes > self.jump_at, 3 * base, base))
        return np.round(base).astype(np.int64)


@dataclass(frozen=True)
class MovingStorms:
    """A planted scene: ``flashes`` (store columns plus ``cell``, :data:`NOISE_CELL` for noise) and what was planted."""

    flashes: pd.DataFrame
    cells: tuple[Cell, ...]
    steady_cells: tuple[int, ...]
    split: tuple[int, int, pd.Timestamp]  # (parent cell, split-off cell, when)
    merge: tuple[int, int, pd.Timestamp]  # (ending cell, continuing cell, when)
    jump: tuple[int, pd.Timestamp]  # (cell, when its rate starts rising)


def moving_storms(start: str | pd.Timestamp = "2024-06-01 18:00", seed: int = 0) -> MovingStorms:
    """The two-hour scene described in the module docstring."""
    start = pd.Timestamp(start)
    rng = np.random.default_rng(seed)
    cells = _scene_cells(start, rng, 0.0)
    split_at, merge_at, jump_at = (start + pd.Timedelta(minutes=m) for m in (50, 80, 64))
    return MovingStorms(
        flashes=_as_store_rows(_scene_flashes(cells, start, rng, 0.0), rng),
        cells=tuple(cells),
        steady_cells=tuple(range(10)),
        split=(10, 11, split_at),
        merge=(13, 12, merge_at),
        jump=(14, jump_at),
    )


def storm_day(day: str | pd.Timestamp = "2024-06-01", copies: int = 3, seed: int = 0) -> pd.DataFrame:
    """A day of flashes for timing: the two-hour scene twelve times over, ``copies`` times side by side 2000 km apart
    (each with its own seed), about 400,000 flashes a day per copy. Store columns plus ``cell``."""
    rng = np.random.default_rng(seed)
    parts = []
    for block in range(12):
        start = pd.Timestamp(day) + pd.Timedelta(hours=2 * block)
        for copy in range(copies):
            x_offset = 2000.0 * (copy - (copies - 1) / 2)
            cells = _scene_cells(start, rng, x_offset)
            parts += _scene_flashes(cells, start, rng, x_offset)
    return _as_store_rows(parts, rng)


def _scene_cells(start: pd.Timestamp, rng: np.random.Generator, x_offset: float) -> list[Cell]:
    end = start + pd.Timedelta(hours=2)
    cells: list[Cell] = []
    rates = [4.0, 6.0, 8.0, 12.0, 15.0, 18.0, 20.0, 25.0, 30.0, 40.0]
    slots = [(x, y) for y in (-300.0, -100.0, 100.0, 300.0) for x in (-600.0, -200.0, 200.0)][:10]
    for number, ((x0, y0), rate) in enumerate(zip(slots, rng.permutation(rates), strict=True)):
        speed, bearing = rng.uniform(5.0, 25.0), np.radians(rng.uniform(70.0, 110.0))
        cells.append(
            Cell(
                number,
                start,
                end,
                x0,
                y0,
                speed * np.sin(bearing),
                speed * np.cos(bearing),
                rng.uniform(3.0, 7.0),
                float(rate),
            )
        )

    split_at = start + pd.Timedelta(minutes=50)
    parent = Cell(10, start, split_at, -600.0, 500.0, 12.0, 0.0, 5.0, 30.0)
    px, py = (float(v[0]) for v in parent.position(split_at))
    cells += [
        parent,
        Cell(10, split_at, end, px, py, 12.0, 12.0, 4.0, 20.0),
        Cell(11, split_at, end, px, py, 12.0, -12.0, 3.0, 10.0),
    ]

    merge_at = start + pd.Timedelta(minutes=80)
    meet_x, meet_y = 300.0, 500.0
    before = (merge_at - start).total_seconds() / 1000.0
    big = Cell(12, start, merge_at, meet_x - 15.0 * before, meet_y - 6.0 * before, 15.0, 6.0, 5.0, 20.0)
    small = Cell(13, start, merge_at, meet_x - 10.0 * before, meet_y + 8.0 * before, 10.0, -8.0, 4.0, 10.0)
    cells += [
        big,
        small,
        Cell(12, merge_at, end, meet_x, meet_y, (2 * 15.0 + 10.0) / 3, (2 * 6.0 - 8.0) / 3, 6.0, 30.0),
    ]

    jump_at = start + pd.Timedelta(minutes=64)
    cells.append(Cell(14, start + pd.Timedelta(minutes=44), end, 0.0, -500.0, 10.0, 3.0, 5.0, 15.0, jump_at=jump_at))

    return [replace(cell, x0_km=cell.x0_km + x_offset) for cell in cells]


def _scene_flashes(cells: list[Cell], start: pd.Timestamp, rng: np.random.Generator, x_offset: float) -> list:
    parts = [_cell_flashes(cell, rng) for cell in cells]
    n_noise = 20 * 120
    noise_t = start + pd.to_timedelta(np.sort(rng.uniform(0, 7200, n_noise)), unit="s")
    parts.append(
        (
            noise_t,
            x_offset + rng.uniform(-800, 800, n_noise),
            rng.uniform(-600, 700, n_noise),
            np.full(n_noise, NOISE_CELL),
        )
    )
    return parts


def _cell_flashes(cell: Cell, rng: np.random.Generator):
    minutes = pd.date_range(cell.start, cell.end, freq="min", inclusive="left")
    counts = cell.counts(minutes)
    offsets = rng.uniform(0, 60, counts.sum())
    times = np.repeat(minutes, counts) + pd.to_timedelta(offsets, unit="s")
    x, y = cell.position(times)
    x = x + rng.normal(0, cell.sigma_km, len(x))
    y = y + rng.normal(0, cell.sigma_km, len(y))
    return times, x, y, np.full(len(x), cell.cell)


def _as_store_rows(parts, rng: np.random.Generator) -> pd.DataFrame:
    """Flash rows as the store holds them: granule file, per-file ``flash_id``, times, lat/lon, energy (J), area
    (m²)."""
    times = pd.DatetimeIndex(np.concatenate([np.asarray(p[0], dtype="datetime64[ns]") for p in parts]))
    x = np.concatenate([p[1] for p in parts])
    y = np.concatenate([p[2] for p in parts])
    cell = np.concatenate([p[3] for p in parts])
    order = np.argsort(times.to_numpy(), kind="stable")
    times, x, y, cell = times[order], x[order], y[order], cell[order]
    lat, lon = laea_inverse(x, y, *CENTRE)
    granule = times.floor("20s")
    source_file = pd.Series(granule.strftime("OR_GLM-L2-LCFA_G16_s%Y%j%H%M%S0.nc"))
    flash_id = source_file.groupby(source_file).cumcount().to_numpy() + 1
    return pd.DataFrame(
        {
            "source_file": source_file,
            "flash_id": flash_id.astype(np.int64),
            "time_start": times,
            "time_end": times + pd.to_timedelta(rng.lognormal(np.log(0.3), 0.5, len(times)), unit="s"),
            "lat": lat,
            "lon": lon,
            "energy": rng.lognormal(np.log(2e-14), 1.0, len(times)),
            "area": rng.lognormal(np.log(1.5e8), 0.6, len(times)),
            "cell": cell.astype(np.int64),
        }
    )
