"""Tests of lightning_eda.ml silhouette scores (against scikit-learn, invariants, chunking) and find_knee."""

import doctest
import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import silhouette_score as sk_silhouette

import lightning_eda.ml._silhouette as sil_module
from lightning_eda.ml import find_knee, silhouette_score, silhouette_sweep
from lightning_eda.testing.storm_points import flash_like

pytestmark = pytest.mark.usefixtures("sklearn_single_threaded")


def nearest_labels(X, k, seed):
    """Labels from k random centres (a cheap clustering that is neither perfect nor random)."""
    rng = np.random.default_rng(seed)
    centres = X[rng.choice(len(X), k, replace=False)]
    return ((X[:, None] - centres[None]) ** 2).sum(-1).argmin(1)


def datasets():
    rng = np.random.default_rng(0)
    flash = flash_like(1500, seed=1)
    uniform = rng.uniform(0, 1, (800, 3))
    dup = np.repeat(rng.normal(size=(30, 2)), 10, axis=0)  # every point ten times
    return {
        "flash k=2": (flash, nearest_labels(flash, 2, 0)),
        "flash k=7": (flash, nearest_labels(flash, 7, 1)),
        "uniform 3-D random labels": (uniform, rng.integers(0, 4, len(uniform))),  # negative silhouettes
        "duplicates": (dup, nearest_labels(dup, 5, 2)),
        "singletons": (uniform[:200], np.r_[np.arange(5), np.zeros(195, int) + 7 + rng.integers(0, 3, 195)]),
        "odd label values": (flash[:600], np.array([-1, 7, 42])[nearest_labels(flash[:600], 3, 3)]),
        "string labels": (flash[:400], np.array(["a", "b", "zz", "c"])[nearest_labels(flash[:400], 4, 4)]),
        "two points per cluster": (uniform[:10], np.repeat(np.arange(5), 2)),
    }


@pytest.mark.parametrize("name", list(datasets()))
def test_silhouette_matches_sklearn(name):
    X, labels = datasets()[name]
    expected = sk_silhouette(X, labels)
    assert silhouette_score(X, labels) == pytest.approx(expected, abs=1e-6)
    assert silhouette_sweep(X, {"only": labels})["only"] == pytest.approx(expected, abs=1e-6)


def test_singletons_score_zero_not_nan():
    # Two singletons and one pair far away: the singletons contribute 0, the pair ~1 each, so the mean is ~0.5.
    X = np.array([[0.0, 0.0], [10.0, 0.0], [100.0, 0.0], [100.0, 0.001]])
    score = silhouette_score(X, [0, 1, 2, 2])
    assert np.isfinite(score)
    assert score == pytest.approx(sk_silhouette(X, [0, 1, 2, 2]), abs=1e-12)
    assert 0.49 < score < 0.5


def test_sweep_matches_sklearn_for_each_k():
    X = flash_like(1200, k=8, seed=2)
    labels_by_k = {k: nearest_labels(X, k, k) for k in range(2, 9)}
    scores = silhouette_sweep(X, labels_by_k)
    assert list(scores) == list(labels_by_k)
    for k, labels in labels_by_k.items():
        assert scores[k] == pytest.approx(sk_silhouette(X, labels), abs=1e-6)


def test_relabelling_does_not_change_the_score():
    X = flash_like(1000, seed=3)
    labels = nearest_labels(X, 5, 0)
    permuted = np.array([3, 0, 4, 1, 2])[labels] * 10 - 7
    assert silhouette_score(X, permuted) == pytest.approx(silhouette_score(X, labels), abs=1e-12)
    order = np.random.default_rng(0).permutation(len(X))
    assert silhouette_score(X[order], labels[order]) == pytest.approx(silhouette_score(X, labels), abs=1e-12)


def test_translation_far_from_origin_keeps_precision():
    X = flash_like(800, seed=4)
    labels = nearest_labels(X, 4, 1)
    shifted = X + np.array([1e6, -2e6])
    assert silhouette_score(shifted, labels) == pytest.approx(silhouette_score(X, labels), abs=1e-6)


def test_sampled_score_is_the_exact_score_of_the_documented_sample():
    X = flash_like(3000, seed=5)
    labels = nearest_labels(X, 6, 2)
    sample = np.random.default_rng(123).permutation(len(X))[:700]
    expected = sk_silhouette(X[sample], labels[sample])
    assert silhouette_score(X, labels, sample_size=700, seed=123) == pytest.approx(expected, abs=1e-6)
    assert silhouette_score(X, labels, sample_size=700, seed=123) == silhouette_score(
        X, labels, sample_size=700, seed=123
    )
    assert silhouette_score(X, labels, sample_size=5000, seed=1) == pytest.approx(
        silhouette_score(X, labels), abs=1e-12
    )


