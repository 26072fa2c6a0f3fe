"""Clustering steps behind the evaluator and clustering assets: sweeps, choosing k, summaries (no Dagster)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from lightning_eda.analysis import storms
from lightning_eda.analysis.features import FeatureTransform
from lightning_eda.analysis.storm_scale import k_range_around
from lightning_eda.files import atomic_write
from lightning_eda.ml import KMeansResult, find_knee, kmeans_sweep, silhouette_sweep

# Silhouette scores closer than this are a tie; the knee then decides.
SILHOUETTE_TIE = 0.01


@dataclass(frozen=True)
class SilhouetteSweep:
    scores: dict[int, float]
    n_points: int
    sample_size: int | None  # None when every point was used

    @property
    def sampled(self) -> bool:
        return self.sample_size is not None

    @property
    def best_k(self) -> int | None:
        """The k of the highest score (None when no k could be scored)."""
        return max(self.scores, key=self.scores.get) if self.scores else None


AUTO_K = "auto"


def parse_k(value: int | str) -> int | Literal["auto"]:
    """The ``k`` setting: a whole number of clusters (``3`` or ``"3"``), or ``"auto"``."""
    if isinstance(value, str) and value.strip().lower() == AUTO_K:
        return AUTO_K
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
        raise ValueError(f"k={value!r} must be 'auto' or a whole number >= 1")
    k = int(value)
    if k < 1:
        raise ValueError(f"k={value!r} must be 'auto' or a whole number >= 1")
    return k


def elbow_knee(inertias: dict[int, float]) -> int | None:
    """The knee of the inertia curve (None when it has none or fewer than three points)."""
    return find_knee(list(inertias), list(inertias.values())) if len(inertias) >= 3 else None


DEFAULT_ELBOW_KS = tuple(range(1, 41))
DEFAULT_SILHOUETTE_KS = tuple(range(2, 41))
"""The evaluators' ks when the window has no storm to range around (and the planted scenes' fixed range)."""

#: k-means restarts of the evaluators' fits and of the final fit, one value so that each k is fitted once per window.
#: At storm scale an hour's evaluators fit about ten ks near 200: on the realistic hour the elbow took 31.5 s at 10
#: restarts, 9.5 s at 3 and 3.3 s at 1 (README, "How k is chosen"). One k-means++ start is scikit-learn's default too.
DEFAULT_N_INIT = 1
#: Above this many flashes the silhouettes are scored on a seeded sample: their cost grows with the square of the
#: sample (15 s at 20,000 for the ten ks near 200 of the realistic hour, 1.6 s at 5,000).
DEFAULT_SILHOUETTE_SAMPLE = 5_000

#: ``k=auto``'s criteria: the number of storms (:func:`~lightning_eda.analysis.storm_scale.segment_storms`), k-means
#: started from them; or the best silhouette over the evaluators' ks, the elbow's knee breaking ties.
STORMS = "storms"
SILHOUETTE = "silhouette"
CRITERIA = (STORMS, SILHOUETTE)
#: ``k_criterion`` of a k set in config.
CONFIG = "config"


def parse_criterion(value: str) -> str:
    """The ``criterion`` setting: one of :data:`CRITERIA` (case and surrounding spaces ignored)."""
    criterion = value.strip().lower() if isinstance(value, str) else value
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={value!r} must be one of {', '.join(CRITERIA)}")
    return criterion


def evaluation_ks(configured: Sequence[int], storm_count: int, without_storms: Sequence[int]) -> list[int]:
    """The ks an evaluator tries: those configured, or (none) about ten around the window's storm count.

    Around the storm count the curves describe the neighbourhood of the storm-scale k, whatever its size; a window
    with no storm has no such k, and its silhouette criterion needs the fixed range ``without_storms``.
    """
    if configured:
        return sorted(set(configured))
    return k_range_around(storm_count) if storm_count >= 1 else list(without_storms)


@dataclass(frozen=True)
class KChoice:
    """The final k, why, and by which criterion (:data:`STORMS`, :data:`SILHOUETTE` or :data:`CONFIG`)."""

    k: int
    reason: str
    criterion: str


def choose_window_k(
    setting: int | str, criterion: str, *, storm_count: int, storm_reason: str, evaluation: pd.DataFrame
) -> KChoice:
    """The final k of a window: the configured number, or for ``"auto"`` the criterion's k.

    ``"storms"`` takes the window's storm count; a window with no storm (only isolated flashes) has none, and falls
    back to the silhouette criterion over ``evaluation`` (see :func:`choose_k_from_evaluation`), saying so.
    """
    k = parse_k(setting)
    if k != AUTO_K:
        return KChoice(k, "set in config", CONFIG)
    if parse_criterion(criterion) == STORMS:
        if storm_count >= 1:
            return KChoice(storm_count, storm_reason, STORMS)
        k, reason = choose_k_from_evaluation(AUTO_K, evaluation)
        return KChoice(k, f"no storm in the window ({storm_reason}), so by silhouette: {reason}", SILHOUETTE)
    k, reason = choose_k_from_evaluation(AUTO_K, evaluation)
    return KChoice(k, reason, SILHOUETTE)


@dataclass
class KMeansFits:
    """The k-means fit of each k for one set of features and one (n_init, seed).

    The elbow, the silhouette and the final clustering all use these, so each k is fitted once per window:
    ``kmeans(X, k, n_init=n_init, seed=seed)`` is deterministic, and its ``inertia`` is what
    :func:`lightning_eda.ml.elbow_sweep` returns for k. The features are hashed once, when the fits are made or
    loaded for them, and their distinct rows counted once and saved with the fits.
    """

    features: str  # fingerprint of the features fitted (see :func:`fingerprint`)
    n_init: int
    seed: int
    results: dict[int, KMeansResult] = field(default_factory=dict)
    distinct_rows: int | None = None
    _fitted: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, X: np.ndarray, *, n_init: int, seed: int) -> KMeansFits:
        fits = cls(fingerprint(X), n_init, seed)
        fits._fitted = X
        return fits

    def count_distinct(self, X: np.ndarray) -> int:
        """The number of distinct rows of ``X`` (the features of these fits): the largest k worth fitting."""
        self._check(X)
        if self.distinct_rows is None:
            self.distinct_rows = len(np.unique(X, axis=0)) if len(X) else 0
        return self.distinct_rows

    def fit(self, X: np.ndarray, ks: Sequence[int]) -> dict[int, KMeansResult]:
        """The fits for ``ks``, computing only those not held yet."""
        self._check(X)
        missing = [k for k in ks if k not in self.results]
        if missing:
            self.results.update(kmeans_sweep(X, missing, n_init=self.n_init, seed=self.seed))
        return {k: self.results[k] for k in ks}

    def _check(self, X: np.ndarray) -> None:
        """Refuse other features (the array these fits were made or loaded for is not hashed again)."""
        if X is not self._fitted and fingerprint(X) != self.features:
            raise ValueError("these fits are for other features")

    def save(self, path: Path) -> None:
        arrays = {"meta": np.array([self.n_init, self.seed]), "features": np.array(self.features)}
        if self.distinct_rows is not None:
            arrays["distinct_rows"] = np.array(self.distinct_rows)
        for k, result in self.results.items():
            arrays[f"labels_{k}"] = result.labels.astype(np.int16 if k < 2**15 else np.int64)
            arrays[f"centroids_{k}"] = result.centroids
            arrays[f"scores_{k}"] = np.array([result.inertia, result.n_iter])
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(path, lambda handle: handle.write(buffer.getvalue()))

    @classmethod
    def load(cls, path: Path, X: np.ndarray, *, n_init: int, seed: int) -> KMeansFits:
        """The fits saved at ``path`` when they are for these features and settings; else none."""
        fits = cls.of(X, n_init=n_init, seed=seed)
        try:
            saved = np.load(path)
        except (FileNotFoundError, ValueError, OSError):
            return fits
        with saved:
            if [int(v) for v in saved["meta"]] != [n_init, seed] or str(saved["features"]) != fits.features:
                return fits
            if "distinct_rows" in saved.files:
                fits.distinct_rows = int(saved["distinct_rows"])
            for name in saved.files:
                if name.startswith("labels_"):
                    k = int(name[len("labels_") :])
                    inertia, n_iter = saved[f"scores_{k}"]
                    fits.results[k] = KMeansResult(
                        centroids=saved[f"centroids_{k}"],
                        labels=saved[name].astype(np.intp),
                        inertia=float(inertia),
                        n_iter=int(n_iter),
                    )
        return fits


def fingerprint(X: np.ndarray) -> str:
    """Identifies a feature matrix (its shape and bytes), so fits are never reused for other features."""
    X = np.ascontiguousarray(X)
    return f"{X.shape}:" + hashlib.sha256(X.tobytes()).hexdigest()


def evaluate_elbow(
    X: np.ndarray, ks: Sequence[int], *, n_init: int, seed: int, fits: KMeansFits | None = None
) -> tuple[dict[int, float], int | None]:
    """Inertia for each feasible k, and the knee of the curve (None when it has none)."""
    fits = fits or KMeansFits.of(X, n_init=n_init, seed=seed)
    feasible = [k for k in sorted(set(ks)) if 1 <= k <= fits.count_distinct(X)]
    inertias = {k: float(result.inertia) for k, result in fits.fit(X, feasible).items()}
    return inertias, elbow_knee(inertias)


def evaluate_silhouette(
    X: np.ndarray, ks: Sequence[int], *, n_init: int, seed: int, sample_size: int, fits: KMeansFits | None = None
) -> SilhouetteSweep:
    """Fit k-means on every point for each k, then score all clusterings on one shared (seeded) sample.

    Sharing the sample lets :func:`silhouette_sweep` compute each block of distances once for every k.
    """
    n = len(X)
    fits = fits or KMeansFits.of(X, n_init=n_init, seed=seed)
    feasible = [k for k in sorted(set(ks)) if 2 <= k <= min(fits.count_distinct(X), n - 1)]
    if not feasible:
        return SilhouetteSweep({}, n, None)
    labels_by_k = {k: result.labels for k, result in fits.fit(X, feasible).items()}
    if n > sample_size:
        index = silhouette_sample(n, sample_size, seed)
        sample_labels = {k: labels[index] for k, labels in labels_by_k.items()}
        usable = {k: lab for k, lab in sample_labels.items() if 2 <= len(np.unique(lab)) <= sample_size - 1}
        return SilhouetteSweep(silhouette_sweep(X[index], usable), n, sample_size)
    return SilhouetteSweep(silhouette_sweep(X, labels_by_k), n, None)


def silhouette_sample(n: int, sample_size: int, seed: int) -> np.ndarray:
    """The sorted indices of the seeded sample the silhouettes of ``n`` flashes are scored on (``n > sample_size``)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=sample_size, replace=False))


