"""Clustering steps behind the evaluator and clustering assets: sweeps, choosing k, summaries (no Dagster)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence, Union

import numpy as np
import pandas as pd

from lightning_eda.ml import elbow_sweep, find_knee, kmeans, silhouette_sweep

# Silhouette scores closer than this are a tie; the knee then decides.
SILHOUETTE_TIE = 0.01


@dataclass(frozen=True)
class SilhouetteSweep:
    scores: dict[int, float]
    n_points: int
    sample_size: Optional[int]  # None when every point was used

    @property
    def sampled(self) -> bool:
        return self.sample_size is not None


AUTO_K = "auto"


def parse_k(value: Union[int, str]) -> Union[int, Literal["auto"]]:
    """The ``k`` setting: a whole number of clusters (``3`` or ``"3"``), or ``"auto"``."""
    if isinstance(value, str) and value.strip().lower() == AUTO_K:
        return AUTO_K
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
        raise ValueError(f"k={value!r} must be 'auto' or a whole number >= 1")
    k = int(value)
    if k < 1:
        raise ValueError(f"k={value!r} must be 'auto' or a whole number >= 1")
    return k


def elbow_knee(inertias: dict[int, float]) -> Optional[int]:
    """The knee of the inertia curve (None when it has none or fewer than three points)."""
    return find_knee(list(inertias), list(inertias.values())) if len(inertias) >= 3 else None


def evaluate_elbow(X: np.ndarray, ks: Sequence[int], *, n_init: int, seed: int) -> tuple[dict[int, float], Optional[int]]:
    """Inertia for each feasible k, and the knee of the curve (None when it has none)."""
    feasible = [k for k in sorted(set(ks)) if 1 <= k <= _distinct_rows(X)]
    inertias = elbow_sweep(X, feasible, n_init=n_init, seed=seed) if feasible else {}
    return inertias, elbow_knee(inertias)


def evaluate_silhouette(
    X: np.ndarray, ks: Sequence[int], *, n_init: int, seed: int, sample_size: int
) -> SilhouetteSweep:
    """Fit k-means on every point for each k, then score all clusterings on one shared (seeded) sample.

    Sharing the sample lets :func:`silhouette_sweep` compute each block of distances once for every k.
    """
    n = len(X)
    distinct = _distinct_rows(X)
    feasible = [k for k in sorted(set(ks)) if 2 <= k <= min(distinct, n - 1)]
    if not feasible:
        return SilhouetteSweep({}, n, None)
    labels_by_k = {k: kmeans(X, k, n_init=n_init, seed=seed).labels for k in feasible}
    if n > sample_size:
        index = np.sort(np.random.default_rng(seed).choice(n, size=sample_size, replace=False))
        sample_labels = {k: labels[index] for k, labels in labels_by_k.items()}
        usable = {k: lab for k, lab in sample_labels.items() if 2 <= len(np.unique(lab)) <= sample_size - 1}
        return SilhouetteSweep(silhouette_sweep(X[index], usable), n, sample_size)
    return SilhouetteSweep(silhouette_sweep(X, labels_by_k), n, None)


def choose_k(silhouettes: dict[int, float], knee: Optional[int]) -> tuple[int, str]:
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


def choose_k_from_evaluation(setting: Union[int, str], evaluation: pd.DataFrame) -> tuple[int, str]:
    """The final k: the configured number, or for ``"auto"`` :func:`choose_k` over the stored evaluation.

    ``evaluation`` has the columns of ``cluster_evaluation`` (``k``, ``inertia``, ``silhouette``); missing scores
    are NaN. Raises ``ValueError`` when auto has nothing to choose from.
    """
    k = parse_k(setting)
    if k != AUTO_K:
        return k, "set in config"
    scored = evaluation.dropna(subset=["silhouette"])
    silhouettes = {int(k): float(v) for k, v in zip(scored["k"], scored["silhouette"])}
    with_inertia = evaluation.dropna(subset=["inertia"]).sort_values("k")
    inertias = {int(k): float(v) for k, v in zip(with_inertia["k"], with_inertia["inertia"])}
    return choose_k(silhouettes, elbow_knee(inertias))


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


def _distinct_rows(X: np.ndarray) -> int:
    return len(np.unique(X, axis=0)) if len(X) else 0
