"""Lightning jumps on one tracked storm's 2-minute flash rates: the σ algorithm, with its criteria configurable.

The algorithm (Schultz, Petersen and Carey 2009) is defined for one storm followed through time, so it runs per track
(:mod:`lightning_eda.analysis.tracks`), and a track's last periods travel with it from one window to the next, so that
a jump early in an hour is judged on the track's history in the previous hour. The per-cluster version in
:mod:`lightning_eda.analysis.storms` stays as it is; with :data:`SCHULTZ_2009` and no history this module flags the
same periods. No Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from lightning_eda.analysis.storms import PERIOD_MINUTES

JUMP_COLUMNS = ["period_start", "flash_rate", "dfrdt", "threshold", "flagged", "jump"]


@dataclass(frozen=True)
class JumpCriteria:
    """When a rise in a track's flash rate counts as a jump.

    Attributes
    ----------
    sigma_level : float, default 2.0
        A period's DFRDT (change of the 2-minute mean flash rate from the previous period, flashes/min²) must exceed
        ``sigma_level`` standard deviations of the DFRDT of the previous ``history_periods`` periods.
    rate_threshold : float, default 10.0
        ...and the period's flash rate (flashes/min) must exceed this.
    history_periods : int, default 5
        Periods (2 minutes each) of history the standard deviation is taken over: 5 is the 10 minutes of Schultz et
        al. (2009). A track needs ``history_periods + 1`` periods before its first judged period.
    merge_minutes : float, default 6.0
        A flagged period no more than this many minutes after the track's previous flagged period belongs to the
        same jump; the jump is dated by its first flagged period.
    """

    sigma_level: float = 2.0
    rate_threshold: float = 10.0
    history_periods: int = 5
    merge_minutes: float = 6.0

    def __post_init__(self) -> None:
        for name in ("sigma_level", "rate_threshold", "merge_minutes"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"JumpCriteria: {name}={value!r} must be a finite number >= 0")
        if int(self.history_periods) != self.history_periods or self.history_periods < 2:
            raise ValueError(f"JumpCriteria: history_periods={self.history_periods!r} must be an integer >= 2")

    @property
    def carried_periods(self) -> int:
        """How many of a track's latest period rates the next window needs to judge its first period."""
        return self.history_periods + 1


#: Schultz, Petersen and Carey (2009): 2σ over 10 minutes, 10 flashes/min, jumps within 6 minutes are one.
SCHULTZ_2009 = JumpCriteria()

#: Erdmann and Poelman (2023), tuned on GLM against severe-weather reports: 15 flashes/min and a σ level of 1.0–1.5
#: (1.5 taken here). Their best scores were with the rate divided by the storm's area (their "FRarea" variant), which
#: this preset does not do: it applies their thresholds to the plain σ algorithm.
ERDMANN_POELMAN_2023 = JumpCriteria(sigma_level=1.5, rate_threshold=15.0)


@dataclass(frozen=True)
class JumpHistory:
    """What a track carries into the next window: its latest period rates (oldest first) and last flagged period."""

    rates: tuple[float, ...] = ()
    last_flagged: pd.Timestamp | None = None


def sigma_jumps(
    period_start: pd.DatetimeIndex | np.ndarray,
    flash_rate: np.ndarray,
    criteria: JumpCriteria = SCHULTZ_2009,
    history: JumpHistory = JumpHistory(),
) -> tuple[pd.DataFrame, JumpHistory]:
    """Judge one track's consecutive 2-minute periods, continuing from ``history``.

    Parameters
    ----------
    period_start : array of datetime64, shape (n,)
        Start of each period, increasing. Periods are consecutive in the track's record; a gap (minutes in which the
        track was not seen) is not filled.
    flash_rate : ndarray, shape (n,)
        Mean flashes per minute in each period.
    criteria : JumpCriteria
        Sigma level, rate threshold, history length, merging of nearby jumps.
    history : JumpHistory
        The track's rates and last flagged period from earlier windows (empty for a new track).

    Returns
    -------
    periods : DataFrame
        One row per given period, :data:`JUMP_COLUMNS`: ``dfrdt`` (flashes/min², NaN for a track's first period),
        ``threshold`` (``sigma_level`` times the population standard deviation of the previous ``history_periods``
        DFRDT values; NaN until there are that many), ``flagged`` (the rate and DFRDT tests both pass) and ``jump``
        (a flagged period that starts a new jump: more than ``merge_minutes`` after the previous flagged one).
    history : JumpHistory
        What the track carries into the next window.

    Notes
    -----
    :func:`sigma_jump_columns` is the same without building the table, for many tracks in a loop.

    References
    ----------
    .. [1] Schultz, C. J., Petersen, W. A. and Carey, L. D. (2009). "Preliminary development and evaluation of
       lightning jump algorithms for the real-time detection of severe weather". J. Appl. Meteor. Climatol. 48,
       2543-2563.
    .. [2] Erdmann, F. and Poelman, D. R. (2023). "Automated lightning jump (LJ) detection from geostationary
       satellite data". J. Appl. Meteor. Climatol. 62(11).
    """
    columns, carried = sigma_jump_columns(period_start, flash_rate, criteria, history)
    return pd.DataFrame(columns)[JUMP_COLUMNS], carried


def sigma_jump_columns(
    period_start: pd.DatetimeIndex | np.ndarray,
    flash_rate: np.ndarray,
    criteria: JumpCriteria = SCHULTZ_2009,
    history: JumpHistory = JumpHistory(),
) -> tuple[dict[str, np.ndarray], JumpHistory]:
    """:func:`sigma_jumps` as a dict of the columns' arrays (keys :data:`JUMP_COLUMNS`)."""
    times = np.asarray(period_start, dtype="datetime64[ns]")
    new = np.asarray(flash_rate, dtype=np.float64)
    if new.shape != times.shape or times.ndim != 1:
        raise ValueError(f"sigma_jumps: period_start has shape {times.shape} but flash_rate has shape {new.shape}")
    prior = np.asarray(history.rates, dtype=np.float64)
    rates = np.concatenate([prior, new])
    n, h = len(rates), criteria.history_periods
    dfrdt = np.full(n, np.nan)
    dfrdt[1:] = np.diff(rates) / PERIOD_MINUTES
    threshold = np.full(n, np.nan)
    if n > h + 1:
        windows = sliding_window_view(dfrdt[1 : n - 1], h)
        threshold[h + 1 :] = criteria.sigma_level * windows.std(axis=1)
    flagged = (rates > criteria.rate_threshold) & np.isfinite(threshold) & (dfrdt > threshold)
    flagged = flagged[len(prior) :]
    jump = np.zeros(len(new), dtype=bool)
    last = None if history.last_flagged is None else np.datetime64(history.last_flagged, "ns")
    merge = np.timedelta64(round(criteria.merge_minutes * 60e9), "ns")
    for i in np.flatnonzero(flagged):
        jump[i] = last is None or times[i] - last > merge
        last = times[i]
    columns = {
        "period_start": times,
        "flash_rate": new,
        "dfrdt": dfrdt[len(prior) :],
        "threshold": threshold[len(prior) :],
        "flagged": flagged,
        "jump": jump,
    }
    carried = tuple(float(r) for r in rates[-criteria.carried_periods :])
    return columns, JumpHistory(rates=carried, last_flagged=None if last is None else pd.Timestamp(last))
