"""One frame of a storm track: its storms (from a clusterer's labels) and how they continue the open tracks.

The linking rule is :func:`link_storms`'s (and ``docs/tracking.md``'s); :mod:`lightning_eda.analysis.tracks` calls
both for every frame. No Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameStorms:
    """One frame's storms: ``storm_of`` (each flash's storm, -1: none) and per storm its flashes, centroid (km),
    extent (diagonal of the box holding the middle 90 % of its flashes, km), total energy (J) and mean flash area,
    both over the flashes that have a value."""

    storm_of: np.ndarray
    n_flashes: np.ndarray
    centres: np.ndarray
    extent_km: np.ndarray
    total_energy: np.ndarray
    mean_area: np.ndarray

    @classmethod
    def of(cls, x, y, energy, area, labels: np.ndarray, min_flashes: int) -> FrameStorms:
        """Storms from a clusterer's labels: clusters of fewer than ``min_flashes`` are not storms; storms are
        numbered in the order of their labels."""
        values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        storm = (values >= 0) & (counts >= min_flashes)
        storm_of = np.where(storm, np.cumsum(storm) - 1, -1)[inverse.reshape(-1)]
        member = storm_of >= 0
        members = storm_of[member]
        n = int(storm.sum())

        def total(v):
            return np.bincount(members, weights=np.nan_to_num(v[member]), minlength=n)

        sizes = np.bincount(members, minlength=n)
        areas = np.bincount(members, weights=np.isfinite(area[member]), minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_area = total(area) / areas
        return cls(
            storm_of=storm_of,
            n_flashes=sizes,
            centres=np.column_stack([total(x), total(y)]) / np.maximum(sizes, 1)[:, None],
            extent_km=np.hypot(middle_spread(x[member], members, sizes), middle_spread(y[member], members, sizes)),
            total_energy=total(energy),
            mean_area=mean_area,
        )


@dataclass(frozen=True)
class FrameLinks:
    """How one frame's storms continue the open tracks (indices into the tracks and storms given to
    :func:`link_storms`).

    ``track_of_storm[c]``: the track storm ``c`` continues, -1 for a new track. ``parent_of_storm[c]``: for a new
    track split off an open one, that track, else -1. ``merged[c]``: other tracks ended in storm ``c``.
    ``merged_into[t]``: the storm open track ``t`` ended in, -1 if it did not merge.
    """

    track_of_storm: np.ndarray
    parent_of_storm: np.ndarray
    merged: np.ndarray
    merged_into: np.ndarray


def link_storms(
    last: np.ndarray,
    expected: np.ndarray,
    gate_km: np.ndarray,
    track_sizes: np.ndarray,
    centres: np.ndarray,
    sizes: np.ndarray,
) -> FrameLinks:
    """Link a frame's storms to the open tracks (the rule of ``docs/tracking.md``).

    Parameters
    ----------
    last, expected : ndarray, shape (m, 2)
        Each open track's last position and its position predicted for this frame (km).
    gate_km : ndarray, shape (m,)
        How far each track can have moved since it was last seen (``max_speed × Δt + slack``).
    track_sizes : ndarray, shape (m,)
        Flashes of each track in its last frame (who is "larger" in a merge).
    centres : ndarray, shape (k, 2)
        The frame's storm centroids (km).
    sizes : ndarray, shape (k,)
        Flashes in each storm (who is "larger" in a split).

    Notes
    -----
    1. A pair (track, storm) is possible when the storm is within the track's gate of its last position.
    2. Possible pairs are taken nearest first (distance from the predicted position; ties by track, then storm),
       each track and storm at most once: these continue.
    3. A track left over with a possible storm ended in a merge with the nearest such storm; of all the tracks
       ending in one storm (the one it continued included), the one with the most flashes in its last frame keeps
       its id (ties: the earlier in ``last``), the others end ``merged_into`` it.
    4. A storm left over with a possible track split off the nearest such track. Of the track's continuing storm
       and its split-offs, the one with the most flashes keeps the track's id (ties: the continuing storm), the
       others start new tracks whose parent is that track. When the continuing storm is also a merge, it keeps its
       id (the merge decided it).
    5. Other storms start new tracks; other tracks missed this frame.
    """
    m, k = len(last), len(centres)
    track_of_storm = np.full(k, -1, dtype=np.int64)
    parent_of_storm = np.full(k, -1, dtype=np.int64)
    merged = np.zeros(k, dtype=bool)
    merged_into = np.full(m, -1, dtype=np.int64)
    if m == 0 or k == 0:
        return FrameLinks(track_of_storm, parent_of_storm, merged, merged_into)
    from_last = np.hypot(*(centres[None, :, :] - last[:, None, :]).transpose(2, 0, 1))
    from_expected = np.hypot(*(centres[None, :, :] - expected[:, None, :]).transpose(2, 0, 1))
    possible = from_last <= gate_km[:, None]
    ti, ci = np.nonzero(possible)
    storm_of_track = np.full(m, -1, dtype=np.int64)
    for p in np.lexsort((ci, ti, from_expected[ti, ci])):
        t, c = ti[p], ci[p]
        if storm_of_track[t] < 0 and track_of_storm[c] < 0:
            storm_of_track[t], track_of_storm[c] = c, t
    distance = np.where(possible, from_expected, np.inf)

    for t in np.flatnonzero((storm_of_track < 0) & possible.any(axis=1)):
        c = int(np.argmin(distance[t]))
        merged_into[t] = c
    for c in np.unique(merged_into[merged_into >= 0]):
        family = [int(track_of_storm[c]), *np.flatnonzero(merged_into == c).tolist()]
        keeper = min(family, key=lambda t: (-track_sizes[t], t))
        merged_into[keeper] = -1
        merged_into[[t for t in family if t != keeper]] = c
        track_of_storm[c], merged[c] = keeper, True
        storm_of_track[family] = -1
        storm_of_track[keeper] = c

    for t in range(m):
        offspring = [c for c in np.flatnonzero((track_of_storm < 0) & possible[t]) if np.argmin(distance[:, c]) == t]
        if not offspring:
            continue
        own = int(storm_of_track[t])
        if own >= 0 and not merged[own]:
            keeper = max([own, *offspring], key=lambda c: (sizes[c], c == own))
            if keeper != own:
                track_of_storm[keeper], track_of_storm[own] = t, -1
                offspring = [own, *[c for c in offspring if c != keeper]]
        parent_of_storm[offspring] = t
    return FrameLinks(track_of_storm, parent_of_storm, merged, merged_into)


def middle_spread(values: np.ndarray, groups: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """95th minus 5th percentile of ``values`` in each group (linear interpolation, as ``np.percentile``), all groups
    in one sort: a storm's extent without a pass over the frame per storm."""
    order = np.lexsort((values, groups))
    ordered = values[order]
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def percentile(q: float) -> np.ndarray:
        h = (sizes - 1) * q
        low = np.floor(h).astype(np.int64)
        high = np.minimum(low + 1, sizes - 1)
        return ordered[first + low] + (h - low) * (ordered[first + high] - ordered[first + low])

    return percentile(0.95) - percentile(0.05)
