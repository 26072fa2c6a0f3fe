"""Groups ``preprocessor``, ``evaluators`` and ``kmeans_cluster``: flashes → features → k → clusters → map.

These assets are not partitioned: each works on the window the preprocessor selected (an hour by default, a day or
any range of hours when configured), recorded in ``feature_window`` so every downstream asset reads the same one.
"""

import json
from datetime import datetime, timedelta
from typing import Optional

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lightning_eda import plots

from lightning_eda.analysis import clustering

from lightning_eda.store import database
from lightning_eda.orchestration.assets.ingestor import load
from lightning_eda.orchestration.constants import CLUSTERING, DUCKDB_POOL, EVALUATORS, PREPROCESSOR
from lightning_eda.analysis.features import FeatureTransform, build_features, clean_flashes
from lightning_eda.ml import kmeans
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.settings import ConfigError, parse_hour


class PreprocessorConfig(Config):
    window_start: str = Field(
        default="",
        description="UTC start of the window, e.g. '2018-07-02 04:00' or a partition key; empty: the latest loaded hour.",
    )
    window_hours: int = Field(default=1, description="Length of the window in hours (24 for a day).")
    quality_flags: Optional[list[int]] = Field(
        default=None, description="Keep only flashes with these quality flags, e.g. [0]; null keeps all."
    )


class ElbowConfig(Config):
    ks: list[int] = Field(default=list(range(1, 12)), description="Cluster counts to try.")
    n_init: int = Field(default=10, description="k-means restarts per k (best kept).")
    seed: int = Field(default=0, description="Random seed (results are reproducible).")


class SilhouetteConfig(Config):
    ks: list[int] = Field(default=list(range(2, 12)), description="Cluster counts to score.")
    n_init: int = Field(default=10, description="k-means restarts per k (best kept).")
    seed: int = Field(default=0, description="Random seed for k-means and for the sample.")
    sample_size: int = Field(
        default=20_000, description="Above this many flashes, silhouettes are computed on a seeded random sample."
    )


class KMeansConfig(Config):
    k: str = Field(default="auto", description="Number of clusters, or 'auto': best silhouette, knee as tie-break.")
    n_init: int = Field(default=10, description="k-means restarts (best kept).")
    seed: int = Field(default=0, description="Random seed.")


def _window(con, config: PreprocessorConfig, bucket: str) -> tuple[datetime, datetime]:
    if config.window_hours < 1:
        raise ConfigError(f"window_hours={config.window_hours} must be at least 1")
    if config.window_start.strip():
        start = parse_hour(config.window_start)
    else:
        start = database.latest_loaded_hour(con, bucket)
        if start is None:
            raise ConfigError(f"no hour of {bucket} is loaded yet: materialize the ingestor assets first")
    return start, start + timedelta(hours=config.window_hours)


