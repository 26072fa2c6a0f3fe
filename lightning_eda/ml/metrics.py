"""Silhouette coefficients (Rousseeuw 1987) in plain NumPy, exact and memory-bounded.

Everything rests on one quantity: for each point ``i`` and cluster ``c``, the sum of the Euclidean distances from
``i`` to the points of ``c`` (``S[i, c]``, a per-cluster ``np.bincount`` of row ``i`` of the distance matrix). The
distance matrix is never held whole: it is produced in square blocks and each block is reduced at once. Two
reductions are used:

* one-hot products (the default): with ``M`` the (n, K) one-hot matrix of the labels, ``S = D @ M``, done block by block
  by BLAS. Several clusterings of the same points simply put their one-hot columns side by side, so each distance
  block is computed once for all of them (:func:`silhouette_sweep`). ``D`` is symmetric, so only blocks on or above
  the diagonal are computed; block (I, J) adds ``D_IJ @ M_J`` to the rows of I and ``D_IJ.T @ M_I`` to the rows of J.
* flattened ``np.bincount`` per row block, for labellings with so many clusters that an (n, K) array would not fit
  the memory budget (or one-hot products would cost more than counting); memory O(rows * K) instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from lightning_eda.ml._parallel import ChunkRunner, chunk_bounds, rows_per_chunk
from lightning_eda.ml._validation import check_int, check_points, encode_labels

__all__ = ["silhouette_score", "silhouette_sweep"]

#: Bytes of one distance block (float64). 8 MB gives 1024 x 1024 blocks, large enough for efficient BLAS calls.
_BLOCK_BYTES = 8 * 2**20

#: Budget in bytes for the arrays that grow with n times the number of clusters (one-hot matrix, per-thread sums).
_SUMS_BYTES = 256 * 2**20

#: Above this many one-hot columns in one pass, counting with np.bincount is cheaper than the one-hot products.
_MAX_ONEHOT_COLUMNS = 512


class _Operands:
    """Centred points arranged so that one product gives squared distances.

    With ``A = [-2 x, |x|^2, 1]`` and ``B = [x, 1, |x|^2]`` (rows, centred coordinates), ``A_I @ B_J.T`` is the block
    of squared distances ``|x_i|^2 - 2 x_i.x_j + |x_j|^2`` between row sets I and J. Centring keeps the expansion
    accurate when the points are far from the origin.
    """

    def __init__(self, X: np.ndarray):
        Xc = X - X.mean(axis=0)
        sq = np.einsum("ij,ij->i", Xc, Xc)[:, None]
        ones = np.ones_like(sq)
        self.A = np.hstack([-2.0 * Xc, sq, ones])
        self.B = np.hstack([Xc, ones, sq])
        self.n = X.shape[0]

    def distances(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Euclidean distances between the points ``range(*rows)`` and ``range(*cols)`` (zero on the diagonal)."""
        (i0, i1), (j0, j1) = rows, cols
        D = self.A[i0:i1] @ self.B[j0:j1].T
        np.maximum(D, 0.0, out=D)  # rounding can make tiny squared distances negative
        np.sqrt(D, out=D)
        lo, hi = max(i0, j0), min(i1, j1)
        if lo < hi:
            same = np.arange(lo, hi)
            D[same - i0, same - j0] = 0.0
        return D