def sampled_silhouette(X: np.ndarray, labels: np.ndarray, *, sample_size: int, seed: int) -> float | None:
    """The silhouette of one clustering, on the evaluator's sample for the same ``sample_size`` and ``seed``.

    None when it has no score: fewer than two clusters (or as many as points) among the points scored.
    """
    labels = np.asarray(labels)
    if len(X) > sample_size:
        index = silhouette_sample(len(X), sample_size, seed)
        X, labels = X[index], labels[index]
    if not 2 <= len(np.unique(labels)) <= len(X) - 1:
        return None
    return float(silhouette_sweep(X, {0: labels})[0])


def choose_k(silhouettes: dict[int, float], knee: int | None) -> tuple[int, str]:
    """The k with the best silhouette; among ks within SILHOUETTE_TIE of it, the knee if present, else the smallest."""
    if not silhouettes:
        if knee is not None:
            return knee, f"knee of the elbow curve (k={knee}); no silhouette scores"
        raise ValueError("cannot choose k: no silhouette scores and no knee (too few distinct flashes?)")
    best = max(silhouettes.values())
    tied = sorted(k for k, s in silhouettes.items() if best - s <= SILHOUETTE_TIE)
    if len(tied) == 1:
        return tied[0], f"best silhouette {silhouettes[tied[0]]:.4f} at k={tied[0]}"
    if knee in tied:
        return knee, f"silhouettes of k={tied} within {SILHOUETTE_TIE}; knee at k={knee} breaks the tie"
    return tied[0], f"silhouettes of k={tied} within {SILHOUETTE_TIE}; smallest k taken (knee: {knee})"


