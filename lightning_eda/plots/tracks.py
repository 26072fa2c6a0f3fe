"""The storm-track pictures: tracks as paths on the map, and the flash rate of the strongest tracks with their jumps.

Both take the tracks' tables as :mod:`lightning_eda.analysis.tracks` makes them (``storm_track``, ``track_summary``,
``track_rate``) and the tracks to single out, strongest first. matplotlib and basemap load only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lightning_eda.plots.geometry import MapInput, spread_discs
from lightning_eda.plots.map_canvas import MapCanvas, map_canvas, map_headings, no_flashes_notice
from lightning_eda.plots.output import figure_png, new_figure
from lightning_eda.plots.style import cluster_colors, jump_legend, jump_markers, light_grid, no_data, rate_steps

_RATE_FIGSIZE = (12.0, 5.0)
_RATE_CMAP = "plasma"
#: The colour bar's box (figure fractions) in the room map_canvas leaves right of the map.
_COLORBAR_BOX = (0.84, 0.2, 0.018, 0.55)
#: A rank label's box is about this wide (points): labels closer than that are spread apart.
_LABEL_POINTS = 15.0
#: Where a rank label sits, from its track's last position (points, right and up).
_LABEL_OFFSET_POINTS = np.array([9.0, 9.0])


def track_label(track_id: int) -> str:
    """A short name for a track on a plot: its birth time and rank (``18:05 #12``), the id's own parts."""
    stamp, rank = divmod(int(track_id), 10_000)
    return f"{stamp // 100 % 100:02d}:{stamp % 100:02d} #{rank}"


def storm_tracks_map(
    storm_track: pd.DataFrame,
    summary: pd.DataFrame,
    jumps: pd.DataFrame,
    strongest: Sequence[int],
    *,
    title: str | None = None,
    extent: Sequence[float] | None = None,
) -> bytes:
    """Each track's centroid path, coloured by its peak flash rate; jumps as triangles; the strongest labelled.

    ``storm_track``: ``track_id, frame_start, lat, lon`` per track and frame; ``summary``: ``track_id,
    peak_flash_rate``; ``jumps``: ``track_id, period_start`` of each jump; ``strongest``: the ids to label.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    rows = storm_track.sort_values(["track_id", "frame_start"], kind="stable")
    points = MapInput.from_args(rows["lat"], rows["lon"], np.zeros(len(rows), dtype=np.int64), None, None)
    canvas = map_canvas(points, extent)
    ax = canvas.ax
    peak = summary.set_index("track_id")["peak_flash_rate"]
    norm = Normalize(vmin=0.0, vmax=max(1.0, float(peak.max()) if len(peak) else 1.0))
    cmap = colormaps[_RATE_CMAP]
    x, y = canvas.xy(rows["lon"].to_numpy(), rows["lat"].to_numpy())
    ids = rows["track_id"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True]) if len(ids) else np.zeros(1, dtype=np.int64)
    order = np.argsort(peak.reindex(ids[bounds[:-1]]).to_numpy(), kind="stable")  # strongest drawn last, on top
    for i in order:
        lo, hi = bounds[i], bounds[i + 1]
        color = cmap(norm(float(peak.get(ids[lo], 0.0))))
        ax.plot(x[lo:hi], y[lo:hi], color=color, linewidth=1.4, alpha=0.9, zorder=4, solid_capstyle="round")
        ax.plot(x[hi - 1], y[hi - 1], "o", color=color, markersize=2.5, zorder=4)
    if len(jumps):
        at = _position_at(rows, jumps)
        jx, jy = canvas.xy(at["lon"].to_numpy(), at["lat"].to_numpy())
        ax.scatter(jx, jy, marker="^", s=55, color="white", edgecolors="black", linewidths=0.8, zorder=6)
        ax.scatter([], [], marker="^", s=55, color="white", edgecolors="black", label="lightning jump")
        ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    last = rows.groupby("track_id").tail(1).set_index("track_id")
    labels = track_label_marks(canvas, last, strongest)
    for rank, (tx, ty), (lx, ly), moved in zip(labels.rank, labels.true_xy, labels.label_xy, labels.moved, strict=True):
        ax.annotate(
            f"{rank}",
            (tx, ty),
            xytext=(lx, ly),
            textcoords="data",
            ha="center",
            va="center",
            fontsize=8,
            fontweight="bold",
            zorder=7,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "#555555", "alpha": 0.85},
            arrowprops={"arrowstyle": "-", "color": "#333333", "linewidth": 0.7} if moved else None,
        )
    if not len(rows):
        no_flashes_notice(ax)
    colorbar = canvas.fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=canvas.fig.add_axes(_COLORBAR_BOX))
    colorbar.set_label("peak flash rate (flashes/min)", fontsize=9)
    n_jumps = len(jumps)
    summary_text = f"{len(summary):,} tracks, {n_jumps} lightning jump{'s' if n_jumps != 1 else ''}"
    map_headings(ax, "Storm Tracks", title, summary_text)
    return figure_png(canvas.fig)


@dataclass(frozen=True)
class TrackLabelMarks:
    """Where the strongest tracks' rank labels go, in map coordinates: ``true_xy`` each track's last position,
    ``beside_xy`` the usual spot up and to the right of it, ``label_xy`` the label's centre; ``rank`` the number."""

    rank: np.ndarray
    true_xy: np.ndarray
    beside_xy: np.ndarray
    label_xy: np.ndarray

    @property
    def moved(self) -> np.ndarray:
        """Labels pushed away from their usual spot, which get a leader line back to the track."""
        return np.any(self.label_xy != self.beside_xy, axis=1)


def track_label_marks(canvas: MapCanvas, last: pd.DataFrame, strongest: Sequence[int]) -> TrackLabelMarks:
    """Rank labels beside each strong track's last position, spread apart so that no two overlap.

    The strongest storms of an hour often sit within a few km of one another (a mesoscale system's cells), where
    labels all placed up and to the right cover each other; they are nudged apart as the cluster map's discs are.
    """
    shown = [(rank, track) for rank, track in enumerate(strongest, start=1) if track in last.index]
    rank = np.array([r for r, _ in shown], dtype=np.int64)
    tracks = [t for _, t in shown]
    x, y = canvas.xy(last.loc[tracks, "lon"].to_numpy(dtype=float), last.loc[tracks, "lat"].to_numpy(dtype=float))
    true_xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)]).reshape(-1, 2)
    # the usual spot: up and to the right of the end point, by _LABEL_OFFSET_POINTS
    to_display = canvas.ax.transData
    shift = _LABEL_OFFSET_POINTS * canvas.fig.dpi / 72.0
    beside = to_display.inverted().transform(to_display.transform(true_xy) + shift) if len(true_xy) else true_xy
    label_xy = beside.copy()
    if len(true_xy) > 1:
        label_xy = np.column_stack(spread_discs(canvas.ax, beside[:, 0], beside[:, 1], min_points=_LABEL_POINTS))
    return TrackLabelMarks(rank=rank, true_xy=true_xy, beside_xy=beside, label_xy=label_xy)


