"""The independent reference for storm-scale k: tobac's cell identification of flashes on a 10 km flash-count grid.

tobac (Heikenfeld et al. 2019, https://tobac.readthedocs.io) is run as a meteorologist would, on a grid built here
independently of our code: ``feature_detection_multithreshold`` with thresholds of 1, 2, 5, ... 1000 flashes per cell,
``sigma_threshold=0.5`` and ``n_min_threshold`` as given; ``segmentation_2D`` by watershed with ``threshold=0.5``
(every cell holding a flash can join a segment). Tests skip when tobac is not installed.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

CELL_KM = 10.0
TOBAC_THRESHOLDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]


def tobac_segments(x_km: np.ndarray, y_km: np.ndarray, n_min_threshold: int = 1) -> np.ndarray:
    """tobac's segment id of each flash (0: in no segment) on a 10 km flash-count grid."""
    tobac = pytest.importorskip("tobac")
    xr = pytest.importorskip("xarray")
    ix = np.floor(x_km / CELL_KM).astype(np.int64)
    iy = np.floor(y_km / CELL_KM).astype(np.int64)
    rows, cols = iy - iy.min() + 2, ix - ix.min() + 2
    counts = np.zeros((rows.max() + 3, cols.max() + 3))
    np.add.at(counts, (rows, cols), 1.0)
    field = xr.DataArray(
        counts[None],
        dims=("time", "y", "x"),
        coords={
            "time": [np.datetime64("2024-07-01T18:00")],
            "y": np.arange(counts.shape[0]) * CELL_KM * 1000,
            "x": np.arange(counts.shape[1]) * CELL_KM * 1000,
        },
        name="flash_count",
    )
    dxy = CELL_KM * 1000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            features = tobac.feature_detection_multithreshold(
                field,
                dxy=dxy,
                threshold=TOBAC_THRESHOLDS,
                n_min_threshold=n_min_threshold,
                sigma_threshold=0.5,
                target="maximum",
            )
            mask, _ = tobac.segmentation_2D(features, field, dxy=dxy, threshold=0.5, target="maximum")
        finally:
            logging.disable(logging.NOTSET)
    return np.asarray(mask.values)[0][rows, cols]