def choose_k_from_evaluation(setting: int | str, evaluation: pd.DataFrame) -> tuple[int, str]:
    """The final k: the configured number, or for ``"auto"`` :func:`choose_k` over the stored evaluation.

    ``evaluation`` has the columns of ``cluster_evaluation`` (``k``, ``inertia``, ``silhouette``); missing scores
    are NaN. Raises ``ValueError`` when auto has nothing to choose from.
    """
    k = parse_k(setting)
    if k != AUTO_K:
        return k, "set in config"
    scored = evaluation.dropna(subset=["silhouette"])
    silhouettes = {int(k): float(v) for k, v in zip(scored["k"], scored["silhouette"], strict=True)}
    with_inertia = evaluation.dropna(subset=["inertia"]).sort_values("k")
    inertias = {int(k): float(v) for k, v in zip(with_inertia["k"], with_inertia["inertia"], strict=True)}
    return choose_k(silhouettes, elbow_knee(inertias))


def silhouette_of(evaluation: pd.DataFrame, k: int) -> float | None:
    """The stored silhouette of ``k`` in ``cluster_evaluation``'s rows, or None when it was not scored."""
    scored = evaluation.dropna(subset=["silhouette"])
    values = scored.loc[scored["k"] == k, "silhouette"]
    return float(values.iloc[0]) if len(values) else None


