"""The cluster map: flashes coloured by cluster over coastlines and borders, numbered centroid discs, a legend.

What the map shows is computed by functions the tests call directly: the box by :func:`geometry.map_extent`, the
legend by :func:`legend_keys`, where each centroid disc goes by :func:`centroid_marks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import patheffects
from matplotlib.lines import Line2D

from lightning_eda.plots.geometry import MapInput, spread_discs
from lightning_eda.plots.map_canvas import MapCanvas, map_canvas, map_headings, no_flashes_notice
from lightning_eda.plots.output import figure_png
from lightning_eda.plots.style import cluster_colors

MAP_TITLE = "Lightning Events Map"
#: The legend lists at most this many rows of clusters (the largest), then one row for the rest.
LEGEND_ROWS = 20
#: Centroid discs closer than this (in points) are nudged apart.
CENTROID_DISC_POINTS = 22.0
#: Up to this many clusters every centroid gets a numbered disc; above it (storm scale: hundreds) only the clusters
#: the legend names do, and the others a small dot, so that the discs never hide the flashes they sum up.
NUMBERED_DISCS_MAX = 40


def cluster_map(
    lat: Sequence[float],
    lon: Sequence[float],
    labels: Sequence[int],
    centroids_latlon: Sequence[Sequence[float]] | np.ndarray | None,
    *,
    energy: Sequence[float] | None = None,
    title: str | None = None,
    extent: Sequence[float] | None = None,
) -> bytes:
    """Map of flashes coloured by cluster, with numbered centroids, over coastlines and borders.

    Parameters
    ----------
    lat, lon : sequences of float, length n
        Flash positions in degrees. Rows with non-finite or impossible coordinates are skipped (and logged).
    labels : sequence of int, length n
        Cluster of each flash, in ``[0, k)``.
    centroids_latlon : array_like of shape (k, 2) or None
        Row ``i`` is the (lat, lon) of cluster ``i`` (e.g. from ``FeatureTransform.to_latlon``). ``None`` draws
        no centroids and takes ``k = max(labels) + 1``.
    energy : sequence of float, length n, optional
        Flash energy; when given, marker area grows with the flash's energy rank (0.3x to 3x; NaN counts as the
        median), so strong flashes stand out without a handful of extremes dominating.
    title : str, optional
        Shown under the fixed heading "Lightning Events Map", typically the time window.
    extent : (lon_min, lon_max, lat_min, lat_max), optional
        Map box in degrees. Default: fitted to the flashes and centroids with a margin and widened to the
        figure's shape. ``lon_max < lon_min`` means the box crosses the antimeridian.

    Returns
    -------
    bytes
        PNG of ``MAP_FIGSIZE`` at ``DPI`` (1300 x 910 pixels).

    Notes
    -----
    *Antimeridian.* Longitudes are unwrapped onto the smallest arc that holds all flashes and centroids, and the
    map spans that arc continuously: storms from 175°E to 175°W give a map centred on 180°, not a world map
    with two slivers at its edges. Gridline labels still read as °E/°W. Data spread over more than 300° of
    longitude gets a plain -180..180 map.

    *Projection.* Mercator when the box lies within ±80° latitude, plate carrée otherwise; both are cylindrical,
    so gridlines are straight and labelled as axis ticks. Coastline detail is chosen from the box size
    (``geometry.coastline_resolution``); country borders always, state/province borders on maps up to 40° across.

    *Degenerate input.* All flashes on one spot give a 3° box around it; no flashes give a world map (or the
    requested extent) with a "No flashes in this window" notice; a single cluster is drawn like any other.

    Cost is dominated by basemap loading its coastline file: ~0.1 s crude, ~0.4 s low, ~2 s intermediate.
    1e5 flashes add well under a second (one rasterized scatter).
    """
    flashes = MapInput.from_args(lat, lon, labels, centroids_latlon, energy)
    return figure_png(draw_cluster_map(flashes, title=title, extent=extent).fig)


def draw_cluster_map(
    flashes: MapInput, *, title: str | None = None, extent: Sequence[float] | None = None
) -> MapCanvas:
    """Draw the map :func:`cluster_map` renders and return it, for tests that look inside the figure."""
    canvas = map_canvas(flashes, extent)
    fig, ax = canvas.fig, canvas.ax
    # Shrink the axes to the map first: discs are kept apart in the display space of the final axes, and the
    # legend sits right next to the map.
    ax.apply_aspect()
    colors = cluster_colors(max(flashes.k, 1))
    _draw_flashes(canvas, flashes, colors)
    _draw_centroids(ax, centroid_marks(canvas, flashes), colors)
    if flashes.n == 0:
        no_flashes_notice(ax)
    _draw_legend(fig, ax.get_position(), legend_keys(flashes, colors))
    n, k = flashes.n, flashes.k
    summary = f"{n:,} flash{'es' if n != 1 else ''} in {k} cluster{'s' if k != 1 else ''}" if n else "no flashes"
    map_headings(ax, MAP_TITLE, title, summary)
    return canvas


def _marker_size(n: int) -> float:
    """Scatter marker area (points²): small enough that 1e5 flashes don't merge into a blob."""
    return float(np.clip(3000.0 / max(n, 1) ** 0.75, 0.4, 14.0))