@pytest.mark.parametrize(
    "block_bytes, max_columns, sums_bytes",
    [
        (8 * 7 * 7, 512, 256 * 2**20),  # 7 x 7 distance blocks, one-hot products
        (8 * 50 * 50, 1, 256 * 2**20),  # runs path for every labelling
        (8 * 13 * 13, 1, 8 * 40 * 6),  # runs path with a handful of rows per block
        (8 * 64 * 64, 4, 256 * 2**20),  # labellings split into several one-hot passes
    ],
)
def test_chunking_does_not_change_the_scores(monkeypatch, block_bytes, max_columns, sums_bytes):
    X = flash_like(700, seed=6)
    labels_by_k = {k: nearest_labels(X, k, k) for k in (2, 3, 5)}
    default = silhouette_sweep(X, labels_by_k)
    monkeypatch.setattr(sil_module, "_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(sil_module, "_MAX_ONEHOT_COLUMNS", max_columns)
    monkeypatch.setattr(sil_module, "_SUMS_BYTES", sums_bytes)
    chunked = silhouette_sweep(X, labels_by_k)
    for k in labels_by_k:
        assert chunked[k] == pytest.approx(default[k], abs=1e-12)


def test_threads_do_not_change_the_scores(monkeypatch):
    # Each thread sums its share of the distance blocks, so the scores agree to rounding, not bit for bit.
    X = flash_like(3000, seed=7)
    labels_by_k = {k: nearest_labels(X, k, k) for k in (2, 4)}
    scores = []
    for threads in ("1", "2", "5"):
        monkeypatch.setenv("LIGHTNING_EDA_THREADS", threads)
        scores.append(silhouette_sweep(X, labels_by_k))
    for other in scores[1:]:
        for k in labels_by_k:
            assert other[k] == pytest.approx(scores[0][k], abs=1e-12)


def test_many_clusters_use_bounded_memory(monkeypatch):
    # n_labels close to n: a one-hot (n, n_labels) matrix would take 3000 * 1500 * 8 bytes = 36 MB, and the
    # per-point sums as much again; the runs path keeps to the budgets.
    monkeypatch.setattr(sil_module, "_SUMS_BYTES", 8 * 2**20)
    monkeypatch.setattr(sil_module, "_BLOCK_BYTES", 2 * 2**20)
    X = np.random.default_rng(8).normal(size=(3000, 2))
    labels = np.arange(3000) // 2  # 1500 clusters of two points
    tracemalloc.start()
    try:
        score = silhouette_score(X, labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert score == pytest.approx(sk_silhouette(X, labels), abs=1e-6)
    assert peak < 16 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"


def test_distance_matrix_is_never_formed():
    X = flash_like(5000, seed=9)  # the full distance matrix would take 200 MB
    labels_by_k = {k: nearest_labels(X, k, k) for k in (2, 3, 4)}
    tracemalloc.start()
    try:
        silhouette_sweep(X, labels_by_k)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.zeros(10, int), "Number of labels is 1"),
        (np.arange(10), "Number of labels is 10"),
        (np.zeros(9, int), "labels must be 1-D with n_samples=10"),
        (np.zeros((10, 1), int), "labels must be 1-D"),
    ],
)
def test_invalid_labels_raise(labels, message):
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=message):
        silhouette_score(X, labels)


def test_invalid_inputs_raise():
    X = np.random.default_rng(0).normal(size=(10, 2))
    labels = np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match="non-finite"):
        silhouette_score(np.where(X > 1, np.nan, X), labels)
    with pytest.raises(ValueError, match="ndim=1"):
        silhouette_score(X[:, 0], labels)
    with pytest.raises(ValueError, match="sample_size=1 must be >= 2"):
        silhouette_score(X, labels, sample_size=1)
    with pytest.raises(ValueError, match="Number of labels is 1"):
        silhouette_score(X, np.r_[0, np.ones(9, int)], sample_size=2, seed=0)  # a sample can hold one label only
    with pytest.raises(TypeError, match="mapping"):
        silhouette_sweep(X, [labels])
    with pytest.raises(ValueError, match="empty"):
        silhouette_sweep(X, {})
    with pytest.raises(ValueError, match=r"labels_by_k\[5\]"):
        silhouette_sweep(X, {2: labels, 5: np.zeros(10, int)})


# --- find_knee --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ks, values, expected",
    [
        (range(1, 11), [1 / k for k in range(1, 11)], 3),  # 1/k: the depth below the chord peaks at k = sqrt(10)
        ([1, 2, 3, 4, 5, 6, 7, 8], [100, 70, 40, 10, 9, 8, 7, 6], 4),  # a sharp corner
        ([2, 4, 8, 16], [50.0, 20.0, 10.0, 8.0], 4),  # uneven spacing
        ([5, 1, 3, 2, 4], [1.0, 10.0, 2.0, 4.0, 1.5], 2),  # unsorted input
        ([1, 2, 3, 4], [10.0, 5.0, 5.0, 5.0], 2),  # flat after the drop
    ],
)
def test_find_knee_on_known_curves(ks, values, expected):
    assert find_knee(ks, values) == expected


@pytest.mark.parametrize(
    "ks, values",
    [
        ([1, 2], [10.0, 1.0]),  # fewer than three points
        ([1, 2, 3, 4, 5], [5.0, 4.0, 3.0, 2.0, 1.0]),  # straight line
        ([1, 2, 3, 4, 5], [1.0, 2.0, 4.0, 8.0, 16.0]),  # increasing
        ([1, 2, 3, 4, 5], [10.0, 9.8, 9.4, 8.0, 1.0]),  # concave: above the chord everywhere
        ([1, 2, 3], [4.0, 4.0, 4.0]),  # flat
    ],
)
def test_find_knee_none_without_a_knee(ks, values):
    assert find_knee(ks, values) is None


def test_find_knee_validates():
    with pytest.raises(ValueError, match="same length"):
        find_knee([1, 2, 3], [1.0, 2.0])
    with pytest.raises(ValueError, match="repeated"):
        find_knee([1, 2, 2], [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        find_knee([1, 2, 3], [3.0, np.nan, 1.0])


@pytest.mark.parametrize("module", ["lightning_eda.ml._kmeans", "lightning_eda.ml._knee"])
def test_docstring_examples(module):
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(module))
    assert attempted > 0 and failed == 0