def _block_size() -> int:
    return max(1, math.isqrt(_BLOCK_BYTES // 8))


def _one_hot(codes_list: list[np.ndarray], n_labels_list: list[int]) -> np.ndarray:
    """(n, sum of n_labels) float64 matrix with a one in each labelling's column of each point's cluster."""
    n = codes_list[0].size
    M = np.zeros((n, sum(n_labels_list)))
    rows = np.arange(n)
    offset = 0
    for codes, n_labels in zip(codes_list, n_labels_list):
        M[rows, offset + codes] = 1.0
        offset += n_labels
    return M


def _cluster_sums_onehot(ops: _Operands, M: np.ndarray, runner: ChunkRunner) -> np.ndarray:
    """``S = D @ M`` over the upper-triangle blocks of the distance matrix ``D``; returns S of shape (n, K).

    Each worker thread takes a fixed share of the block pairs and accumulates into its own S; the shares are added in
    worker order, so the result does not depend on thread timing.
    """
    bounds = chunk_bounds(ops.n, _block_size())
    pairs = [(I, J) for I in range(len(bounds)) for J in range(I, len(bounds))]
    n_workers = min(runner.n_threads, len(pairs))

    def work(t: int) -> np.ndarray:
        S = np.zeros_like(M)
        for I, J in pairs[t::n_workers]:
            (i0, i1), (j0, j1) = bounds[I], bounds[J]
            D = ops.distances(bounds[I], bounds[J])
            S[i0:i1] += D @ M[j0:j1]
            if I != J:
                S[j0:j1] += D.T @ M[i0:i1]
        return S

    partial = runner.map(work, n_workers)
    total = partial[0]
    for S in partial[1:]:
        total += S
    return total


def _silhouette_values(S: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Silhouette of each point from its per-cluster distance sums ``S`` (rows: points, columns: clusters).

    ``a`` is the mean distance to the other points of the point's own cluster and ``b`` the smallest mean distance to
    the points of another cluster; ``s = (b - a) / max(a, b)``. A point alone in its cluster gets ``s = 0``: ``a`` is
    undefined there (no other point to average over), and Rousseeuw sets such silhouettes to zero, the neutral value,
    so singletons neither reward nor penalise a clustering. ``max(a, b) = 0`` (duplicates of one point split across
    clusters) also gives 0; both match scikit-learn.
    """
    rows = np.arange(codes.size)
    own_count = counts[codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = S[rows, codes] / (own_count - 1)
        mean_other = S / counts
        mean_other[rows, codes] = np.inf
        b = mean_other.min(axis=1)
        s = (b - a) / np.maximum(a, b)
    s[(own_count <= 1) | ~np.isfinite(s)] = 0.0
    return s


def _silhouette_counting(ops: _Operands, codes: np.ndarray, n_labels: int, runner: ChunkRunner) -> np.ndarray:
    """Silhouette values of one labelling with per-row-block ``np.bincount`` sums: memory O(rows * n_labels).

    For each row block the distances to all points are streamed in column blocks and reduced with one flattened
    ``bincount`` (index ``row * n_labels + label``), so no (n, n_labels) array is ever formed.
    """
    n = ops.n
    counts = np.bincount(codes, minlength=n_labels)
    row_bounds = chunk_bounds(n, rows_per_chunk(8 * n_labels, _SUMS_BYTES // (2 * runner.n_threads), n))
    values = np.empty(n)

    def work(r: int) -> None:
        i0, i1 = row_bounds[r]
        rows = i1 - i0
        col_bounds = chunk_bounds(n, rows_per_chunk(8 * rows, _BLOCK_BYTES, n))
        S = np.zeros(rows * n_labels)
        base = (np.arange(rows) * n_labels)[:, None]
        for cols in col_bounds:
            D = ops.distances(row_bounds[r], cols)
            index = base + codes[cols[0]:cols[1]][None, :]
            S += np.bincount(index.ravel(), weights=D.ravel(), minlength=rows * n_labels)
        values[i0:i1] = _silhouette_values(S.reshape(rows, n_labels), codes[i0:i1], counts)

    runner.map(work, len(row_bounds))
    return values


def _silhouette_means(X: np.ndarray, codes_list: list[np.ndarray], n_labels_list: list[int]) -> list[float]:
    """Mean silhouette of each labelling of the validated points ``X`` (codes ``0..n_labels-1``)."""
    n = X.shape[0]
    ops = _Operands(X)
    scores: list[float | None] = [None] * len(codes_list)
    with ChunkRunner() as runner:
        # Group labellings whose one-hot columns fit the budget: one pass over the distances per group.
        per_column = 8 * n * (runner.n_threads + 2)  # one-hot, per-thread sums, the finishing step's temporary
        max_columns = min(_MAX_ONEHOT_COLUMNS, _SUMS_BYTES // per_column)
        groups: list[list[int]] = []
        columns = 0
        for index, n_labels in enumerate(n_labels_list):
            if n_labels > max_columns:
                scores[index] = float(np.mean(_silhouette_counting(ops, codes_list[index], n_labels, runner)))
                continue
            if not groups or columns + n_labels > max_columns:
                groups.append([])
                columns = 0
            groups[-1].append(index)
            columns += n_labels
        for group in groups:
            S = _cluster_sums_onehot(ops, _one_hot([codes_list[i] for i in group], [n_labels_list[i] for i in group]),
                                     runner)
            offset = 0
            for index in group:
                codes, n_labels = codes_list[index], n_labels_list[index]
                counts = np.bincount(codes, minlength=n_labels)
                scores[index] = float(np.mean(_silhouette_values(S[:, offset:offset + n_labels], codes, counts)))
                offset += n_labels
    return scores


def silhouette_score(X, labels, *, sample_size: int | None = None, seed=None) -> float:
    """Mean silhouette coefficient of a clustering, with Euclidean distances.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points; 2-D, non-empty, finite (1-D is rejected: use ``X.reshape(-1, 1)``).
    labels : array-like of shape (n_samples,)
        Cluster of each point; any values (they are only compared), e.g. k-means labels or ``-1``/``7``/``"a"``.
    sample_size : int or None, default=None
        ``None`` computes the exact score on all points. An int computes it on ``sample_size`` points drawn without
        replacement: the first ``sample_size`` entries of ``np.random.default_rng(seed).permutation(n_samples)`` (as
        scikit-learn does with its random state), so the sample is reproducible. Values ``>= n_samples`` use all
        points.
    seed : None, int, numpy.random.Generator or SeedSequence, default=None
        Seeds the sample; ignored when ``sample_size`` is ``None``.

    Returns
    -------
    float
        Mean over the (sampled) points of ``s = (b - a) / max(a, b)``, in [-1, 1]; ``a`` is the mean distance to the
        other points of the same cluster, ``b`` the smallest mean distance to the points of another cluster.
        Points alone in their cluster count as 0.

    Raises
    ------
    ValueError
        For a malformed ``X``, ``labels`` of the wrong shape, ``sample_size < 2``, or a number of distinct labels (in
        the sample, if any) outside ``2 .. n - 1``.

    Notes
    -----
    Exact: O(n^2 d) time for the distances plus O(n^2 k) for the per-cluster sums (fast BLAS products), O(n k) memory
    plus fixed-size blocks; the distance matrix is never stored. For a few clusterings of the same points use
    :func:`silhouette_sweep`, which shares the distances. With ``sample_size=m`` the cost is that of m points.

    References
    ----------
    .. [1] Rousseeuw, P. J. (1987). "Silhouettes: a graphical aid to the interpretation and validation of cluster
       analysis". Journal of Computational and Applied Mathematics, 20, 53-65.
    """
    X = check_points(X)
    n = X.shape[0]
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must be 1-D with n_samples={n} entries, got shape {labels.shape}")
    if sample_size is not None:
        sample_size = check_int(sample_size, "sample_size", minimum=2)
        sample = np.random.default_rng(seed).permutation(n)[:sample_size]
        X, labels = X[sample], labels[sample]
    codes, n_labels = encode_labels(labels, X.shape[0])
    return _silhouette_means(X, [codes], [n_labels])[0]


def silhouette_sweep(X, labels_by_k: Mapping) -> dict:
    """Exact mean silhouette of several clusterings of the same points, sharing the pairwise distances.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points; 2-D, non-empty, finite.
    labels_by_k : mapping
        ``{key: labels}``, usually ``{k: kmeans(X, k).labels}``; each ``labels`` is as in :func:`silhouette_score`.

    Returns
    -------
    dict
        ``{key: score}`` in the order of ``labels_by_k``; each score equals ``silhouette_score(X, labels)``.

    Raises
    ------
    TypeError
        If ``labels_by_k`` is not a mapping.
    ValueError
        If it is empty, or for any input :func:`silhouette_score` would reject (the message names the key).

    Notes
    -----
    Each block of pairwise distances is computed once (upper triangle only, by symmetry) and reduced for all the
    clusterings in the same pass, with one BLAS product against their side-by-side one-hot label matrices. Time:
    O(n^2 d) for the distances, once, plus O(n^2 K) for the reductions, K the total number of clusters; memory
    O(n K) within a fixed budget (clusterings are split into several passes when K is large). Two threads share the
    blocks.

    References
    ----------
    .. [1] Rousseeuw, P. J. (1987). "Silhouettes: a graphical aid to the interpretation and validation of cluster
       analysis". Journal of Computational and Applied Mathematics, 20, 53-65.
    """
    if not isinstance(labels_by_k, Mapping):
        raise TypeError(f"labels_by_k must be a mapping {{k: labels}}, got {type(labels_by_k).__name__}")
    if not labels_by_k:
        raise ValueError("labels_by_k is empty; give at least one clustering")
    X = check_points(X)
    keys = list(labels_by_k)
    encoded = [encode_labels(labels_by_k[key], X.shape[0], name=f"labels_by_k[{key!r}]") for key in keys]
    scores = _silhouette_means(X, [codes for codes, _ in encoded], [n_labels for _, n_labels in encoded])
    return dict(zip(keys, scores))
