"""Small geographic helpers shared by the decoder, the features and the maps."""

from __future__ import annotations

import numpy as np


def wrap_longitude(lon) -> np.ndarray:
    """Wrap longitudes (degrees) into [-180, 180); GOES-West event longitudes decode below -180."""
    wrapped = np.mod(np.asarray(lon, dtype=np.float64) + 180.0, 360.0) - 180.0
    # np.mod can round a tiny negative up to exactly 360, which would give +180.
    return np.where(wrapped >= 180.0, wrapped - 360.0, wrapped)


def format_degrees(value: float, positive: str, negative: str, *, decimals: int = 2, trim: bool = False) -> str:
    """One coordinate as people read it: '29.80°N', '90.10°W'; with ``trim``, '12.5°N', '95°W', '0°', '180°'.

    ``positive``/``negative`` are the hemisphere letters ('N'/'S' or 'E'/'W'). Trimmed labels (map gridlines) drop
    trailing zeros and the letter on 0° and 180°, where either hemisphere is right.
    """
    text = f"{abs(value):.{decimals}f}"
    if trim:
        text = text.rstrip("0").rstrip(".")
        if text in ("0", "180"):
            return f"{text}°"
    return f"{text}°{positive if value >= 0 else negative}"


def format_position(lat: float, lon: float, *, decimals: int = 2) -> str:
    """A (lat, lon) position as '29.80°N 90.10°W', for storm summaries and legends."""
    return f"{format_degrees(lat, 'N', 'S', decimals=decimals)} {format_degrees(lon, 'E', 'W', decimals=decimals)}"
