"""Silhouette coefficients (Rousseeuw 1987) in plain NumPy, exact and memory-bounded.

Everything rests on one quantity: for each point ``i`` and cluster ``c``, the sum of the Euclidean distances from
``i`` to the points of ``c`` (``S[i, c]``, a per-cluster ``np.bincount`` of row ``i`` of the distance matrix). The
distance matrix is never held whole: it is produced in square blocks and each block is reduced at once. Two
reductions are used:

* one-hot products (the default): with ``M`` the (n, K) one-hot matrix of the labels, ``S = D @ M``, done block by
  block by BLAS. Several clusterings of the same points put their one-hot columns side by side, so each distance block
  is computed once for all of them (:func:`silhouette_sweep`). ``D`` is symmetric, so only blocks on or above the
  diagonal are computed; block (I, J) adds ``D_IJ @ M_J`` to the rows of I and ``D_IJ.T @ M_I`` to the rows of J.
  The points are sorted by label first, so a block meets only one or two clusters of each labelling; the products
  then involve only those columns, and a labelling's largest cluster in the block comes from the block's row sums
  (shared by all labellings) minus its other clusters (:func:`_block_plan`).
* sums over runs of equal labels (``np.add.reduceat``) per row block, for labellings with so many clusters that an
  (n, K) array would not fit the memory budget; memory O(rows * K) instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from lightning_eda.ml._parallel import ChunkRunner, chunk_bounds, rows_per_chunk
from lightning_eda.ml._validation import check_int, check_points, encode_labels

__all__ = ["silhouette_score", "silhouette_sweep"]

#: Bytes of one distance block (float64). 384 x 384 blocks (1.1 MiB) stay in cache between the passes made over them
#: and meet few clusters each; measured fastest of 256..1024 on 2-D data, with powers of two (512, 1024) the slowest.
_BLOCK_BYTES = 8 * 384 * 384

#: Budget in bytes for the arrays that grow with n times the number of clusters (one-hot matrix, per-thread sums).
_SUMS_BYTES = 256 * 2**20

#: At most this many one-hot columns in one pass (the per-block plans cost Python work per column); labellings with
#: more clusters are reduced by runs of labels instead (:func:`_silhouette_by_runs`).
_MAX_ONEHOT_COLUMNS = 2048


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
    for codes, n_labels in zip(codes_list, n_labels_list, strict=True):
        M[rows, offset + codes] = 1.0
        offset += n_labels
    return M


def _block_plan(M_block: np.ndarray, n_labels_list: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How to reduce distances to one block of points (rows of ``M_block``) into per-cluster sums, cheaply.

    Only the clusters present in the block ("active" columns) receive anything. For each labelling, the sums over its
    clusters add up to the plain row sum of the distance block, which one cheap reduction gives for all labellings at
    once; so a labelling met by a single cluster in this block needs no product at all, and for the others the
    cluster with the most points is obtained as the row sum minus the rest.

    Returns
    -------
    active : ndarray of shape (a,)
        Columns of ``M`` present in the block.
    onehot : ndarray of shape (rows, g)
        The one-hot columns that do go through the product ``D @ onehot``.
    expand : ndarray of shape (g + 1, a)
        Maps ``[D @ onehot, D.sum(axis=1)]`` to the sums for the ``active`` columns.
    """
    counts = M_block.sum(axis=0)
    active = np.flatnonzero(counts)
    product_cols: list[int] = []
    derived: list[tuple[int, list[int]]] = []  # (column, product columns of the same labelling)
    offset = 0
    for n_labels in n_labels_list:
        present = [c for c in range(offset, offset + n_labels) if counts[c]]
        largest = max(present, key=lambda c: counts[c])
        others = [c for c in present if c != largest]
        product_cols.extend(others)
        derived.append((largest, others))
        offset += n_labels
    position = {c: p for p, c in enumerate(active)}
    g = len(product_cols)
    expand = np.zeros((g + 1, active.size))
    for q, c in enumerate(product_cols):
        expand[q, position[c]] = 1.0
    product_position = {c: q for q, c in enumerate(product_cols)}
    for c, others in derived:
        expand[g, position[c]] = 1.0
        for other in others:
            expand[product_position[other], position[c]] = -1.0
    return active, np.ascontiguousarray(M_block[:, product_cols]), expand


