"""The analyses behind the clustering assets, one function each: read the window's inputs, compute, write, report.

Every function takes the :class:`~lightning_eda.analysis.analysis_store.AnalysisStore` and already-parsed settings,
and returns a :class:`Report`: the numbers, tables and plots the UI shows beside the materialization, and a line for
the run's log. A problem the user can fix raises ``ValueError`` or ``LookupError`` with a message saying what to do.
The plotting stack is imported only by the functions that draw. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from lightning_eda.analysis import clustering, fed, storms
from lightning_eda.analysis.analysis_store import AnalysisStore
from lightning_eda.analysis.features import feature_matrix, preprocess
from lightning_eda.analysis.storm_scale import segmentation_from_labels, storm_kmeans
from lightning_eda.analysis.window import AnalysisWindow, WindowRequest
from lightning_eda.goes import satellites
from lightning_eda.store import database

#: The columns of ``cluster_summary`` the "largest storms" table shows.
LARGEST_STORM_COLUMNS = ["cluster", "lat", "lon", "n_flashes", "flash_rate", "extent_km", "duration_min", "n_jumps"]


class Markdown(str):
    """Text the UI renders as markdown (a table, a preview)."""


@dataclass(frozen=True)
class Report:
    """What an analysis made, for the UI and the log.

    ``metadata`` values are numbers, booleans, text, dicts (shown as JSON), :class:`Markdown` or
    :class:`~lightning_eda.analysis.analysis_store.SavedPlot`. A number that does not exist (no knee, no score) is
    left out, never replaced by text, so each key keeps one type from run to run.
    """

    metadata: dict[str, Any]
    log: str


def _table(frame: pd.DataFrame) -> Markdown:
    return Markdown(frame.to_markdown(index=False))


def _window_features(con: duckdb.DuckDBPyConnection) -> tuple[AnalysisWindow, pd.DataFrame, np.ndarray]:
    """The window, its preprocessed flashes and the matrix k-means clusters."""
    window = AnalysisStore.read_window(con)
    flashes = database.read_features(con)
    return window, flashes, feature_matrix(flashes, window.time_weight_km_per_min)


def _storm_k(window: AnalysisWindow) -> int | None:
    """The storm-scale k the evaluators' plots mark, when the window has storms."""
    return window.storm_count or None


def preprocess_window(analyses: AnalysisStore, *, bucket: str, request: WindowRequest) -> Report:
    """Select the window's flashes, clean and project them, and write ``flash_features`` and ``feature_window``."""
    store = analyses.tables
    buckets = satellites.slot_buckets(bucket)  # east/west: every satellite of the slot
    if request.start is None:
        latest = max((h for b in buckets if (h := database.latest_loaded_hour_in_store(store, b))), default=None)
    else:
        latest = None
    start, end = request.bounds(latest)
    spans = satellites.bucket_spans(bucket, start, end)
    with analyses.connect(hours=database.window_span_hours(store, spans)) as con:
        flashes = database.window_flashes(con, spans=spans)
    result = preprocess(
        flashes,
        quality_flags=request.quality_flags,
        box=request.box,
        time_weight_km_per_min=request.time_weight_km_per_min,
    )
    window = AnalysisWindow(
        bucket=bucket,
        start=start,
        end=end,
        transform=result.transform,
        box=request.box,
        time_weight_km_per_min=result.time_weight_km_per_min,
        n_input=len(flashes),
        n_features=len(result.features),
        dropped=result.dropped,
        storm_count=result.storms.k,
        storm_reason=result.storms.reason,
    )
    if result.features.empty:
        raise ValueError(f"no usable flashes in {window.text} ({len(flashes)} loaded)")
    analyses.write_window(window, result.features)
    return Report(
        metadata={
            "window": window.text,
            "flashes_in": window.n_input,
            "flashes_kept": window.n_features,
            **{f"dropped_{reason}": int(count) for reason, count in window.dropped.items()},
            "projection": window.transform.to_dict(),
            "storm_count": window.storm_count,
            "storm_reason": window.storm_reason,
            "flashes_in_storms": int(result.storms.in_storm.sum()),
            "preview": _table(result.features.head(10)),
        },
        log=(
            f"{window.n_features} of {window.n_input} flashes kept for {window.text}; dropped {dict(window.dropped)}; "
            f"{window.storm_reason}"
        ),
    )