def _window_text(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"


def _features(con) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """The preprocessed flashes, their feature matrix and the window they came from."""
    try:
        frame = con.execute("SELECT * FROM flash_features ORDER BY row_id").df()
        window = con.execute("SELECT * FROM feature_window").df().iloc[0].to_dict()
    except Exception as exc:  # noqa: BLE001 - a missing table means the preprocessor has not run
        raise Failure(description=f"no preprocessed flashes ({exc}): materialize `preprocessor` first") from None
    return frame, frame[["f_x", "f_y"]].to_numpy(dtype=np.float64), window


def _store_scores(con, column: str, scores: dict, n_points: int, window: dict, sample_size=None) -> None:
    database.upsert_evaluation(
        con,
        column,
        scores,
        n_points=n_points,
        window_start=window["window_start"],
        window_end=window["window_end"],
        sample_size=sample_size,
    )


def _save_plot(data: LightningDataResource, png: bytes, file_name: str, alt: str, key: str = "plot") -> dict:
    """Save a plot under the data folder; the metadata shows it inline in the UI and names the file."""
    path = plots.save_png(png, data.root / "plots" / file_name)
    return {key: MetadataValue.md(plots.png_markdown(png, alt)), f"{key}_path": MetadataValue.path(str(path))}


@asset(
    pool=DUCKDB_POOL,
    group_name=PREPROCESSOR,
    deps=[load],
    kinds={"duckdb", "numpy"},
    description="Clean the window's flashes and project them to z-scored equal-area features (table flash_features).",
)
def preprocessor(
    context: AssetExecutionContext,
    config: PreprocessorConfig,
    archive: GlmArchiveResource,
    duckdb: DuckDBResource,
) -> MaterializeResult:
    with duckdb.get_connection() as con:
        try:
            start, end = _window(con, config, archive.bucket)
        except ConfigError as exc:
            raise Failure(description=str(exc)) from None
        flashes = database.window_flashes(con, bucket=archive.bucket, start=start, end=end)
        clean, dropped = clean_flashes(flashes, quality_flags=config.quality_flags)
        if clean.empty:
            raise Failure(description=f"no usable flashes in {_window_text(start, end)} ({len(flashes)} loaded)")
        X, transform = build_features(clean)
        x_km, y_km = transform.to_xy(clean["lat"].to_numpy(), clean["lon"].to_numpy())
        features = clean[["source_file", "flash_id", "time_start", "time_end", "lat", "lon", "energy", "quality_flag"]]
        features = features.assign(row_id=np.arange(len(clean)), x_km=x_km, y_km=y_km, f_x=X[:, 0], f_y=X[:, 1])
        window = pd.DataFrame(
            [
                {
                    "bucket": archive.bucket,
                    "window_start": start,
                    "window_end": end,
                    "n_input": len(flashes),
                    "n_features": len(features),
                    "dropped": json.dumps(dropped),
                    "transform": json.dumps(transform.to_dict()),
                }
            ]
        )
        database.replace_table(con, "flash_features", features)
        database.replace_table(con, "feature_window", window)
    context.log.info(f"{len(features)} of {len(flashes)} flashes kept for {_window_text(start, end)}; dropped {dropped}")
    return MaterializeResult(
        metadata={
            "window": _window_text(start, end),
            "flashes_in": len(flashes),
            "flashes_kept": len(features),
            **{f"dropped_{reason}": int(count) for reason, count in dropped.items()},
            "projection": MetadataValue.json(transform.to_dict()),
            "preview": MetadataValue.md(features.head(10).to_markdown(index=False)),
        }
    )


@asset(
    pool=DUCKDB_POOL,
    group_name=EVALUATORS,
    deps=[preprocessor],
    kinds={"numpy", "duckdb"},
    description="Elbow method: k-means inertia for each k, with the knee marked (cluster_evaluation.inertia).",
)
def elbow_evaluator(
    context: AssetExecutionContext, config: ElbowConfig, data: LightningDataResource, duckdb: DuckDBResource
) -> MaterializeResult:
    with duckdb.get_connection() as con:
        _, X, window = _features(con)
        inertias, knee = clustering.evaluate_elbow(X, config.ks, n_init=config.n_init, seed=config.seed)
        _store_scores(con, "inertia", inertias, len(X), window)
    title = f"Elbow method — {len(X):,} flashes, {_window_text(window['window_start'], window['window_end'])}"
    png = plots.elbow_plot(list(inertias), list(inertias.values()), knee=knee, title=title)
    plot_metadata = _save_plot(data, png, "elbow.png", "elbow curve")
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
    pool=DUCKDB_POOL,
    group_name=EVALUATORS,
    deps=[preprocessor],
    kinds={"numpy", "duckdb"},
    description="Silhouette coefficient for each k, best k marked (cluster_evaluation.silhouette).",
)
def silhouette_evaluator(
    context: AssetExecutionContext, config: SilhouetteConfig, data: LightningDataResource, duckdb: DuckDBResource
) -> MaterializeResult:
    with duckdb.get_connection() as con:
        _, X, window = _features(con)
        sweep = clustering.evaluate_silhouette(
            X, config.ks, n_init=config.n_init, seed=config.seed, sample_size=config.sample_size
        )
        _store_scores(con, "silhouette", sweep.scores, len(X), window, sample_size=sweep.sample_size)
    best_k = max(sweep.scores, key=sweep.scores.get) if sweep.scores else None
    basis = f"sample of {sweep.sample_size:,}" if sweep.sampled else "all"
    title = f"Silhouette — {basis} of {len(X):,} flashes, {_window_text(window['window_start'], window['window_end'])}"
    png = plots.silhouette_plot(list(sweep.scores), list(sweep.scores.values()), best_k=best_k, title=title)
    plot_metadata = _save_plot(data, png, "silhouette.png", "silhouette by k")
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
    pool=DUCKDB_POOL,
    group_name=CLUSTERING,
    deps=[preprocessor, elbow_evaluator, silhouette_evaluator],
    kinds={"numpy", "duckdb"},
    description="Fit the final k-means (k from config or auto) → flash_cluster and cluster_summary.",
)
def kmeans_cluster(context: AssetExecutionContext, config: KMeansConfig, duckdb: DuckDBResource) -> MaterializeResult:
    with duckdb.get_connection() as con:
        flashes, X, window = _features(con)
        evaluation = database.read_evaluation(con)
        k, reason = _chosen_k(config.k, evaluation, len(X))
        result = kmeans(X, k, n_init=config.n_init, seed=config.seed)
        transform = FeatureTransform.from_dict(json.loads(window["transform"]))
        lat, lon = transform.to_latlon(result.centroids)
        summary = clustering.summarize_clusters(flashes, result.labels, np.column_stack([lat, lon]))
        assignments = flashes[["source_file", "flash_id"]].assign(cluster=result.labels.astype(np.int32))
        database.replace_table(con, "flash_cluster", assignments)
        database.replace_table(con, "cluster_summary", summary)
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
            "summary": MetadataValue.md(summary.to_markdown(index=False)),
        }
    )