def _cluster_sums_onehot(
    ops: _Operands, codes_list: list[np.ndarray], n_labels_list: list[int], runner: ChunkRunner
) -> np.ndarray:
    """Per-point, per-cluster sums of distances ``S = D @ M`` (M: side-by-side one-hot matrices of the labellings).

    Only the upper-triangle blocks of the distance matrix ``D`` are computed. Each block is reduced with the plan of
    :func:`_block_plan`: with the points sorted by label (see :func:`_silhouette_means`) a block meets one or two
    clusters of each labelling, so the products involve a few columns instead of the total number of clusters.

    Each worker thread takes a fixed share of the block pairs and accumulates into its own S; the shares are added in
    worker order, so the result does not depend on thread timing.
    """
    M = _one_hot(codes_list, n_labels_list)
    K = M.shape[1]
    bounds = chunk_bounds(ops.n, _block_size())
    plans = [_block_plan(M[j0:j1], n_labels_list) for j0, j1 in bounds]
    del M
    pairs = [(bi, bj) for bi in range(len(bounds)) for bj in range(bi, len(bounds))]
    n_workers = min(runner.n_threads, len(pairs))

    def accumulate(S: np.ndarray, rows: tuple[int, int], plan, products: np.ndarray, row_sums: np.ndarray) -> None:
        active, _, expand = plan
        values = products @ expand[:-1]
        values += np.multiply.outer(row_sums, expand[-1])
        if active.size == K:
            S[rows[0] : rows[1]] += values
        else:
            S[rows[0] : rows[1], active] += values

    def work(t: int) -> np.ndarray:
        S = np.zeros((ops.n, K))
        for bi, bj in pairs[t::n_workers]:
            D = ops.distances(bounds[bi], bounds[bj])
            accumulate(S, bounds[bi], plans[bj], D @ plans[bj][1], D.sum(axis=1))
            if bi != bj:
                accumulate(S, bounds[bj], plans[bi], D.T @ plans[bi][1], D.sum(axis=0))
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


def _silhouette_by_runs(X: np.ndarray, codes: np.ndarray, n_labels: int, runner: ChunkRunner) -> np.ndarray:
    """Silhouette values of one labelling with many clusters, in O(rows * n_labels) memory (order of the points lost).

    The points are sorted by label, so within any block of columns the labels form runs; ``np.add.reduceat`` sums
    each run of a distance block and the run sums go to their clusters' columns. Each row block streams the distances
    to all points in column blocks, so no (n, n_labels) array is ever formed.
    """
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    ops = _Operands(X[order])
    n = ops.n
    counts = np.bincount(codes, minlength=n_labels)
    # per row and thread: the sums, the run sums and the finishing step's temporary, n_labels floats each at most
    row_bounds = chunk_bounds(n, rows_per_chunk(3 * 8 * n_labels, _SUMS_BYTES // runner.n_threads, n))
    values = np.empty(n)

    def work(r: int) -> None:
        i0, i1 = row_bounds[r]
        S = np.zeros((i1 - i0, n_labels))
        for j0, j1 in chunk_bounds(n, rows_per_chunk(8 * (i1 - i0), _BLOCK_BYTES, n)):
            block_codes = codes[j0:j1]
            starts = np.flatnonzero(np.r_[True, block_codes[1:] != block_codes[:-1]])
            S[:, block_codes[starts]] += np.add.reduceat(ops.distances((i0, i1), (j0, j1)), starts, axis=1)
        values[i0:i1] = _silhouette_values(S, codes[i0:i1], counts)

    runner.map(work, len(row_bounds))
    return values


def _silhouette_means(X: np.ndarray, codes_list: list[np.ndarray], n_labels_list: list[int]) -> list[float]:
    """Mean silhouette of each labelling of the validated points ``X`` (codes ``0..n_labels-1``)."""
    n = X.shape[0]
    # Sort the points by label, finest labelling first, so that each block of points meets few clusters (the score
    # does not depend on the order of the points).
    order = np.lexsort([codes_list[i] for i in np.argsort(n_labels_list, kind="stable")])
    X = X[order]
    codes_list = [codes[order] for codes in codes_list]
    ops = _Operands(X)
    scores: list[float | None] = [None] * len(codes_list)
    with ChunkRunner() as runner:
        # Group labellings whose one-hot columns fit the budget: one pass over the distances per group.
        # per one-hot column: the one-hot matrix, its per-block compact copies, one sum array per thread, and the
        # finishing step's temporary
        per_column = 8 * n * (runner.n_threads + 3)
        max_columns = min(_MAX_ONEHOT_COLUMNS, _SUMS_BYTES // per_column)
        groups: list[list[int]] = []
        columns = 0
        for index, n_labels in enumerate(n_labels_list):
            if n_labels > max_columns:
                scores[index] = float(np.mean(_silhouette_by_runs(X, codes_list[index], n_labels, runner)))
                continue
            if not groups or columns + n_labels > max_columns:
                groups.append([])
                columns = 0
            groups[-1].append(index)
            columns += n_labels
        for group in groups:
            S = _cluster_sums_onehot(ops, [codes_list[i] for i in group], [n_labels_list[i] for i in group], runner)
            offset = 0
            for index in group:
                codes, n_labels = codes_list[index], n_labels_list[index]
                counts = np.bincount(codes, minlength=n_labels)
                scores[index] = float(np.mean(_silhouette_values(S[:, offset : offset + n_labels], codes, counts)))
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
    O(n K) within a fixed budget (clusterings are split into several passes when K is large). The worker threads
    (``LIGHTNING_EDA_THREADS``, default the available cores) share the blocks.

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
    return dict(zip(keys, scores, strict=True))
