"""The N-minute flash extent density on the ABI fixed grid: every cell drawn as its own quadrilateral.

A fixed-grid cell is square in scan angle, not on the ground; its four corners are projected back to latitude and
longitude through the grid's geostationary projection and drawn on the same base map as the other maps
(:func:`~lightning_eda.plots.map_canvas.map_canvas`), so the cells widen toward the limb as they do in ABI imagery.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection
from matplotlib.colors import LogNorm

from lightning_eda.grids.fixed_grid import FixedGrid
from lightning_eda.plots.geometry import MapInput
from lightning_eda.plots.map_canvas import map_canvas, map_headings, no_flashes_notice
from lightning_eda.plots.output import figure_png

HEADING = "Flash Extent Density on the GOES fixed grid"
_CORNERS = ((0, 0), (1, 0), (1, 1), (0, 1))
_MIN_SIDE_PT = 1.6


def fixed_grid_fed_map(
    grid: FixedGrid,
    cells: pd.DataFrame,
    *,
    minutes: int,
    title: str | None = None,
    extent: Sequence[float] | None = None,
) -> bytes:
    """Flashes per fixed-grid cell over one ``minutes``-minute frame, on a logarithmic colour scale.

    Parameters
    ----------
    grid : FixedGrid
        The grid the cells belong to (its projection places their corners).
    cells : DataFrame
        Columns ``ix``, ``iy`` (the grid's cell indices) and ``flash_extent_density``; one frame's cells.
    minutes, title, extent :
        The frame's length (for the colour bar), the line under the heading, the map's lon/lat box (None: fit the
        cells).

    Returns
    -------
    bytes
        PNG of ``MAP_FIGSIZE`` at ``DPI``.
    """
    fed = cells["flash_extent_density"].to_numpy(np.float64) if len(cells) else np.zeros(0)
    keep = fed > 0
    ix = cells["ix"].to_numpy(np.float64)[keep] if len(cells) else np.zeros(0)
    iy = cells["iy"].to_numpy(np.float64)[keep] if len(cells) else np.zeros(0)
    fed = fed[keep]
    lat_c, lon_c = grid.projection.to_latlon((ix + 0.5) * grid.step, (iy + 0.5) * grid.step)
    corners = [grid.projection.to_latlon((ix + dx) * grid.step, (iy + dy) * grid.step) for dx, dy in _CORNERS]
    seen = np.isfinite(lat_c) & np.all([np.isfinite(lat) for lat, _ in corners], axis=0)
    fed, lat_c, lon_c = fed[seen], lat_c[seen], lon_c[seen]
    points = MapInput.from_args(lat_c, lon_c, np.zeros(fed.size, dtype=np.int64), None, None)
    canvas = map_canvas(points, extent)
    fig, ax = canvas.fig, canvas.ax
    if fed.size:
        xy = [canvas.xy(lon[seen], lat[seen]) for lat, lon in corners]
        polygons = np.stack([np.column_stack(c) for c in xy], axis=1)  # (cells, 4 corners, 2)
        order = np.argsort(fed)  # the densest cells on top
        ax.apply_aspect()
        points_per_unit = ax.get_window_extent().height * 72.0 / fig.dpi / np.diff(ax.get_ylim())[0]
        side = np.median(np.abs(polygons[:, 2, 1] - polygons[:, 0, 1])) * points_per_unit
        drawn = PolyCollection(
            polygons[order],
            array=fed[order],
            cmap="plasma",
            norm=LogNorm(vmin=1.0, vmax=max(float(fed.max()), 2.0)),
            # cells far smaller than a pixel on a continental map get an outline of their own colour, to stay visible
            edgecolors="face",
            linewidths=float(np.clip(_MIN_SIDE_PT - side, 0.0, _MIN_SIDE_PT)),
            zorder=2,
            rasterized=True,
        )
        ax.add_collection(drawn)
        bar = fig.colorbar(drawn, ax=ax, fraction=0.035, pad=0.02)
        k = grid.footprint_cells
        bar.set_label(
            f"flashes per {grid.resolution_km:g} km fixed-grid cell in {minutes} min (event footprint {k}×{k} cells)",
            fontsize=9,
        )
    else:
        no_flashes_notice(ax)
    summary = f"{fed.size:,} cells, up to {int(fed.max()):,} flashes in one" if fed.size else "no flashes"
    map_headings(ax, HEADING, title, summary)
    return figure_png(fig)
