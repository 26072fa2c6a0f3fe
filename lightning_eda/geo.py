"""Small geographic helpers shared by the decoder, the features and the maps."""

from __future__ import annotations

import numpy as np


def wrap_longitude(lon) -> np.ndarray:
    """Wrap longitudes (degrees) into [-180, 180); GOES-West event longitudes decode below -180."""
    wrapped = np.mod(np.asarray(lon, dtype=np.float64) + 180.0, 360.0) - 180.0
    # np.mod can round a tiny negative up to exactly 360, which would give +180.
    return np.where(wrapped >= 180.0, wrapped - 360.0, wrapped)