@dataclass(frozen=True)
class ClusterTables:
    """What a clustering of the window writes: tables ``flash_cluster``, ``cluster_summary``, ``storm_rate`` and
    ``lightning_jump``."""

    assignments: pd.DataFrame
    summary: pd.DataFrame
    per_minute: pd.DataFrame
    jumps: pd.DataFrame

    def by_table(self) -> dict[str, pd.DataFrame]:
        return {
            "flash_cluster": self.assignments,
            "cluster_summary": self.summary,
            "storm_rate": self.per_minute,
            "lightning_jump": self.jumps,
        }


def cluster_tables(flashes: pd.DataFrame, result: KMeansResult, transform: FeatureTransform) -> ClusterTables:
    """Each flash's cluster, and each cluster as a storm: centroid back in lat/lon, counts, rates and jumps.

    ``flashes`` are the preprocessed flashes (``flash_features``) in feature order; the centroids' first two
    coordinates are the z-scored equal-area position (a third, time, is left out).
    """
    lat, lon = transform.to_latlon(result.centroids[:, :2])
    summary = summarize_clusters(flashes, result.labels, np.column_stack([lat, lon]))
    per_minute = storms.flash_rate_per_minute(flashes, result.labels)
    jumps = storms.storm_jumps(per_minute)
    summary = summary.merge(storms.storm_statistics(flashes, result.labels, jumps), on="cluster", how="left")
    summary["n_jumps"] = summary["n_jumps"].fillna(0).astype("int64")  # a cluster with no flash has no statistics
    assignments = flashes[["source_file", "flash_id"]].assign(cluster=result.labels.astype(np.int32))
    return ClusterTables(assignments, summary, per_minute, jumps)


def summarize_clusters(flashes: pd.DataFrame, labels: np.ndarray, centroids_latlon: np.ndarray) -> pd.DataFrame:
    """One row per cluster: centroid lat/lon, flash count, total energy (J) and time span."""
    frame = flashes.assign(cluster=np.asarray(labels, dtype=np.int64))
    grouped = frame.groupby("cluster").agg(
        n_flashes=("flash_id", "size"),
        total_energy=("energy", "sum"),
        time_start=("time_start", "min"),
        time_end=("time_end", "max"),
    )
    k = len(centroids_latlon)
    grouped = grouped.reindex(range(k))
    grouped["n_flashes"] = grouped["n_flashes"].fillna(0).astype("int64")
    grouped.insert(0, "lat", np.asarray(centroids_latlon)[:, 0])
    grouped.insert(1, "lon", np.asarray(centroids_latlon)[:, 1])
    return grouped.reset_index()[["cluster", "lat", "lon", "n_flashes", "total_energy", "time_start", "time_end"]]
