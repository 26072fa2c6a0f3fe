"""One frame of a storm track: its storms, how they continue the open tracks, and the plane they are measured in.

:func:`storm_frames` is the :data:`~lightning_eda.analysis.tracks.FrameClusterer` the ``storm_tracks`` asset uses:
the storm-scale segmentation of the frame's flashes (:func:`~lightning_eda.analysis.storm_scale.segment_storms`),
then one k-means over the flashes in storms, seeded from the storms' centres. Where one segmented storm holds two or
more open tracks' expected centres well apart, those centres seed it instead: two cells about to merge stay two
until the density between them no longer tells them apart from one. :class:`FrameStorms` turns a clusterer's labels
into storms, and :func:`link_storms` links them to the open tracks (the rule of ``docs/tracking.md``).

:func:`projection_centre` fixes the plane: track ids and positions must not depend on how the hours are grouped into
runs, so the centre cannot be the window's data (as ``preprocess``'s is). No Dagster here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from lightning_eda.analysis.features import LatLonBox
from lightning_eda.analysis.storm_scale import DEFAULT_CELL_KM, segment_storms
from lightning_eda.ml import kmeans

#: Sub-satellite longitudes (degrees east) of the GOES-R satellites by number: GOES-East (-75.2) and GOES-West
#: (-137.2) slots; GOES-18 took the West slot at -137.0 (NOAA's GOES-R series status pages).
SUB_SATELLITE_LON = {16: -75.2, 17: -137.2, 18: -137.0, 19: -75.2}

#: Two expected centres closer than this are one storm's (the grid's own resolution plus a half cell).
MIN_SEED_SEPARATION_KM = 1.5 * DEFAULT_CELL_KM


def projection_centre(box: LatLonBox | None, bucket: str, granule: str = "") -> tuple[float, float]:
    """The (lat, lon) the tracks' plane is centred on: the region's centre, else the satellite's sub-point.

    The same every hour for one region and satellite, so two runs of an hour each give the ids of one two-hour run.
    The satellite is read from a granule's name (``OR_GLM-L2-LCFA_G16_...``), else from the bucket's
    (``noaa-goes16``). A full-disk plane centred on the sub-satellite point measures within 1 % up to about 2,000 km
    from it; farther out only the speed gate sees the error (docs/tracking.md). ``ValueError`` when neither a region
    nor a GOES number says where the tracks are.
    """
    if box is not None:
        lon_span = (box.lon_max - box.lon_min) % 360.0
        lon = (box.lon_min + lon_span / 2.0 + 180.0) % 360.0 - 180.0
        return (box.lat_min + box.lat_max) / 2.0, lon
    match = re.search(r"_G(\d{2})_", granule) or re.search(r"goes-?(\d{2})", bucket.lower())
    if match is None or int(match.group(1)) not in SUB_SATELLITE_LON:
        raise ValueError(
            f"storm tracks need a fixed plane: neither bucket {bucket!r} nor granule {granule!r} names a GOES "
            f"satellite ({', '.join(f'GOES-{n}' for n in SUB_SATELLITE_LON)}); "
            "set the preprocessor's region (lat_min ... lon_max)"
        )
    return 0.0, SUB_SATELLITE_LON[int(match.group(1))]


def storm_frames(x_km: np.ndarray, y_km: np.ndarray, expected_centres_km: np.ndarray | None) -> np.ndarray:
    """Storm label of each flash of one frame (-1: in no storm), from the segmentation refined by one k-means.

    Parameters
    ----------
    x_km, y_km : ndarray of shape (n,)
        The frame's flashes in the tracks' plane.
    expected_centres_km : ndarray of shape (m, 2) or None
        Where the open tracks should be in this frame.

    Returns
    -------
    ndarray of shape (n,), dtype int64
        ``0..k-1`` for flashes in a storm, -1 for flashes the segmentation left out (lone flashes, sparse fringes):
        they would pull a storm's centroid off its core.
    """
    x = np.asarray(x_km, dtype=np.float64)
    y = np.asarray(y_km, dtype=np.float64)
    labels = np.full(len(x), -1, dtype=np.int64)
    if len(x) == 0:
        return labels
    segmentation = segment_storms(x, y)
    if segmentation.k == 0:
        return labels
    inside = segmentation.in_storm
    points = np.column_stack([x[inside], y[inside]])
    seeds = _seeds(points, segmentation.labels[inside], segmentation.centres_km, expected_centres_km)
    fit = kmeans(points, len(seeds), init=seeds)
    labels[inside] = fit.labels
    return labels


def _seeds(points: np.ndarray, storm_of: np.ndarray, centres: np.ndarray, expected: np.ndarray | None) -> np.ndarray:
    """The storms' centres, each storm holding two or more well-separated expected centres seeded by those instead."""
    if expected is None or len(expected) < 2:
        return centres
    distance, nearest = cKDTree(points).query(expected, distance_upper_bound=DEFAULT_CELL_KM)
    storm_of_expected = np.where(np.isfinite(distance), storm_of[np.minimum(nearest, len(points) - 1)], -1)
    seeds = []
    for storm, centre in enumerate(centres):
        kept: list[np.ndarray] = []
        for seed in expected[storm_of_expected == storm]:
            if all(np.hypot(*(seed - other)) >= MIN_SEED_SEPARATION_KM for other in kept):
                kept.append(seed)
        seeds.extend(kept if len(kept) >= 2 and np.sum(storm_of == storm) >= 2 * len(kept) else [centre])
    return np.array(seeds, dtype=np.float64)


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
