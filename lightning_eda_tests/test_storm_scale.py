"""k at storm scale: on scenes of planted storm cells, k=auto finds the cells, fitting each k once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from lightning_eda.analysis import clustering
from lightning_eda.analysis.features import build_features, laea_inverse


def storm_scene(n_cells: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``n_cells`` storm cells about 30 km across (σ 8 km), at least 250 km apart, 100–400 flashes each."""
    rng = np.random.default_rng(seed)
    centres: list[np.ndarray] = []
    while len(centres) < n_cells:
        candidate = rng.uniform(-1500, 1500, 2)
        if all(np.hypot(*(candidate - c)) > 250 for c in centres):
            centres.append(candidate)
    points, truth = [], []
    for cell, centre in enumerate(centres):
        n = int(rng.integers(100, 400))
        points.append(centre + rng.normal(0, 8, (n, 2)))
        truth += [cell] * n
    xy = np.vstack(points)
    lat, lon = laea_inverse(xy[:, 0], xy[:, 1], 30.0, -95.0)
    return pd.DataFrame({"lat": lat, "lon": lon}), np.array(truth)


@pytest.mark.parametrize("n_cells, seed", [(10, 1), (20, 2), (30, 3)])
def test_k_auto_over_the_default_range_finds_the_planted_storms(n_cells, seed):
    flashes, truth = storm_scene(n_cells, seed)
    X, _ = build_features(flashes)
    fits = clustering.KMeansFits.of(X, n_init=10, seed=0)
    inertias, knee = clustering.evaluate_elbow(X, clustering.DEFAULT_ELBOW_KS, n_init=10, seed=0, fits=fits)
    fitted = len(fits.results)
    sweep = clustering.evaluate_silhouette(
        X, clustering.DEFAULT_SILHOUETTE_KS, n_init=10, seed=0, sample_size=20_000, fits=fits
    )
    assert len(fits.results) == fitted == 40, "the silhouette reused the elbow's fits: one fit per k"
    evaluation = pd.DataFrame({"k": list(inertias), "inertia": list(inertias.values())}).merge(
        pd.DataFrame({"k": list(sweep.scores), "silhouette": list(sweep.scores.values())}), on="k", how="left"
    )
    k, reason = clustering.choose_k_from_evaluation("auto", evaluation)
    assert k == n_cells, reason
    labels = fits.fit(X, [k])[k].labels  # the final clustering is the evaluators' fit of k
    assert adjusted_rand_score(truth, labels) >= 0.9
    assert "silhouette" in reason


def test_saved_fits_are_reused_only_for_the_same_features_and_settings(tmp_path):
    flashes, _ = storm_scene(5, 7)
    X, _ = build_features(flashes)
    fits = clustering.KMeansFits.of(X, n_init=3, seed=1)
    fits.fit(X, [2, 5])
    fits.save(tmp_path / "fits.npz")
    again = clustering.KMeansFits.load(tmp_path / "fits.npz", X, n_init=3, seed=1)
    assert sorted(again.results) == [2, 5]
    np.testing.assert_array_equal(again.results[5].labels, fits.results[5].labels)
    assert again.results[5].inertia == fits.results[5].inertia
    assert not clustering.KMeansFits.load(tmp_path / "fits.npz", X, n_init=3, seed=2).results
    assert not clustering.KMeansFits.load(tmp_path / "fits.npz", X[::-1], n_init=3, seed=1).results
    with pytest.raises(ValueError, match="other features"):
        again.fit(X[:-1], [2])


def as_flashes(scene: pd.DataFrame) -> pd.DataFrame:
    """The planted positions with the other columns the preprocessor keeps, one flash a second."""
    n = len(scene)
    start = pd.Timestamp("2024-07-01 18:00")
    return scene.assign(
        source_file="planted.nc",
        flash_id=np.arange(n, dtype=np.int32),
        time_start=start + pd.to_timedelta(np.arange(n), unit="s"),
        time_end=start + pd.to_timedelta(np.arange(n) + 0.5, unit="s"),
        energy=1e-15,
        quality_flag=np.int16(0),
        area=1e8,
    )


@pytest.mark.parametrize("n_cells, seed", [(10, 1), (20, 2), (30, 3)])
def test_k_auto_by_the_storms_finds_exactly_the_planted_cells(n_cells, seed):
    """The new default: the preprocessor's storm count is k, and k-means from the storms recovers each cell."""
    from lightning_eda.analysis.features import feature_matrix, preprocess
    from lightning_eda.analysis.storm_scale import segmentation_from_labels, storm_kmeans

    scene, truth = storm_scene(n_cells, seed)
    result = preprocess(as_flashes(scene))
    features = result.features
    choice = clustering.choose_window_k(
        "auto",
        clustering.STORMS,
        storm_count=result.storms.k,
        storm_reason=result.storms.reason,
        evaluation=pd.DataFrame(columns=["k", "inertia", "silhouette"]),
    )
    assert (choice.k, choice.criterion) == (n_cells, "storms"), choice.reason
    assert choice.reason.startswith(f"{n_cells} storms")
    stored = segmentation_from_labels(features["storm"], features["x_km"], features["y_km"], result.storms.reason)
    np.testing.assert_array_equal(stored.centres_km, result.storms.centres_km)
    labels = storm_kmeans(feature_matrix(features, 0.0), stored).labels
    assert len(np.unique(labels)) == n_cells
    assert adjusted_rand_score(truth, labels) >= 0.99