def _draw_flashes(canvas: MapCanvas, flashes: MapInput, colors: list[str]) -> None:
    n = flashes.n
    if n == 0:
        return
    # A fixed shuffle so that where clusters overlap none is always painted over the others.
    order = np.random.default_rng(0).permutation(n)
    x, y = canvas.xy(flashes.lon[order], flashes.lat[order])
    sizes: float | np.ndarray = _marker_size(n)
    if flashes.energy is not None:
        e = flashes.energy[order]
        rank = np.full(n, 0.5)
        finite = np.isfinite(e)
        if finite.sum() > 1:
            rank[finite] = np.argsort(np.argsort(e[finite])) / (finite.sum() - 1)
        sizes = sizes * (0.3 + 2.7 * rank)
    canvas.ax.scatter(
        x,
        y,
        s=sizes,
        c=np.asarray(colors)[flashes.labels[order]],
        linewidths=0,
        alpha=0.75 if n > 20000 else 0.85,
        rasterized=True,  # one image in the PNG (and in any vector output) however many flashes
        zorder=2,
    )


@dataclass(frozen=True)
class CentroidMarks:
    """Where the centroid discs go, in map coordinates: ``cluster[i]``'s centroid lies at ``true_xy[i]`` and its
    disc is drawn at ``disc_xy[i]`` (moved aside when it would cover another disc)."""

    cluster: np.ndarray
    true_xy: np.ndarray
    disc_xy: np.ndarray
    numbered: np.ndarray  # True: a numbered disc; False: a small dot at the centroid (never moved)

    @property
    def moved(self) -> np.ndarray:
        return np.any(self.disc_xy != self.true_xy, axis=1)


def centroid_marks(canvas: MapCanvas, flashes: MapInput) -> CentroidMarks:
    """Positions of the drawable centroids and of their discs, spread so that no two discs overlap."""
    cxs, cys = canvas.xy(flashes.centroids[:, 1], flashes.centroids[:, 0])
    ok = np.flatnonzero(flashes.centroid_ok)
    true_xy = np.column_stack([np.asarray(cxs, float)[ok], np.asarray(cys, float)[ok]])
    disc_xy = true_xy.copy()
    numbered = np.ones(len(ok), dtype=bool)
    if flashes.k > NUMBERED_DISCS_MAX:
        named = set(_largest(flashes.counts).tolist())
        numbered = np.array([cluster in named for cluster in ok], dtype=bool)
    if numbered.sum() > 1:
        spread = spread_discs(canvas.ax, true_xy[numbered, 0], true_xy[numbered, 1], min_points=CENTROID_DISC_POINTS)
        disc_xy[numbered] = np.column_stack(spread)
    return CentroidMarks(cluster=ok, true_xy=true_xy, disc_xy=disc_xy, numbered=numbered)