def score_elbow(analyses: AnalysisStore, *, ks: Sequence[int], n_init: int, seed: int) -> Report:
    """k-means inertia for each k (table ``elbow_scores``) and the elbow plot with its knee.

    No ``ks`` means about ten around the window's storm count (:func:`clustering.evaluation_ks`).
    """
    from lightning_eda.plots.curves import elbow_plot

    with analyses.connect() as con:
        window, _, X = _window_features(con)
    ks = clustering.evaluation_ks(ks, window.storm_count, clustering.DEFAULT_ELBOW_KS)
    fits = clustering.KMeansFits.load(analyses.fits_path, X, n_init=n_init, seed=seed)
    inertias, knee = clustering.evaluate_elbow(X, ks, n_init=n_init, seed=seed, fits=fits)
    fits.save(analyses.fits_path)
    analyses.write_scores("inertia", inertias, window=window, n_points=len(X))
    title = f"Elbow method — {len(X):,} flashes, {window.text}"
    png = elbow_plot(list(inertias), list(inertias.values()), knee=knee, title=title, storm_k=_storm_k(window))
    plot = analyses.save_plot(png, "elbow", "elbow curve")
    metadata = {
        "inertia_by_k": {str(k): v for k, v in inertias.items()},
        "n_points": len(X),
        "storm_count": window.storm_count,
        "plot": plot,
    }
    if knee is not None:
        metadata["knee"] = knee
    return Report(metadata, f"knee at k={knee}; plot at {plot.path}")


def score_silhouette(analyses: AnalysisStore, *, ks: Sequence[int], n_init: int, seed: int, sample_size: int) -> Report:
    """The silhouette of each k's clustering (table ``silhouette_scores``) and its plot with the best k.

    No ``ks`` means about ten around the window's storm count (:func:`clustering.evaluation_ks`).
    """
    from lightning_eda.plots.curves import silhouette_plot

    with analyses.connect() as con:
        window, _, X = _window_features(con)
    ks = clustering.evaluation_ks(ks, window.storm_count, clustering.DEFAULT_SILHOUETTE_KS)
    fits = clustering.KMeansFits.load(analyses.fits_path, X, n_init=n_init, seed=seed)
    sweep = clustering.evaluate_silhouette(X, ks, n_init=n_init, seed=seed, sample_size=sample_size, fits=fits)
    fits.save(analyses.fits_path)
    analyses.write_scores("silhouette", sweep.scores, window=window, n_points=len(X), sample_size=sweep.sample_size)
    basis = f"sample of {sweep.sample_size:,}" if sweep.sampled else "all"
    title = f"Silhouette — {basis} of {len(X):,} flashes, {window.text}"
    png = silhouette_plot(
        list(sweep.scores), list(sweep.scores.values()), best_k=sweep.best_k, title=title, storm_k=_storm_k(window)
    )
    plot = analyses.save_plot(png, "silhouette", "silhouette by k")
    metadata = {
        "silhouette_by_k": {str(k): v for k, v in sweep.scores.items()},
        "sampled": sweep.sampled,
        "sample_size": sweep.sample_size or len(X),
        "sample_seed": seed,
        "n_points": len(X),
        "storm_count": window.storm_count,
        "plot": plot,
    }
    if sweep.best_k is not None:
        metadata["best_k"] = sweep.best_k
    return Report(metadata, f"best silhouette at k={sweep.best_k} ({basis} points); plot at {plot.path}")


