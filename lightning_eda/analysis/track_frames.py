"""What the storm tracks need from the pipeline's side: the storms of one frame, and one fixed plane to measure in.

:func:`storm_frames` is the :data:`~lightning_eda.analysis.tracks.FrameClusterer` the ``storm_tracks`` asset uses:
the storm-scale segmentation of the frame's flashes (:func:`~lightning_eda.analysis.storm_scale.segment_storms`),
then one k-means over the flashes in storms, seeded from the storms' centres. Where one segmented storm holds two or
more open tracks' expected centres well apart, those centres seed it instead: two cells about to merge stay two
until the density between them no longer tells them apart from one.

:func:`projection_centre` fixes the plane: track ids and positions must not depend on how the hours are grouped into
runs, so the centre cannot be the window's data (as ``preprocess``'s is). No Dagster here.
"""

from __future__ import annotations

import re

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