def _chosen_k(setting: str, evaluation: pd.DataFrame, n_points: int) -> tuple[int, str]:
    if setting.strip().lower() != "auto":
        if not setting.strip().isdigit() or int(setting) < 1:
            raise Failure(description=f"k={setting!r} must be 'auto' or a whole number ≥ 1")
        return int(setting), "set in config"
    silhouettes = evaluation.dropna(subset=["silhouette"]).set_index("k")["silhouette"].to_dict()
    inertias = evaluation.dropna(subset=["inertia"]).set_index("k")["inertia"]
    knee = clustering.find_knee(list(inertias.index), list(inertias.values)) if len(inertias) >= 3 else None
    try:
        return clustering.choose_k({int(k): float(v) for k, v in silhouettes.items()}, knee)
    except ValueError as exc:
        raise Failure(description=f"{exc}; {n_points} flashes") from None


@asset(
    pool=DUCKDB_POOL,
    group_name=CLUSTERING,
    deps=[kmeans_cluster],
    kinds={"matplotlib"},
    description="Lightning Events Map: flashes coloured by cluster with centroids, over coastlines (PNG).",
)
def cluster_map(context: AssetExecutionContext, data: LightningDataResource, duckdb: DuckDBResource) -> MaterializeResult:
    with duckdb.get_connection() as con:
        points = con.execute(
            "SELECT f.lat, f.lon, f.energy, c.cluster FROM flash_features f "
            "JOIN flash_cluster c USING (source_file, flash_id) ORDER BY f.row_id"
        ).df()
        summary = con.execute("SELECT * FROM cluster_summary ORDER BY cluster").df()
        window = con.execute("SELECT * FROM feature_window").df().iloc[0].to_dict()
    title = f"{_window_text(window['window_start'], window['window_end'])} · {window['bucket']}"
    png = plots.cluster_map(
        points["lat"].to_numpy(),
        points["lon"].to_numpy(),
        points["cluster"].to_numpy(),
        summary[["lat", "lon"]].to_numpy(),
        energy=points["energy"].to_numpy(),
        title=title,
    )
    plot_metadata = _save_plot(data, png, "cluster_map.png", "Lightning Events Map", key="map")
    context.log.info(f"map saved at {plot_metadata['map_path'].value}")
    return MaterializeResult(
        metadata={
            **plot_metadata,
            "clusters": len(summary),
            "flashes": len(points),
        }
    )
