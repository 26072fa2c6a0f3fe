"""The storm flash-rate chart: flashes per minute of the largest storms, lightning jumps marked."""

from __future__ import annotations

import numpy as np

from lightning_eda.geo import format_position
from lightning_eda.plots.output import figure_png, new_figure
from lightning_eda.plots.style import cluster_colors, jump_legend, jump_markers, light_grid, no_data, rate_steps

_FIGSIZE = (10.0, 5.0)


def storm_flash_rate(per_minute, jumps, storms, *, title: str | None = None) -> bytes:
    """Flashes per minute of the given storms (one line each, in their map colours), jumps marked with triangles.

    ``per_minute``: ``cluster, minute, flashes``; ``jumps``: ``cluster, time, flash_rate`` of the flagged periods;
    ``storms``: ``cluster, lat, lon, n_flashes`` of the storms to draw (the largest first).
    """
    fig = new_figure(_FIGSIZE)
    ax = fig.add_subplot()
    chosen = list(storms["cluster"])
    if not chosen:
        no_data(ax, "No storms in this window")
    n_colors = max(int(per_minute["cluster"].max()) + 1 if len(per_minute) else 1, max(chosen, default=0) + 1)
    colors = cluster_colors(n_colors)
    for cluster in chosen:
        row = storms[storms["cluster"] == cluster].iloc[0]
        rate = per_minute[per_minute["cluster"] == cluster]
        where = format_position(row["lat"], row["lon"], decimals=1)
        label = f"{cluster}: {where}, {int(row['n_flashes']):,} flashes"
        rate_steps(ax, rate["minute"], rate["flashes"], np.timedelta64(1, "m"), color=colors[cluster], label=label)
        flagged = jumps[jumps["cluster"] == cluster]
        jump_markers(ax, flagged["time"], flagged["flash_rate"], color=colors[cluster])
    if len(jumps):
        jump_legend(ax, "lightning jump (2σ)")
    ax.set_title("Flash rate of the largest storms" + (f"\n{title}" if title else ""), fontsize=12, pad=8)
    ax.set_xlabel("time (UTC)", fontsize=10)
    ax.set_ylabel("flashes per minute", fontsize=10)
    light_grid(ax)
    if chosen:
        ax.legend(fontsize=8, loc="upper left", frameon=True)
    fig.autofmt_xdate()
    return figure_png(fig)
