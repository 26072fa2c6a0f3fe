"""Groups ``preprocessor``, ``evaluators`` and ``kmeans_cluster``: flashes → features → k → clusters → map.

These assets are not partitioned: each works on the window the preprocessor selected (an hour by default, a day or
any range of hours when configured), recorded in ``feature_window`` so every downstream asset reads the same one.
"""

import json
from datetime import datetime
from typing import Any, Optional

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field, field_validator

from lightning_eda.analysis import clustering, storms
from lightning_eda.analysis.fed import DEFAULT_CELL_KM, FlashExtentDensity
from lightning_eda.analysis.features import FeatureTransform, LatLonBox, feature_matrix, preprocess
from lightning_eda.orchestration.assets.ingestor import load
from lightning_eda.orchestration.constants import ANALYSIS_POOL, CLUSTERING, DENSITY, EVALUATORS, PREPROCESSOR
from lightning_eda.orchestration.metadata import saved_plot
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.plots.cluster_map import cluster_map as draw_cluster_map
from lightning_eda.plots.curves import elbow_plot, silhouette_plot
from lightning_eda.plots.fed_map import fed_map
from lightning_eda.plots.storm_rate import storm_flash_rate as draw_storm_flash_rate
from lightning_eda.settings import ConfigError, window_bounds
from lightning_eda.store import database


class PreprocessorConfig(Config):
    window_start: str = Field(
        default="",
        description="UTC start of the window, e.g. '2018-07-02 04:00' or a partition key; empty: the latest loaded hour.",
    )
    window_hours: int = Field(default=1, description="Length of the window in hours (24 for a day).")
    quality_flags: Optional[list[int]] = Field(
        default=None, description="Keep only flashes with these quality flags, e.g. [0]; null keeps all."
    )
    lat_min: Optional[float] = Field(default=None, description="Region: southern edge (degrees); set all four or none.")
    lat_max: Optional[float] = Field(default=None, description="Region: northern edge (degrees).")
    lon_min: Optional[float] = Field(default=None, description="Region: western edge (degrees).")
    lon_max: Optional[float] = Field(
        default=None, description="Region: eastern edge (degrees); below lon_min crosses the antimeridian."
    )
    time_weight_km_per_min: float = Field(
        default=0.0,
        description="Space-time clustering: a minute between two flashes counts as this many km (0: space only).",
    )

    def region(self) -> Optional[LatLonBox]:
        """The box, or None; raises ConfigError unless all four edges or none are set and they make a box."""
        edges = {"lat_min": self.lat_min, "lat_max": self.lat_max, "lon_min": self.lon_min, "lon_max": self.lon_max}
        given = [name for name, value in edges.items() if value is not None]
        if not given:
            return None
        if len(given) != 4:
            missing = ", ".join(name for name in edges if name not in given)
            raise ConfigError(f"set all of lat_min, lat_max, lon_min, lon_max or none (missing: {missing})")
        try:
            return LatLonBox(**edges)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


class ElbowConfig(Config):
    ks: list[int] = Field(default=list(clustering.DEFAULT_ELBOW_KS), description="Cluster counts to try.")
    n_init: int = Field(default=10, description="k-means restarts per k (best kept).")
    seed: int = Field(default=0, description="Random seed (results are reproducible).")


class SilhouetteConfig(Config):
    ks: list[int] = Field(default=list(clustering.DEFAULT_SILHOUETTE_KS), description="Cluster counts to score.")
    n_init: int = Field(default=10, description="k-means restarts per k (best kept).")
    seed: int = Field(default=0, description="Random seed for k-means and for the sample.")
    sample_size: int = Field(
        default=20_000, description="Above this many flashes, silhouettes are computed on a seeded random sample."
    )


class KMeansConfig(Config):
    # Dagster's config schema has no int-or-"auto" type, so the field accepts any scalar and the validator below
    # turns it into an int or "auto" when the run config is read: a bad value fails the run before any step.
    k: Any = Field(
        default=clustering.AUTO_K,
        description="Number of clusters (a whole number), or 'auto': best silhouette, the elbow's knee breaking ties.",
    )
    n_init: int = Field(default=10, description="k-means restarts (best kept).")
    seed: int = Field(default=0, description="Random seed.")

    @field_validator("k")
    @classmethod
    def _k_is_a_count_or_auto(cls, value):
        return clustering.parse_k(value)


