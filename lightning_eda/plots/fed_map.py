"""The flash extent density map: flashes per equal-area cell on a logarithmic colour scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm

from lightning_eda.plots.geometry import MapInput
from lightning_eda.plots.map_canvas import map_canvas, map_headings, no_flashes_notice
from lightning_eda.plots.output import figure_png

FED_TITLE = "Flash Extent Density"
_KM_PER_DEGREE_LAT = 111.195


def fed_map(
    lat: Sequence[float] | np.ndarray,
    lon: Sequence[float] | np.ndarray,
    flash_count: Sequence[int] | np.ndarray,
    *,
    cell_km: float,
    title: str | None = None,
    extent: Sequence[float] | None = None,
) -> bytes:
    """Flashes per equal-area cell on a logarithmic colour scale, over coastlines and borders.

    Parameters
    ----------
    lat, lon, flash_count : sequences of length n
        Cell centres (degrees) and the number of flashes that touched each cell (table ``flash_extent_density``).
    cell_km : float
        The cells' side; each cell is drawn as a square of that size on the ground.
    title, extent :
        As for :func:`lightning_eda.plots.cluster_map.cluster_map`.

    Returns
    -------
    bytes
        PNG of ``MAP_FIGSIZE`` at ``DPI``.
    """
    lat_a = np.asarray(lat, dtype=np.float64).reshape(-1)
    lon_a = np.asarray(lon, dtype=np.float64).reshape(-1)
    counts = np.asarray(flash_count, dtype=np.float64).reshape(-1)
    valid = np.isfinite(lat_a) & np.isfinite(lon_a) & (np.abs(lat_a) <= 90) & np.isfinite(counts) & (counts > 0)
    counts = counts[valid]
    cells = MapInput.from_args(lat_a[valid], lon_a[valid], np.zeros(counts.size, dtype=np.int64), None, None)
    canvas = map_canvas(cells, extent)
    fig, ax = canvas.fig, canvas.ax
    ax.apply_aspect()
    if cells.n:
        x, y = canvas.xy(cells.lon, cells.lat)
        # a cell's side in points: km per degree of latitude at the cell, through the map's own scale
        _, y_up = canvas.xy(cells.lon, np.clip(cells.lat + cell_km / _KM_PER_DEGREE_LAT, -89.9, 89.9))
        points_per_unit = ax.get_window_extent().height * 72.0 / fig.dpi / np.diff(ax.get_ylim())[0]
        side = np.clip(np.abs(y_up - y) * points_per_unit, 2.5, 40.0)  # at least visible on a continental map
        order = np.argsort(counts)  # the densest cells on top
        drawn = ax.scatter(
            x[order],
            y[order],
            s=side[order] ** 2,
            c=counts[order],
            marker="s",
            linewidths=0,
            cmap="plasma",
            norm=LogNorm(vmin=1.0, vmax=max(float(counts.max()), 2.0)),
            rasterized=True,
            zorder=2,
        )
        bar = fig.colorbar(drawn, ax=ax, fraction=0.035, pad=0.02)
        bar.set_label(f"flashes per {cell_km:g} × {cell_km:g} km cell", fontsize=9)
    else:
        no_flashes_notice(ax)
    densest = int(counts.max()) if counts.size else 0
    summary = f"{cells.n:,} cells touched, up to {densest:,} flashes in one" if cells.n else "no flashes"
    map_headings(ax, FED_TITLE, title, summary)
    return figure_png(fig)
