"""Colours and axes styling that the figures share, so a cluster keeps its colour from the map to the rate chart."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_hex

#: tab10 followed by two dark, saturated extras: twelve colours that stay apart on a light map background.
CLUSTER_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7ba52",
)  # fmt: skip

LINE_COLOR = "#1f4e79"
ACCENT = "#c0392b"
OCEAN = "#e8f0f7"
LAND = "#f4f1ea"


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


def light_grid(ax) -> None:
    """Light grey grid behind the data, no top or right spine: the look of every chart that is not a map."""
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def no_data(ax, message: str) -> None:
    """Say in the middle of an empty chart why it is empty, with no ticks to suggest a scale."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=13, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def rate_steps(ax, times, rates, step, *, color: str, label: str) -> None:
    """A flash-rate series as steps, each value held across its whole period (the last one too)."""
    times, rates = list(times), list(rates)
    end = [times[-1] + step] if times else []
    ax.plot(times + end, rates + rates[-1:], color=color, linewidth=1.6, drawstyle="steps-post", label=label)


def jump_markers(ax, times, rates, *, color: str) -> None:
    """Lightning jumps as triangles at their period and rate, in the series' colour."""
    if len(times):
        ax.scatter(times, rates, marker="^", s=90, color=color, edgecolors="black", linewidths=0.8, zorder=4)


def jump_legend(ax, label: str) -> None:
    """The legend's one entry for every series' jump triangles."""
    ax.scatter([], [], marker="^", s=90, color="white", edgecolors="black", label=label)