def _window_text(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"


def _fits(data: LightningDataResource, X: np.ndarray, n_init: int, seed: int) -> clustering.KMeansFits:
    """The window's k-means fits so far (the elbow fits each k once; the silhouette and the final fit reuse them)."""
    return clustering.KMeansFits.load(_fits_path(data), X, n_init=n_init, seed=seed)


def _fits_path(data: LightningDataResource):
    return data.store.analysis_root / "kmeans_fits.npz"


def _features(con) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """The preprocessed flashes, their feature matrix and the window they came from."""
    try:
        frame, window = database.read_features(con)
    except LookupError as exc:
        raise Failure(description=f"{exc}: materialize `preprocessor` first") from None
    return frame, feature_matrix(frame, float(window.get("time_weight_km_per_min") or 0.0)), window


@asset(
    pool=ANALYSIS_POOL,
    group_name=PREPROCESSOR,
    deps=[load],
    kinds={"duckdb", "numpy"},
    description="Clean the window's flashes and project them to z-scored equal-area features (table flash_features).",
)
def preprocessor(
    context: AssetExecutionContext, config: PreprocessorConfig, archive: GlmArchiveResource, data: LightningDataResource
) -> MaterializeResult:
    with data.get_connection() as con:
        try:
            box = config.region()
            latest = database.latest_loaded_hour(con, archive.bucket)
            start, end = window_bounds(config.window_start, config.window_hours, latest)
            if config.time_weight_km_per_min < 0:
                raise ConfigError(f"time_weight_km_per_min={config.time_weight_km_per_min} must be >= 0")
        except ConfigError as exc:
            raise Failure(description=f"{exc} ({archive.bucket})") from None
        flashes = database.window_flashes(con, bucket=archive.bucket, start=start, end=end)
        result = preprocess(
            flashes, quality_flags=config.quality_flags, box=box, time_weight_km_per_min=config.time_weight_km_per_min
        )
        if result.features.empty:
            raise Failure(description=f"no usable flashes in {_window_text(start, end)} ({len(flashes)} loaded)")
        window = {
            "bucket": archive.bucket,
            "window_start": start,
            "window_end": end,
            "n_input": len(flashes),
            "n_features": len(result.features),
            "dropped": json.dumps(result.dropped),
            "transform": json.dumps(result.transform.to_dict()),
            "box": json.dumps(box.to_dict()) if box else None,
            "time_weight_km_per_min": result.time_weight_km_per_min,
        }
        _fits_path(data).unlink(missing_ok=True)  # fits of the previous features
        data.store.write_analysis("flash_features", result.features)
        data.store.write_analysis("feature_window", pd.DataFrame([window]))
    context.log.info(
        f"{len(result.features)} of {len(flashes)} flashes kept for {_window_text(start, end)}; dropped {result.dropped}"
    )
    return MaterializeResult(
        metadata={
            "window": _window_text(start, end),
            "flashes_in": len(flashes),
            "flashes_kept": len(result.features),
            **{f"dropped_{reason}": int(count) for reason, count in result.dropped.items()},
            "projection": MetadataValue.json(result.transform.to_dict()),
            "preview": MetadataValue.md(result.features.head(10).to_markdown(index=False)),
        }
    )


def _store_scores(data: LightningDataResource, column: str, scores: dict, n_points: int, window: dict, sample_size=None):
    database.upsert_evaluation(
        data.store,
        column,
        scores,
        n_points=n_points,
        window_start=window["window_start"],
        window_end=window["window_end"],
        sample_size=sample_size,
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=EVALUATORS,
    deps=[preprocessor],
    kinds={"numpy", "duckdb"},
    description="Elbow method: k-means inertia for each k, with the knee marked (cluster_evaluation.inertia).",
)
def elbow_evaluator(context: AssetExecutionContext, config: ElbowConfig, data: LightningDataResource) -> MaterializeResult:
    with data.get_connection() as con:
        _, X, window = _features(con)
    fits = _fits(data, X, config.n_init, config.seed)
    inertias, knee = clustering.evaluate_elbow(X, config.ks, n_init=config.n_init, seed=config.seed, fits=fits)
    fits.save(_fits_path(data))
    _store_scores(data, "inertia", inertias, len(X), window)
    title = f"Elbow method — {len(X):,} flashes, {_window_text(window['window_start'], window['window_end'])}"
    png = elbow_plot(list(inertias), list(inertias.values()), knee=knee, title=title)
    plot_metadata = saved_plot(data, png, "elbow.png", "elbow curve")
    context.log.info(f"knee at k={knee}; plot at {plot_metadata['plot_path'].value}")
    return MaterializeResult(
        metadata={
            "knee": knee if knee is not None else "none",
            "inertia_by_k": MetadataValue.json({str(k): v for k, v in inertias.items()}),
            "n_points": len(X),
            **plot_metadata,
        }
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=EVALUATORS,
    deps=[preprocessor, elbow_evaluator],  # after the elbow, to reuse its fits
    kinds={"numpy", "duckdb"},
    description="Silhouette coefficient for each k, best k marked (cluster_evaluation.silhouette).",
)
def silhouette_evaluator(
    context: AssetExecutionContext, config: SilhouetteConfig, data: LightningDataResource
) -> MaterializeResult:
    with data.get_connection() as con:
        _, X, window = _features(con)
    fits = _fits(data, X, config.n_init, config.seed)
    sweep = clustering.evaluate_silhouette(
        X, config.ks, n_init=config.n_init, seed=config.seed, sample_size=config.sample_size, fits=fits
    )
    fits.save(_fits_path(data))
    _store_scores(data, "silhouette", sweep.scores, len(X), window, sample_size=sweep.sample_size)
    best_k = max(sweep.scores, key=sweep.scores.get) if sweep.scores else None
    basis = f"sample of {sweep.sample_size:,}" if sweep.sampled else "all"
    title = f"Silhouette — {basis} of {len(X):,} flashes, {_window_text(window['window_start'], window['window_end'])}"
    png = silhouette_plot(list(sweep.scores), list(sweep.scores.values()), best_k=best_k, title=title)
    plot_metadata = saved_plot(data, png, "silhouette.png", "silhouette by k")
    context.log.info(f"best silhouette at k={best_k} ({basis} points); plot at {plot_metadata['plot_path'].value}")
    return MaterializeResult(
        metadata={
            "best_k": best_k if best_k is not None else "none",
            "silhouette_by_k": MetadataValue.json({str(k): v for k, v in sweep.scores.items()}),
            "sampled": sweep.sampled,
            "sample_size": sweep.sample_size or len(X),
            "sample_seed": config.seed,
            "n_points": len(X),
            **plot_metadata,
        }
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=CLUSTERING,
    deps=[preprocessor, elbow_evaluator, silhouette_evaluator],
    kinds={"numpy", "duckdb"},
    description="Fit the final k-means (k from config or auto) → flash_cluster and cluster_summary.",
)
def kmeans_cluster(context: AssetExecutionContext, config: KMeansConfig, data: LightningDataResource) -> MaterializeResult:
    with data.get_connection() as con:
        flashes, X, window = _features(con)
        evaluation = database.read_evaluation(con, window)
    try:
        k, reason = clustering.choose_k_from_evaluation(config.k, evaluation)
    except ValueError as exc:
        raise Failure(description=f"{exc}; {len(X)} flashes") from None
    result = _fits(data, X, config.n_init, config.seed).fit(X, [k])[k]  # the evaluators' fit of k, when they made one
    lat, lon = FeatureTransform.from_dict(json.loads(window["transform"])).to_latlon(result.centroids[:, :2])
    summary = clustering.summarize_clusters(flashes, result.labels, np.column_stack([lat, lon]))
    per_minute = storms.flash_rate_per_minute(flashes, result.labels)
    jumps = storms.storm_jumps(per_minute)
    summary = summary.merge(storms.storm_statistics(flashes, result.labels, jumps), on="cluster", how="left")
    summary["n_jumps"] = summary["n_jumps"].fillna(0).astype("int64")
    assignments = flashes[["source_file", "flash_id"]].assign(cluster=result.labels.astype(np.int32))
    data.store.write_analysis("flash_cluster", assignments)
    data.store.write_analysis("cluster_summary", summary)
    data.store.write_analysis("storm_rate", per_minute)
    data.store.write_analysis("lightning_jump", jumps)
    silhouette = evaluation.set_index("k")["silhouette"].get(k) if not evaluation.empty else None
    context.log.info(f"k={k} ({reason}); inertia {result.inertia:.4g} after {result.n_iter} iterations")
    return MaterializeResult(
        metadata={
            "k": k,
            "k_reason": reason,
            "silhouette": float(silhouette) if silhouette is not None and pd.notna(silhouette) else "n/a",
            "inertia": float(result.inertia),
            "n_iter": int(result.n_iter),
            "n_flashes": len(X),
            "lightning_jumps": int(jumps["jump"].sum()) if len(jumps) else 0,
            "largest_storms": MetadataValue.md(
                storms.largest_storms(summary)[["cluster", "lat", "lon", "n_flashes", "flash_rate", "extent_km",
                                                "duration_min", "n_jumps"]].to_markdown(index=False)
            ),
            "summary": MetadataValue.md(summary.to_markdown(index=False)),
        }
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=CLUSTERING,
    deps=[kmeans_cluster],
    kinds={"matplotlib"},
    description="Lightning Events Map: flashes coloured by cluster with centroids, over coastlines (PNG).",
)
def cluster_map(context: AssetExecutionContext, data: LightningDataResource) -> MaterializeResult:
    with data.get_connection() as con:
        points, summary, window = database.read_clustered_flashes(con)
    box = _box(window)
    png = draw_cluster_map(
        points["lat"].to_numpy(),
        points["lon"].to_numpy(),
        points["cluster"].to_numpy(),
        summary[["lat", "lon"]].to_numpy(),
        energy=points["energy"].to_numpy(),
        title=_window_title(window),
        extent=box.extent if box else None,
    )
    plot_metadata = saved_plot(data, png, "cluster_map.png", "Lightning Events Map", key="map")
    context.log.info(f"map saved at {plot_metadata['map_path'].value}")
    return MaterializeResult(metadata={**plot_metadata, "clusters": len(summary), "flashes": len(points)})


class DensityConfig(Config):
    cell_km: float = Field(
        default=DEFAULT_CELL_KM, description="Side of the equal-area grid's square cells, in km (10 km: 100 km² cells)."
    )


@asset(
    pool=ANALYSIS_POOL,
    group_name=DENSITY,
    deps=[preprocessor],
    kinds={"parquet", "matplotlib"},
    description="Flash extent density over the preprocessor's window: flashes touching each equal-area cell "
    "(table flash_extent_density, fed_map.png).",
)
def flash_extent_density(
    context: AssetExecutionContext, config: DensityConfig, archive: GlmArchiveResource, data: LightningDataResource
) -> MaterializeResult:
    with data.get_connection() as con:
        _, _, window = _features(con)
    if config.cell_km <= 0:
        raise Failure(description=f"cell_km={config.cell_km} must be > 0")
    fed = FlashExtentDensity(FeatureTransform.from_dict(json.loads(window["transform"])), config.cell_km)
    box = _box(window)
    start, end = pd.Timestamp(window["window_start"]).to_pydatetime(), pd.Timestamp(window["window_end"]).to_pydatetime()
    # an hour at a time: a flash never spans two granules, so the counts simply add
    for hour in database.loaded_granule_rows(data.store, bucket=window["bucket"], product=archive.product, start=start,
                                             end=end, tables=("glm_event", "glm_group")):
        events = hour["glm_event"]
        if box:
            events = events[box.contains(events["lat"].to_numpy(), events["lon"].to_numpy())]
        fed.add(events, hour["glm_group"])
    table = fed.table()
    data.store.write_analysis("flash_extent_density", table)
    png = fed_map(
        table["lat"].to_numpy(), table["lon"].to_numpy(), table["flash_count"].to_numpy(), cell_km=config.cell_km,
        title=_window_title(window), extent=box.extent if box else None,
    )
    plot_metadata = saved_plot(data, png, "fed_map.png", "Flash extent density", key="map")
    context.log.info(f"{len(table)} cells touched; map saved at {plot_metadata['map_path'].value}")
    return MaterializeResult(
        metadata={
            **plot_metadata,
            "cells": len(table),
            "max_flashes_per_cell": int(table["flash_count"].max()) if len(table) else 0,
            "cell_km": config.cell_km,
            "densest": MetadataValue.md(table.head(10).to_markdown(index=False)),
        }
    )


def _window_title(window: dict) -> str:
    return f"{_window_text(window['window_start'], window['window_end'])} · {window['bucket']}"


def _box(window: dict) -> Optional[LatLonBox]:
    """The region the preprocessor kept, from ``feature_window``."""
    text = window.get("box")
    return LatLonBox(**json.loads(text)) if isinstance(text, str) and text else None



@asset(
    pool=ANALYSIS_POOL,
    group_name=CLUSTERING,
    deps=[kmeans_cluster],
    kinds={"matplotlib"},
    description="Flash rate per minute of the largest clusters, with their lightning jumps (storm_flash_rate.png).",
)
def storm_flash_rate(context: AssetExecutionContext, data: LightningDataResource) -> MaterializeResult:
    with data.get_connection() as con:
        summary, per_minute, jumps, window = database.read_storm_rates(con)
    largest = storms.largest_storms(summary)
    png = draw_storm_flash_rate(per_minute, jumps, largest, title=_window_title(window))
    plot_metadata = saved_plot(data, png, "storm_flash_rate.png", "Flash rate of the largest storms")
    context.log.info(f"rates of {len(largest)} storms plotted at {plot_metadata['plot_path'].value}")
    return MaterializeResult(metadata={**plot_metadata, "storms": len(largest), "jumps": len(jumps)})
