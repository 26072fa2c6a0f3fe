"""Storm statistics and the 2σ lightning jump on planted data, with the expected values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lightning_eda.analysis.storms import (
    flash_rate_per_minute,
    largest_storms,
    lightning_jumps,
    storm_jumps,
    storm_statistics,
)

T0 = pd.Timestamp("2024-06-01 18:00")


def minutes(rates: list[float]) -> pd.Series:
    return pd.Series(rates, index=pd.date_range(T0, periods=len(rates), freq="min"))


def test_a_planted_rate_surge_is_a_jump_and_steady_rates_are_not():
    # 12 steady minutes at 20 flashes/min with a small wobble (periods 20.5, 19.5, ...), then a surge to 60
    steady = [21, 20, 19, 20, 21, 20, 19, 20, 21, 20, 19, 20]
    table = lightning_jumps(minutes(steady + [60, 60, 62, 62]))
    assert list(table["flash_rate"][:6]) == [20.5, 19.5, 20.5, 19.5, 20.5, 19.5]
    # DFRDT of period 6 (the surge): (60 - 19.5) / 2 min = 20.25 flashes/min²; the previous five DFRDTs are
    # -0.5, 0.5, -0.5, 0.5, -0.5 (mean -0.1, deviations -0.4/0.6: σ = √0.24 ≈ 0.49), so 2σ ≈ 0.98: a jump;
    # period 7 rises 1 flash/min over 2 min (0.5 flashes/min²), below its own 2σ
    assert table["dfrdt"].iloc[6] == 20.25 and table["threshold"].iloc[6] == pytest.approx(2 * np.sqrt(0.24), rel=1e-12)
    assert list(table["jump"]) == [False] * 6 + [True, False]
    assert not lightning_jumps(minutes(steady * 2))["jump"].any()


def test_no_jump_below_ten_flashes_a_minute_or_without_ten_minutes_of_history():
    quiet = [3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 9, 9]  # a sharp rise, but to 9 flashes/min
    assert not lightning_jumps(minutes(quiet))["jump"].any()
    short = [20, 20, 21, 19, 60, 60]  # a surge after only 4 minutes: no history to judge it by
    table = lightning_jumps(minutes(short))
    assert table["threshold"].isna().all() and not table["jump"].any()
    assert lightning_jumps(minutes([5])).empty


def planted_storms() -> tuple[pd.DataFrame, np.ndarray]:
    """Storm 0: 30 flashes over 10 minutes in a 20 km square; storm 1: 4 flashes in one minute."""
    rng = np.random.default_rng(0)
    start = T0 + pd.to_timedelta(np.linspace(0, 600, 30), unit="s")
    a = pd.DataFrame(
        {
            "time_start": start,
            "time_end": start + pd.Timedelta(seconds=1),
            "energy": np.arange(1.0, 31.0),
            "area": np.full(30, 2e8),
            "x_km": rng.uniform(0, 20, 30),
            "y_km": rng.uniform(0, 20, 30),
        }
    )
    b_start = T0 + pd.to_timedelta([0, 10, 20, 30], unit="s")
    b = pd.DataFrame(
        {
            "time_start": b_start,
            "time_end": b_start + pd.Timedelta(seconds=1),
            "energy": [1.0, 2, 3, 10],
            "area": [1e8, 1e8, 3e8, 3e8],
            "x_km": 500.0,
            "y_km": 500.0,
        }
    )
    return pd.concat([a, b], ignore_index=True), np.array([0] * 30 + [1] * 4)


def test_storm_statistics_by_hand():
    flashes, labels = planted_storms()
    stats = storm_statistics(flashes, labels).set_index("cluster")
    # storm 0 lasts from its first start to its last end: 600 s + 1 s
    assert stats.loc[0, "duration_min"] == 601 / 60 and stats.loc[0, "flash_rate"] == 30 / (601 / 60)
    assert stats.loc[0, "mean_energy"] == 15.5 and stats.loc[0, "median_energy"] == 15.5
    assert 0 < stats.loc[0, "extent_km"] < np.hypot(20, 20)
    # storm 1 lasts 31 s: the rate is taken over at least a minute
    assert stats.loc[1, "flash_rate"] == 4.0 and stats.loc[1, "extent_km"] == 0.0
    assert stats.loc[1, "mean_energy"] == 4.0 and stats.loc[1, "median_energy"] == 2.5
    assert stats.loc[1, "median_area"] == 2e8
    assert (stats["n_jumps"] == 0).all()


def test_rates_per_minute_fill_quiet_minutes_and_jumps_are_counted_per_storm():
    flashes, labels = planted_storms()
    per_minute = flash_rate_per_minute(flashes, labels)
    storm0 = per_minute[per_minute["cluster"] == 0]
    assert len(storm0) == 11 and storm0["flashes"].sum() == 30  # 18:00..18:10, every minute present
    # a storm that surges after 12 steady minutes: one jump, counted in its statistics
    steady = [21, 20, 19, 20, 21, 20, 19, 20, 21, 20, 19, 20, 60, 60]
    times = [T0 + pd.Timedelta(minutes=m, seconds=s) for m, n in enumerate(steady) for s in np.linspace(0, 59, n)]
    surge = pd.DataFrame({"time_start": times, "time_end": times, "energy": 1.0, "area": 1e8, "x_km": 0.0, "y_km": 0.0})
    surge_labels = np.zeros(len(surge), dtype=int)
    jumps = storm_jumps(flash_rate_per_minute(surge, surge_labels))
    stats = storm_statistics(surge, surge_labels, jumps)
    assert stats.loc[0, "n_jumps"] == 1 and stats.loc[0, "first_jump"] == T0 + pd.Timedelta(minutes=12)


def test_largest_storms_are_by_flash_count():
    summary = pd.DataFrame({"cluster": [0, 1, 2, 3], "n_flashes": [5, 50, 50, 7]})
    assert list(largest_storms(summary, 3)["cluster"]) == [1, 2, 3]
