"""The busy real minute of 2018-07-02 04:33–04:34 UTC (three granules, 853 flashes) that many tests serve and load."""

from __future__ import annotations

from datetime import datetime

BUCKET = "noaa-goes16"
HOUR_2018 = datetime(2018, 7, 2, 4)
KEY_2018 = "2018-07-02-04:00"
FIRST_THREE = {  # the README's counts for the busy 2018 minute
    "OR_GLM-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231.nc": (302, 7182, 18361),
    "OR_GLM-L2-LCFA_G16_s20181830433200_e20181830433400_c20181830433424.nc": (277, 6919, 19956),
    "OR_GLM-L2-LCFA_G16_s20181830433400_e20181830434000_c20181830434029.nc": (274, 7478, 21480),
}


def serve_2018_minute(s3, real_granules) -> None:
    """Put the three consecutive real 2018 granules under their real keys (idempotent)."""
    for path in real_granules:
        if path.name in FIRST_THREE:
            s3.put_granule(BUCKET, path)