def cluster_window(analyses: AnalysisStore, *, k: int | str, criterion: str, n_init: int, seed: int) -> Report:
    """The final k-means and the storm tables it gives.

    k as set, or for ``"auto"`` by ``criterion``: ``"storms"`` takes the window's storm count and starts k-means
    from the storms (:func:`~lightning_eda.analysis.storm_scale.storm_kmeans`); ``"silhouette"`` (and ``"storms"`` on a
    window with no storm) chooses from the evaluators' scores and uses their fit of that k.
    """
    with analyses.connect() as con:
        window, flashes, X = _window_features(con)
        evaluation = database.read_evaluation(
            con, window_start=window.start, window_end=window.end, n_points=window.n_features
        )
    try:
        choice = clustering.choose_window_k(
            k, criterion, storm_count=window.storm_count, storm_reason=window.storm_reason, evaluation=evaluation
        )
    except ValueError as exc:
        raise ValueError(f"{exc}; {len(X)} flashes") from None
    if choice.criterion == clustering.STORMS:
        storms_found = segmentation_from_labels(flashes["storm"], flashes["x_km"], flashes["y_km"], window.storm_reason)
        result = storm_kmeans(X, storms_found)
        # the evaluators scored their own fit of this k, not the one started from the storms: score it on their sample
        silhouette = clustering.sampled_silhouette(
            X, result.labels, sample_size=clustering.DEFAULT_SILHOUETTE_SAMPLE, seed=seed
        )
    else:
        fits = clustering.KMeansFits.load(analyses.fits_path, X, n_init=n_init, seed=seed)
        result = fits.fit(X, [choice.k])[choice.k]  # the evaluators' fit of k, when they made one
        silhouette = clustering.silhouette_of(evaluation, choice.k)
    tables = clustering.cluster_tables(flashes, result, window.transform)
    for table, frame in tables.by_table().items():
        analyses.write_table(table, frame)
    metadata = {
        "k": choice.k,
        "k_reason": choice.reason,
        "k_criterion": choice.criterion,
        "storm_count": window.storm_count,
        "inertia": float(result.inertia),
        "n_iter": int(result.n_iter),
        "n_flashes": len(X),
        "lightning_jumps": int(tables.jumps["jump"].sum()),
        "largest_storms": _table(storms.largest_storms(tables.summary)[LARGEST_STORM_COLUMNS]),
        "summary": _table(tables.summary),
    }
    if silhouette is not None:
        metadata["silhouette"] = silhouette
    log = f"k={choice.k} by {choice.criterion} ({choice.reason}); inertia {result.inertia:.4g}, {result.n_iter} iter."
    return Report(metadata, log)


def draw_cluster_map(analyses: AnalysisStore) -> Report:
    """The Lightning Events Map: flashes coloured by cluster, centroids, coastlines."""
    from lightning_eda.plots.cluster_map import cluster_map

    with analyses.connect() as con:
        window = analyses.read_window(con)
        points = database.read_clustered_flashes(con)
        summary = database.read_cluster_summary(con)
    png = cluster_map(
        points["lat"].to_numpy(),
        points["lon"].to_numpy(),
        points["cluster"].to_numpy(),
        summary[["lat", "lon"]].to_numpy(),
        energy=points["energy"].to_numpy(),
        title=window.title,
        extent=window.extent,
    )
    plot = analyses.save_plot(png, "cluster_map", "Lightning Events Map")
    return Report({"map": plot, "clusters": len(summary), "flashes": len(points)}, f"map saved at {plot.path}")


def map_flash_extent_density(analyses: AnalysisStore, *, product: str, cell_km: float) -> Report:
    """Flash extent density over the window (table ``flash_extent_density``) and its map."""
    from lightning_eda.plots.fed_map import fed_map

    with analyses.connect() as con:
        window = analyses.read_window(con)
    hours = database.loaded_granule_rows(
        analyses.tables, spans=window.spans(), product=product, tables=("glm_event", "glm_group")
    )
    table = fed.window_density(hours, window.transform, cell_km, window.box)
    analyses.write_table("flash_extent_density", table)
    png = fed_map(
        table["lat"].to_numpy(),
        table["lon"].to_numpy(),
        table["flash_count"].to_numpy(),
        cell_km=cell_km,
        title=window.title,
        extent=window.extent,
    )
    plot = analyses.save_plot(png, "flash_extent_density", "Flash extent density")
    metadata = {
        "map": plot,
        "cells": len(table),
        "max_flashes_per_cell": int(table["flash_count"].max()) if len(table) else 0,
        "cell_km": cell_km,
        "densest": _table(table.head(10)),
    }
    return Report(metadata, f"{len(table)} cells touched; map saved at {plot.path}")


def draw_storm_flash_rate(analyses: AnalysisStore) -> Report:
    """Flashes per minute of the largest storms, their lightning jumps marked."""
    from lightning_eda.plots.storm_rate import storm_flash_rate

    with analyses.connect() as con:
        window = analyses.read_window(con)
        summary = database.read_cluster_summary(con)
        per_minute, jumps = database.read_storm_rates(con)
    largest = storms.largest_storms(summary)
    png = storm_flash_rate(per_minute, jumps, largest, title=window.title)
    plot = analyses.save_plot(png, "storm_flash_rate", "Flash rate of the largest storms")
    metadata = {"plot": plot, "storms": len(largest), "jumps": len(jumps)}
    return Report(metadata, f"rates of {len(largest)} storms plotted at {plot.path}")
