"""The k-selection curves: inertia (elbow) and mean silhouette against k, each with its chosen k ringed and the
storm-scale k (the window's storm count) drawn as a dotted line.

Both are one line of a measure against k drawn by :func:`_k_curve`; they differ only in labels, in how the chosen
point is annotated and in how the y axis is scaled (:class:`_Curve`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.ticker import MaxNLocator

from lightning_eda.plots.output import CURVE_FIGSIZE, figure_png, new_figure
from lightning_eda.plots.style import ACCENT, LINE_COLOR, light_grid, no_data


@dataclass(frozen=True)
class _Curve:
    """What tells one k curve from the other."""

    name: str  # the public function, for error messages
    mark_name: str  # its argument naming the chosen k
    empty_message: str
    ylabel: str
    default_title: str
    mark_label: Callable[[int, float], str]
    scale_y: Callable[[object, np.ndarray], None]  # (ax, finite values), called only when there is data


def _elbow_scale(ax, finite: np.ndarray) -> None:
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useMathText=True)


def _silhouette_scale(ax, finite: np.ndarray) -> None:
    """Room above the best point for its label, never beyond [-1, 1], and the zero line once scores go negative."""
    low, high = float(finite.min()), float(finite.max())
    pad = max(0.05, 0.15 * (high - low))
    ax.set_ylim(max(-1.0, min(0.0, low - pad)), min(1.0, high + 2 * pad))
    if low < 0:
        ax.axhline(0.0, color="#888888", linewidth=1, zorder=2)


_ELBOW = _Curve(
    name="elbow_plot",
    mark_name="knee",
    empty_message="No k-means runs to plot",
    ylabel="inertia (within-cluster sum of squares)",
    default_title="Elbow method",
    mark_label=lambda k, y: f"knee: k = {k}",
    scale_y=_elbow_scale,
)
_SILHOUETTE = _Curve(
    name="silhouette_plot",
    mark_name="best_k",
    empty_message="No silhouette scores to plot",
    ylabel="silhouette coefficient",
    default_title="Silhouette analysis",
    mark_label=lambda k, y: f"best: k = {k} ({y:.3f})",
    scale_y=_silhouette_scale,
)


def elbow_plot(
    ks: Sequence[int],
    inertias: Sequence[float],
    knee: int | None = None,
    *,
    title: str | None = None,
    storm_k: int | None = None,
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
    storm_k : int, optional
        The storm-scale k (the window's storm count), drawn as a dotted vertical line; need not be one of ``ks``.

    Returns
    -------
    bytes
        PNG of ``CURVE_FIGSIZE`` at ``DPI``. Empty ``ks`` gives a figure saying there is nothing to plot.
    """
    return _k_curve(_ELBOW, ks, inertias, knee, title, storm_k)


def silhouette_plot(
    ks: Sequence[int],
    scores: Sequence[float],
    best_k: int | None = None,
    *,
    title: str | None = None,
    storm_k: int | None = None,
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
    storm_k : int, optional
        The storm-scale k, drawn as a dotted vertical line (as for :func:`elbow_plot`).

    Returns
    -------
    bytes
        PNG of ``CURVE_FIGSIZE`` at ``DPI``. Empty ``ks`` (or no finite value) gives a figure saying there is
        nothing to plot.
    """
    return _k_curve(_SILHOUETTE, ks, scores, best_k, title, storm_k)


def _k_curve(
    curve: _Curve,
    ks: Sequence[int],
    values: Sequence[float],
    mark: int | None,
    title: str | None,
    storm_k: int | None,
) -> bytes:
    ks_arr, vals = _curve_inputs(ks, values, curve.name)
    fig = new_figure(CURVE_FIGSIZE)
    ax = fig.add_subplot()
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        no_data(ax, curve.empty_message)
    else:
        ax.plot(ks_arr, vals, marker="o", markersize=6, linewidth=2, color=LINE_COLOR, zorder=3)
        if mark is not None:
            y = _value_at(ks_arr, vals, int(mark), curve.mark_name)
            _mark_point(ax, int(mark), y, curve.mark_label(int(mark), y), ks_arr)
        curve.scale_y(ax, finite)
        if storm_k is not None:
            _mark_storm_k(ax, int(storm_k), ks_arr, vals)
    style_curve_axes(ax, curve.ylabel, title or curve.default_title)
    return figure_png(fig)


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


def _mark_point(ax, x: float, y: float, text: str, ks: np.ndarray) -> None:
    """Ring the chosen point, draw a dashed guide to the x axis and annotate it, away from the nearer edge."""
    ax.axvline(x, color=ACCENT, linestyle="--", linewidth=1.2, alpha=0.8, zorder=1)
    ring = {"markersize": 16, "markerfacecolor": "none", "markeredgecolor": ACCENT, "markeredgewidth": 2.2}
    ax.plot([x], [y], marker="o", linestyle="none", zorder=4, **ring)
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
        color=ACCENT,
        arrowprops={"arrowstyle": "->", "color": ACCENT, "linewidth": 1.2},
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": ACCENT, "alpha": 0.9},
        zorder=5,
    )


def _mark_storm_k(ax, k: int, ks: np.ndarray, values: np.ndarray) -> None:
    """A dotted line at the storm-scale k, labelled along it on the side away from the curve there, so the curves
    read against the k the storms give."""
    ax.axvline(k, color=LINE_COLOR, linestyle=":", linewidth=1.6, alpha=0.9, zorder=2)
    finite = np.isfinite(values)
    low, high = ax.get_ylim()
    curve_at_k = np.interp(k, ks[finite], values[finite])
    below = (curve_at_k - low) / (high - low) > 0.5  # the curve is high there: label the lower half
    ax.annotate(
        f"storms: k = {k}",
        xy=(k, 0.02 if below else 0.98),
        xycoords=("data", "axes fraction"),
        xytext=(4, 0),
        textcoords="offset points",
        rotation=90,
        ha="left",
        va="bottom" if below else "top",
        fontsize=10,
        color=LINE_COLOR,
    )


def style_curve_axes(ax, ylabel: str, title: str) -> None:
    """Axis labels, integer k ticks, light grid, and the title wrapped to a width the figure holds."""
    ax.set_xlabel("number of clusters k", fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    # wrapped at a width the figure holds: a day's window and a sampled basis make titles too long for one line
    ax.set_title("\n".join(textwrap.wrap(title, 72)), fontsize=12.5, fontweight="bold", pad=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    light_grid(ax)