def _position_at(rows: pd.DataFrame, jumps: pd.DataFrame) -> pd.DataFrame:
    """Where each jump's track was: its centroid in the last frame starting at or before the jump."""
    merged = pd.merge_asof(
        jumps.sort_values("period_start")[["track_id", "period_start"]],
        rows.sort_values("frame_start")[["track_id", "frame_start", "lat", "lon"]],
        left_on="period_start",
        right_on="frame_start",
        by="track_id",
        direction="backward",
    )
    return merged.dropna(subset=["lat", "lon"])


def track_flash_rate(track_rate: pd.DataFrame, summary: pd.DataFrame, strongest: Sequence[int], *, title=None) -> bytes:
    """The 2-minute flash rates the jump algorithm judged, one line per strong track, its jumps as triangles.

    ``track_rate``: ``track_id, period_start, flash_rate, jump``; ``summary``: ``track_id, peak_flash_rate,
    n_flashes``; ``strongest``: the ids to draw, strongest first (numbered as on the map).
    """
    from matplotlib.dates import DateFormatter

    fig = new_figure(_RATE_FIGSIZE)
    ax = fig.add_subplot()
    if not len(strongest):
        no_data(ax, "No storm tracks in this window")
    colors = cluster_colors(max(len(strongest), 1))
    peak = summary.set_index("track_id")
    for rank, track in enumerate(strongest, start=1):
        rate = track_rate[track_rate["track_id"] == track].sort_values("period_start")
        color = colors[rank - 1]
        label = f"{rank}: track {track_label(track)}, peak {peak.at[track, 'peak_flash_rate']:.0f}/min"
        rate_steps(ax, rate["period_start"], rate["flash_rate"], pd.Timedelta(minutes=2), color=color, label=label)
        flagged = rate[rate["jump"]]
        jump_markers(ax, flagged["period_start"], flagged["flash_rate"], color=color)
    if len(track_rate) and track_rate[track_rate["track_id"].isin(list(strongest))]["jump"].any():
        jump_legend(ax, "lightning jump (σ algorithm)")
    ax.set_title("Flash rate of the strongest storm tracks" + (f"\n{title}" if title else ""), fontsize=12, pad=8)
    ax.set_xlabel("time (UTC)", fontsize=10)
    ax.set_ylabel("flashes per minute (2-minute mean)", fontsize=10)
    light_grid(ax)
    if len(strongest):  # beside the axes: a day's series fill the whole width
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=True)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    fig.autofmt_xdate()
    return figure_png(fig)