def _largest(counts: np.ndarray) -> np.ndarray:
    """The clusters the legend names when there are more than :data:`LEGEND_ROWS`: the largest, in number order."""
    return np.sort(np.argsort(-counts, kind="stable")[: LEGEND_ROWS - 1])


def _draw_centroids(ax, marks: CentroidMarks, colors: list[str]) -> None:
    """Large discs in the cluster colour, black rim and white halo, with the cluster number inside."""
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    dots = ~marks.numbered
    if dots.any():
        ax.scatter(
            marks.true_xy[dots, 0],
            marks.true_xy[dots, 1],
            s=28,
            c=[colors[i] for i in marks.cluster[dots]],
            edgecolors="black",
            linewidths=0.8,
            zorder=3.9,
        )
    for i, (tx, ty), (cx, cy), moved, numbered in zip(
        marks.cluster, marks.true_xy, marks.disc_xy, marks.moved, marks.numbered, strict=True
    ):
        if not numbered:
            continue
        if moved:  # a line back to where the centroid really is
            ax.plot([tx, cx], [ty, cy], color="black", linewidth=0.8, zorder=3.8)
        ax.scatter([cx], [cy], s=600, marker="o", facecolors="none", edgecolors="white", linewidths=1.6, zorder=3.9)
        ax.scatter([cx], [cy], s=420, marker="o", c=colors[i], edgecolors="black", linewidths=1.6, zorder=4)
        ax.text(
            cx,
            cy,
            str(i),
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold",
            color="white",
            path_effects=outline,
            zorder=5,
            clip_on=True,
        )


@dataclass(frozen=True)
class LegendKey:
    """One legend row: a round marker of ``size`` points in ``face`` (rimmed in ``edge``) and its text."""

    label: str
    size: float
    face: str
    edge: str = "none"
    edge_width: float = 0.0


def legend_keys(flashes: MapInput, colors: list[str]) -> list[LegendKey]:
    """Colour, flashes and share per cluster (the :data:`LEGEND_ROWS` - 1 largest and one row for the rest when
    there are more), then the centroid key when centroids are drawn and the size key when energy sizes them."""
    if flashes.k == 0:
        return []
    counts, total = flashes.counts, max(flashes.n, 1)
    shown = np.arange(len(counts))
    if len(counts) > LEGEND_ROWS:  # the largest clusters, in number order, then one line for the others
        shown = _largest(counts)
    keys = [LegendKey(f"{i}:  {counts[i]:,}  ({100 * counts[i] / total:.0f}%)", 8, colors[i]) for i in shown]
    if len(shown) < len(counts):
        rest = int(counts.sum() - counts[shown].sum())
        keys.append(LegendKey(f"{len(counts) - len(shown)} more: {rest:,} ({100 * rest / total:.0f}%)", 8, "#bbbbbb"))
    if flashes.centroid_ok.any():
        keys.append(LegendKey("centroid", 12, "#dddddd", "black", 1.4))
    if flashes.energy is not None and flashes.n:
        keys.append(LegendKey("size: energy rank", 4, "#777777"))
    return keys


def _draw_legend(fig, pos, keys: list[LegendKey]) -> None:
    """Legend right of the map, its top level with the map's."""
    if not keys:
        return
    handles = [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=key.size,
            markerfacecolor=key.face,
            markeredgecolor=key.edge,
            markeredgewidth=key.edge_width,
            label=key.label,
        )
        for key in keys
    ]
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(pos.x1 + 0.01, pos.y1),
        borderaxespad=0,
        title="cluster:  flashes (share)",
        fontsize=9,
        title_fontsize=9.5,
        frameon=False,
        ncols=1,
        alignment="left",
        handletextpad=0.4,
    )
