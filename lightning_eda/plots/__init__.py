"""Figures for the Dagster UI and for disk (moved from ``plots.py``; split into modules by what they draw next)."""

import os

from lightning_eda.plots.cluster_map import *  # noqa: F401,F403
from lightning_eda.plots.cluster_map import (  # noqa: F401
    _auto_extent,
    _clamp_extent,
    _lon_arc,
    _map_extent,
    _MapInput,
    _MIN_SPAN_DEG,
    _spread_discs,
    _style_curve_axes,
    _unwrap,
)
