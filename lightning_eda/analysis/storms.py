"""Storm statistics per cluster: flash rate, energy and area, extent, duration, and the 2σ lightning jump.

A cluster is treated as one storm. Rates are flashes per minute. The lightning jump follows Schultz, Petersen and
Carey (2009, *J. Appl. Meteor. Climatol.* 48, 2543–2563, the "2σ" algorithm): total flash rates are averaged over
2-minute periods; the rate of change between consecutive periods (DFRDT, flashes/min²) is compared with twice the
standard deviation of the DFRDT values of the previous 10 minutes (5 periods); once the storm's rate exceeds 10
flashes/min, a DFRDT above that threshold is a jump. A storm needs 12 minutes of history before a jump can be
flagged, so short windows give none. No Dagster here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERIOD_MINUTES = 2
HISTORY_MINUTES = 10
RATE_THRESHOLD = 10.0  # flashes per minute before a jump can count
SIGMA_LEVEL = 2.0

STATISTIC_COLUMNS = [
    "flash_rate",
    "mean_energy",
    "median_energy",
    "mean_area",
    "median_area",
    "extent_km",
    "duration_min",
    "n_jumps",
    "first_jump",
]


def storm_statistics(flashes: pd.DataFrame, labels: np.ndarray, jumps: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cluster present: rate, energy and area (mean, median), extent, duration and jumps.

    ``flashes`` needs ``time_start``, ``time_end``, ``energy``, ``area`` (m²), ``x_km``, ``y_km`` (the equal-area
    plane). ``flash_rate`` is flashes per minute over the storm's duration (at least one minute); ``extent_km`` the
    diagonal of the box holding the middle 90 % of its flashes in x and y (a few stray flashes do not stretch it);
    ``duration_min`` from its first flash's start to its last flash's end.
    """
    frame = flashes.assign(cluster=np.asarray(labels, dtype=np.int64))
    rows = []
    for cluster, storm in frame.groupby("cluster", sort=True):
        start, end = storm["time_start"].min(), storm["time_end"].max()
        duration = (end - start).total_seconds() / 60.0 if pd.notna(start) and pd.notna(end) else np.nan
        x5, x95 = np.nanpercentile(storm["x_km"], [5, 95])
        y5, y95 = np.nanpercentile(storm["y_km"], [5, 95])
        rows.append(
            {
                "cluster": int(cluster),
                "flash_rate": len(storm) / max(duration, 1.0) if np.isfinite(duration) else np.nan,
                "mean_energy": storm["energy"].mean(),
                "median_energy": storm["energy"].median(),
                "mean_area": storm["area"].mean(),
                "median_area": storm["area"].median(),
                "extent_km": float(np.hypot(x95 - x5, y95 - y5)),
                "duration_min": duration,
            }
        )
    stats = pd.DataFrame(rows, columns=["cluster", *STATISTIC_COLUMNS[:-2]])
    if jumps is not None and len(jumps) and jumps["jump"].any():
        flagged = jumps[jumps["jump"]]
        counts = flagged.groupby("cluster").size()
        first = flagged.groupby("cluster")["time"].min()
        stats["n_jumps"] = stats["cluster"].map(counts).fillna(0).astype("int64")
        stats["first_jump"] = stats["cluster"].map(first)
    else:
        stats["n_jumps"] = 0
        stats["first_jump"] = pd.NaT
    stats["first_jump"] = pd.to_datetime(stats["first_jump"])
    return stats


def flash_rate_per_minute(flashes: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Flashes per minute of each cluster, on every minute from its first flash to its last (zeros included)."""
    frame = pd.DataFrame(
        {"cluster": np.asarray(labels, dtype=np.int64), "minute": flashes["time_start"].dt.floor("min")}
    )
    frame = frame.dropna(subset=["minute"])
    counts = frame.groupby(["cluster", "minute"]).size().rename("flashes").reset_index()
    filled = []
    for cluster, storm in counts.groupby("cluster"):
        minutes = pd.date_range(storm["minute"].min(), storm["minute"].max(), freq="min")
        series = storm.set_index("minute")["flashes"].reindex(minutes, fill_value=0)
        filled.append(pd.DataFrame({"cluster": cluster, "minute": minutes, "flashes": series.to_numpy()}))
    if not filled:
        return pd.DataFrame(
            {
                "cluster": pd.Series(dtype="int64"),
                "minute": pd.Series(dtype="datetime64[us]"),
                "flashes": pd.Series(dtype="int64"),
            }
        )
    return pd.concat(filled, ignore_index=True)


def lightning_jumps(per_minute: pd.Series) -> pd.DataFrame:
    """The 2σ algorithm on one storm's flashes per minute (a Series indexed by consecutive minutes).

    Returns one row per 2-minute period: ``time`` (its start), ``flash_rate`` (flashes/min averaged over the
    period), ``dfrdt`` (change from the previous period, flashes/min²), ``threshold`` (2σ of the previous 5 DFRDT
    values, NaN until there are 5) and ``jump``.
    """
    rates = per_minute.astype(float)
    n_periods = len(rates) // PERIOD_MINUTES
    columns = ["time", "flash_rate", "dfrdt", "threshold", "jump"]
    if n_periods == 0:
        return pd.DataFrame(columns=columns)
    values = rates.to_numpy()[: n_periods * PERIOD_MINUTES].reshape(n_periods, PERIOD_MINUTES).mean(axis=1)
    times = rates.index[: n_periods * PERIOD_MINUTES : PERIOD_MINUTES]
    dfrdt = np.full(n_periods, np.nan)
    dfrdt[1:] = np.diff(values) / PERIOD_MINUTES
    history = HISTORY_MINUTES // PERIOD_MINUTES
    threshold = np.full(n_periods, np.nan)
    for i in range(1 + history, n_periods):
        threshold[i] = SIGMA_LEVEL * np.std(dfrdt[i - history : i])
    jump = (values > RATE_THRESHOLD) & np.isfinite(threshold) & (dfrdt > threshold)
    return pd.DataFrame({"time": times, "flash_rate": values, "dfrdt": dfrdt, "threshold": threshold, "jump": jump})


def storm_jumps(per_minute: pd.DataFrame) -> pd.DataFrame:
    """:func:`lightning_jumps` for every cluster of :func:`flash_rate_per_minute`'s table, with a ``cluster`` column."""
    parts = []
    for cluster, storm in per_minute.groupby("cluster"):
        found = lightning_jumps(storm.set_index("minute")["flashes"])
        if len(found):
            parts.append(found.assign(cluster=int(cluster)))
    dtypes = {
        "cluster": "int64",
        "time": "datetime64[us]",
        "flash_rate": float,
        "dfrdt": float,
        "threshold": float,
        "jump": bool,
    }
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})
    return pd.concat(parts, ignore_index=True)[list(dtypes)]


def largest_storms(summary: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The ``n`` clusters with the most flashes (ties by cluster number), for the CLI and the rate plot."""
    return summary.sort_values(["n_flashes", "cluster"], ascending=[False, True]).head(n)
