"""K-means clustering in plain NumPy.

``kmeans`` validates its input and normalises the seed once, then calls private routines that trust their arguments:
``_prepare`` (centre the data, squared norms, a locality order of the points), ``_kmeans_plusplus`` (greedy seeding,
skipping the cells of points a candidate cannot reach, all candidates of a step evaluated together) and
``_lloyd_hamerly`` (Lloyd's iterations with Hamerly's bounds, starting from the seeding's assignment; from
``_PRUNE_K`` clusters on, the nearest-centre search of a block of points skips the centres that cannot be nearest to
any of them). Below ``_PRUNE_K`` clusters on many points per cluster, ``_kmeans_subsampled`` seeds and converges each
attempt on a random subsample and runs Lloyd on all points only from the best. Every pass over the points works on
row chunks of a few megabytes, run on a small thread pool (:mod:`lightning_eda.ml._parallel`) from
``_PARALLEL_MIN_ROWS`` points on, so memory stays O(n * d) whatever the number of points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from lightning_eda.ml._parallel import ChunkRunner, chunk_bounds, rows_per_chunk
from lightning_eda.ml._validation import check_int, check_points, check_tol, count_distinct_rows_at_least

__all__ = ["KMeansResult", "kmeans", "kmeans_sweep", "elbow_sweep"]

logger = logging.getLogger(__name__)

#: Target size in bytes of the temporaries of one chunk of points (or of one block of centre-to-point distances):
#: small enough to stay in the CPU caches between the NumPy calls made on it, large enough that the calls' fixed
#: overhead (a few microseconds each) is small against their work.
_CHUNK_BYTES = 4 * 2**20

#: Passes over the points use at least this many chunks when there are enough points (``_MIN_CHUNK_ROWS`` each), so
#: that the threads have work to share; fixed, so that sums never depend on the number of threads.
_MIN_CHUNKS = 8
_MIN_CHUNK_ROWS = 4096

#: Up to this many clusters the nearest/second-nearest search loops over the centres with whole-chunk operations;
#: above it, one ``argmin`` over the centre axis costs less than ``k`` Python-level calls.
_SMALL_K = 32

#: Below this many points every pass runs in the calling thread. The passes' NumPy calls on chunks of a few megabytes
#: last tens of microseconds, and two threads then mostly wait on each other for the GIL (``np.bincount`` does not
#: release it at all). Measured on a quiet 2-core machine, two threads took longer than one at every size tried:
#: 10-15 % at n = 44,000 (k = 150 and 1000), 5 % at n = 400,000 (k = 8, n_init=3), 16-20 % at n = 1,000,000 (k = 150
#: and 1000), 8-16 % at n = 4,000,000 (k = 8 and 150). Larger sizes were not measured.
_PARALLEL_MIN_ROWS = 2**23

#: Points per cell of the k-means++ seeding (:func:`_seed_cells`).
_SEED_CELL_ROWS = 128

#: A seeding step evaluates its candidates on the cells they reach while those (candidate, cell) pairs hold at most
#: this share of ``n_candidates * n`` points; above it, on all points, one product of all candidates with each chunk
#: (:class:`_SeedState`). 0.5 was faster than 0.25 and 1.0 at k = 8 (n = 400,000), the same at storm scale.
_SPARSE_MAX_SHARE = 0.5

#: A seeding step whose candidates reach at least ``_RUN_MIN_PAIRS`` cells in all, in runs of at least
#: ``_RUN_MIN_CELLS`` consecutive cells on average, reads each run in place (:meth:`_SeedState.run_step`) instead of
#: copying the cells out. (Finding the runs costs more than it saves in the small steps of a large k.)
_RUN_MIN_CELLS = 8
_RUN_MIN_PAIRS = 256

#: From this many clusters on, the nearest-centre search takes points in blocks of at most ``_PRUNE_ROWS`` (near one
#: another, the points being in locality order) and searches only the centres that can be nearest to some point of
#: the block's bounding box (:func:`_centres_near_box`): at storm scale, k in the hundreds, a few percent of them.
_PRUNE_K = 24
_PRUNE_ROWS = 256

#: Seeding on a subsample (:func:`_kmeans_subsampled`): below ``_PRUNE_K`` clusters, when the data hold at least
#: ``_SUBSAMPLE_MIN_FACTOR`` times ``_SUBSAMPLE_PER_CLUSTER * k`` points, each of the ``n_init`` attempts seeds and
#: runs Lloyd on that many random points, to ``_SUBSAMPLE_TOL_FACTOR`` times the tolerance, and only the attempts
#: whose subsample inertia is within ``_SUBSAMPLE_SCREEN`` of the lowest are compared on all points. Measured at
#: k = 8, n = 400,000, over the benchmark's scenes 0-99: mean inertia ratio to scikit-learn 1.0040, 12 scenes above
#: 1.001 (seeding on all points: 1.0089, 21 scenes); 1024 and 2048 points per cluster gave 1.0063 and 1.0058 and
#: 2-8 times the k-means++ candidates 0.999-1.01, no better than chance. A tenth of the tolerance on the subsample
#: moves the answer further along slow descents (k = 8 scene 2: 1.0069 -> 0.9976). Storm scale (k in the hundreds,
#: storms of a few dozen points) was not measured this way.
_SUBSAMPLE_PER_CLUSTER = 4096
_SUBSAMPLE_MIN_FACTOR = 4
_SUBSAMPLE_TOL_FACTOR = 0.1
_SUBSAMPLE_SCREEN = 0.01

#: Cluster sums over a chunk go run by run (:meth:`_HamerlyState._sums`) when its labels change less often than once
#: in this many points.
_SUM_RUN_MIN = 16


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of :func:`kmeans` (the best of its ``n_init`` runs).

    Attributes
    ----------
    centroids : ndarray of shape (k, n_features)
        Cluster centres, in the coordinates of ``X``.
    labels : ndarray of shape (n_samples,), dtype intp
        Index of the nearest centroid of each point.
    inertia : float
        Sum of squared Euclidean distances from each point to its centroid.
    n_iter : int
        Lloyd iterations run by the best run (on all points, when the runs were seeded on a subsample).

    The arrays are read-only.
    """

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int


@dataclass(frozen=True)
class _Prepared:
    """Points ready for the private routines: centred, transposed, with a row of ones and a row of squared norms.

    ``XTa`` has shape (d + 2, n): rows ``0..d-1`` hold the centred points as columns, row ``d`` is all ones and row
    ``d + 1`` holds ``|x|^2``. For centres ``C`` one BLAS product then gives, for every centre and point of a chunk,
    ``[-2 C, |C|^2] @ XTa[:d + 1] = |c|^2 - 2 c.x`` (enough to rank centres: ``|x|^2`` is the same for all) or
    ``[-2 C, |C|^2, 1] @ XTa = |x - c|^2``. Centring first keeps this expansion accurate far from the origin
    (longitude and latitude are tens of units from zero while clusters may be fractions of a unit wide).

    ``padded`` continues ``XTa`` with zero columns up to a whole number of the seeding's cells of
    ``_SEED_CELL_ROWS`` points, so that the seeding reads whole cells as blocks (:attr:`cells`) without masks: a
    padding column's expanded squared distance to any centre is 0. Gathers of columns (``take``) read ``padded``,
    which is contiguous: ``take`` copies a non-contiguous source (such as ``XTa``) whole before gathering.
    """

    XTa: np.ndarray  # (d + 2, n), points in ``order``; the first n columns of ``padded``
    padded: np.ndarray  # (d + 2, whole cells): XTa then zero columns up to a multiple of _SEED_CELL_ROWS
    mean: np.ndarray  # (d,)
    mean_variance: float  # mean over features of the variance of X
    order: np.ndarray | None = None  # XTa's column j is X[order[j]]; None: X's own order

    def in_input_order(self, labels: np.ndarray) -> np.ndarray:
        """Per-point values (in XTa's order) put back in the order of the points given."""
        if self.order is None:
            return labels
        out = np.empty_like(labels)
        out[self.order] = labels
        return out

    @property
    def x_sq(self) -> np.ndarray:
        return self.XTa[-1]

    @property
    def cells(self) -> np.ndarray:
        """``padded`` as (d + 2, n_cells, _SEED_CELL_ROWS): the seeding's cells (:func:`_seed_cells`) as blocks."""
        return self.padded.reshape(self.padded.shape[0], -1, _SEED_CELL_ROWS)

    @property
    def n_samples(self) -> int:
        return self.XTa.shape[1]

    @property
    def n_features(self) -> int:
        return self.XTa.shape[0] - 2

    def points(self, ids) -> np.ndarray:
        """Centred coordinates of the points ``ids``, shape (len(ids), d)."""
        return self.XTa[:-2, ids].T


def _prepare(X: np.ndarray, ordered: bool = True) -> _Prepared:
    """Centre validated points, put them in a locality order and precompute what every k-means run needs.

    ``ordered=False`` keeps the given order, for runs seeded on a subsample (:func:`_kmeans_subsampled`), which
    orders only the subsample: below ``_PRUNE_K`` clusters the passes over all points do not need the order, and
    the sort is a third of the preparation (9 ms of 15 at n = 400,000).

    The work is done on the transposed copy (one contiguous row per feature): NumPy's reductions and gathers along
    the rows of a narrow (n, d) array are several times slower (measured at n = 400,000, d = 2: 30 ms for
    ``X.min(axis=0)`` against under 1 ms per row, 75 ms for ``X[order]`` against 5 ms for row-wise ``take``).
    """
    n, d = X.shape
    padded = np.zeros((d + 2, -(-n // _SEED_CELL_ROWS) * _SEED_CELL_ROWS))
    XTa = padded[:, :n]
    points = XTa[:d]
    np.copyto(points, X.T)
    mean = points.mean(axis=1)
    points -= mean[:, None]
    order = _locality_order(points, min_rows=_MIN_CHUNK_ROWS) if ordered else None
    if order is not None:
        for row in points:
            row[:] = row.take(order)
    XTa[d] = 1.0
    np.einsum("ij,ij->j", points, points, out=XTa[d + 1])
    return _Prepared(XTa=XTa, padded=padded, mean=mean, mean_variance=float(XTa[d + 1].sum() / (n * d)), order=order)


#: Bits of the Z-order key: 16 per coordinate in 2-D, a 65,536-step grid over each coordinate's range, fine enough that
#: a few hundred consecutive points fill a small box even inside a dense storm (what the nearest-centre search of a
#: block prunes its centres by); a 32-bit key sorts in about 25 ms per 400,000 points.
_ORDER_KEY_BITS = 32


def _locality_order(points: np.ndarray, min_rows: int) -> np.ndarray | None:
    """A permutation of the points (columns of ``points``, shape (d, n)) that keeps near points together.

    The order is along a Z-order (Morton) curve. Consecutive runs of points then fill small boxes, which is what lets
    the k-means++ seeding skip the chunks a new centre cannot reach (:func:`_kmeans_plusplus`) and the nearest-centre
    search skip the centres a block of points cannot be nearest to (:meth:`_HamerlyState.nearest`). Each coordinate
    is cut into ``2**bits`` equal steps over its range and the steps' bits are interleaved into one key (a table
    spreads each coordinate's bits at once); one sort of the keys gives the order. ``None`` (keep the given order)
    for at most ``min_rows`` points: they make one chunk anyway.
    """
    d, n = points.shape
    if n <= min_rows:
        return None
    lo, hi = points.min(axis=1), points.max(axis=1)
    bits = max(1, min(16, _ORDER_KEY_BITS // d))
    dims = np.argsort(-(hi - lo), kind="stable")[: _ORDER_KEY_BITS // bits]  # the widest, if d is large
    values = np.arange(2**bits, dtype=np.uint32)
    spread = np.zeros(2**bits, dtype=np.uint32)  # value v with its bit b moved to bit b * len(dims)
    for bit in range(bits):
        spread |= ((values >> np.uint32(bit)) & np.uint32(1)) << np.uint32(bit * len(dims))
    key = np.zeros(n, dtype=np.uint32)
    for rank, j in enumerate(dims):
        scale = (2**bits - 1) / (hi[j] - lo[j]) if hi[j] > lo[j] else 0.0
        steps = ((points[j] - lo[j]) * scale).astype(np.intp)
        key |= spread.take(steps, mode="clip") << np.uint32(rank)
    return np.argsort(key)


def _chunks_for(data: _Prepared, k: int, min_chunks: int = _MIN_CHUNKS) -> list[tuple[int, int]]:
    """Row chunks for the passes over the points, at least ``min_chunks`` of them when there are enough points.

    A chunk's temporaries are a few float64 vectors per point plus one row per k-means++ candidate; the distance
    blocks of the nearest-centre search are bounded separately (:func:`_block_rows`).
    """
    n = data.n_samples
    n_trials = 2 + int(np.log(k))
    rows = rows_per_chunk(8 * (data.n_features + n_trials + 8), _CHUNK_BYTES, n)
    rows = min(rows, max(_MIN_CHUNK_ROWS, -(-n // min_chunks)))
    return chunk_bounds(n, rows)


def _block_rows(data: _Prepared, k: int) -> int:
    """Points per block in the nearest-centre search: a (k, rows) distance block plus the gathered points."""
    return rows_per_chunk(8 * (k + data.n_features + 6), _CHUNK_BYTES, data.n_samples)


def _augmented_centres(C: np.ndarray) -> np.ndarray:
    """Return ``[-2 C, |C|^2]`` of shape (k, d + 1); see :class:`_Prepared`."""
    return np.hstack([-2.0 * C, np.einsum("ij,ij->i", C, C)[:, None]])


def _nearest_two(D: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of the smallest entry of each column of ``D``, the smallest and the second smallest values.

    ``D`` has shape (k, m) (centres by points) and may be overwritten. Ties go to the lowest index, like
    ``argmin``; the second smallest equals the smallest when two centres tie.
    """
    k, m = D.shape
    if k == 1:
        return np.zeros(m, dtype=np.intp), D[0].copy(), np.full(m, np.inf)
    if k > _SMALL_K:
        labels = D.argmin(axis=0)
        cols = np.arange(m)
        best = D[labels, cols]
        D[labels, cols] = np.inf
        return labels, best, D.min(axis=0)
    best = D[0].copy()
    second = np.full(m, np.inf)
    tmp = np.empty(m)
    for j in range(1, k):
        # the new second smallest is min(second, max(best, D[j])), ties included
        np.maximum(best, D[j], out=tmp)
        np.minimum(second, tmp, out=second)
        np.minimum(best, D[j], out=best)
    # The first index reaching the minimum equals the number of leading rows whose running minimum is still above it
    # (counted in bytes, k <= _SMALL_K < 256: adding booleans to an intp array costs a conversion per element).
    count = np.zeros(m, dtype=np.uint8)
    above = np.empty(m, dtype=bool)
    np.copyto(tmp, D[0])
    for j in range(k - 1):
        if j:
            np.minimum(tmp, D[j], out=tmp)
        np.greater(tmp, best, out=above)
        np.add(count, above.view(np.uint8), out=count)
    return count.astype(np.intp), best, second


def _centres_near_box(C: np.ndarray, lo: np.ndarray, hi: np.ndarray, slack: float) -> np.ndarray:
    """Indices, ascending, of the centres that can be nearest or second nearest to some point of the box [lo, hi].

    Every point of the box is within ``u`` of the two centres whose farthest box corners are nearest (``u`` the
    larger of those two farthest-corner distances), so its two nearest centres are within ``u`` too; a centre
    farther than ``u`` from the whole box is neither. ``slack`` (squared units) widens the test by far more than the
    rounding of the expanded distances, so the centres dropped could not win even a rounding-level tie: searching
    the rest gives the labels, nearest and second-nearest distances of a search over all centres, ties going to the
    lowest index as before. Costs O(k d) per box against O(k d) per point for the search it prunes.
    """
    below = lo - C  # (k, d): positive where the centre lies below the box along that axis
    above = C - hi
    gap = np.maximum(np.maximum(below, above), 0.0)
    reach = np.maximum(-below, -above)  # distance along each axis to the farthest face
    gap_sq = np.einsum("ij,ij->i", gap, gap)
    reach_sq = np.einsum("ij,ij->i", reach, reach)
    u_sq = np.partition(reach_sq, 1)[1]
    return np.flatnonzero(gap_sq <= u_sq + slack)


def _nearest_two_by_row(D: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_nearest_two` for ``D`` of shape (m, k), points by centres (k >= 2); ``D`` may be overwritten."""
    labels = D.argmin(axis=1)
    rows = np.arange(D.shape[0])
    best = D[rows, labels]
    D[rows, labels] = np.inf
    return labels, best, D.min(axis=1)


def _distances_from_partial(partial: np.ndarray, x_sq: np.ndarray) -> np.ndarray:
    """Turn ``|c|^2 - 2 c.x`` into ``|x - c|``, clipping the rounding error that can make it negative."""
    out = partial + x_sq
    np.maximum(out, 0.0, out=out)
    return np.sqrt(out, out=out)


def _half_separation(C: np.ndarray) -> np.ndarray:
    """Half the distance from each centre to its nearest other centre (``inf`` when k == 1).

    Computed from coordinate differences, one feature at a time over blocks of centre pairs (not through
    ``|a|^2 + |b|^2 - 2 a.b``, whose rounding could overstate the separation that Hamerly's test trusts). At
    k = 1000 this takes a few milliseconds; summing a (k, k, d) array over its short last axis took half a second.
    """
    k, d = C.shape
    half = np.empty(k)
    rows = max(1, 2**15 // k)  # blocks of pairs whose temporaries stay in the CPU caches
    for start in range(0, k, rows):
        stop = min(k, start + rows)
        sq = np.zeros((stop - start, k))
        diff = np.empty((stop - start, k))
        for j in range(d):
            np.subtract(C[start:stop, j, None], C[None, :, j], out=diff)
            diff *= diff
            sq += diff
        sq[np.arange(stop - start), np.arange(start, stop)] = np.inf
        half[start:stop] = 0.5 * np.sqrt(sq.min(axis=1))
    return half


def _chunk_boxes(data: _Prepared, chunks) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners (n_chunks, d) of the bounding box of each chunk's points."""
    P = data.XTa[:-2]
    starts = [start for start, _ in chunks]
    return np.minimum.reduceat(P, starts, axis=1).T, np.maximum.reduceat(P, starts, axis=1).T


def _box_sq_distances(points: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Squared distance (m, n_chunks) from each of ``points`` (m, d) to each chunk's box: 0 inside it."""
    gap = np.maximum(lows[None] - points[:, None], 0.0) + np.maximum(points[:, None] - highs[None], 0.0)
    return np.einsum("mcd,mcd->mc", gap, gap)


def _seed_cells(data: _Prepared) -> list[tuple[int, int]]:
    """The runs of consecutive points the k-means++ seeding reaches or skips as a whole (see :func:`_kmeans_plusplus`).

    Small (``_SEED_CELL_ROWS`` points) so that each fills a small box: measured on a storm-scale scene (n = 44,000,
    k = 1000, 10 % background flashes), a candidate near the end of the seeding reached 32 % of the points through
    chunks of 5,500, 3-5 % through cells of 256 and 1.9 % through cells of 128. Smaller cells cost more box tests
    per step (one per cell and candidate): 128 was the fastest of 64, 128 and 256 at n = 44,000 (k = 150 and
    1000) and within 7 % of 256 at n = 1,000,000. Independent of k and of the thread count.
    """
    return chunk_bounds(data.n_samples, _SEED_CELL_ROWS)


def _kmeans_plusplus(
    data: _Prepared,
    k: int,
    rng: np.random.Generator,
    runner: ChunkRunner,
    boxes: tuple[np.ndarray, np.ndarray] | None = None,
    work: _Workspace | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choose ``k`` initial centres by greedy k-means++.

    Returns the centres' indices into the points and, for every point, the index (into those centres) of its
    nearest centre and the squared distance to it, so that the first Lloyd iteration need not search again.

    The first centre is drawn uniformly. Each further centre is the best, by resulting potential (sum of squared
    distances to the nearest centre), of ``2 + int(log(k))`` candidates drawn with probability proportional to the
    squared distance to the nearest centre chosen so far (Arthur and Vassilvitskii's greedy variant, as in
    scikit-learn). A running array of those squared distances is kept and lowered after each choice, so nothing is
    recomputed for the earlier centres.

    The points are taken in cells of ``_SEED_CELL_ROWS`` consecutive points (:func:`_seed_cells`), whose potential
    (sum of running distances) and largest running distance are kept. A candidate can lower the running distances of
    a cell only if it is closer to the cell's bounding box than that largest distance; the other cells keep their
    sums without being read. The points being in locality order (:func:`_locality_order`), a step reads only the
    cells near its candidates once the centres cover the data. All candidates of a step are evaluated together, in
    one of three ways (:class:`_SeedState`): while they reach few cells, the (candidate, cell) pairs they reach are
    copied as blocks into one array, so that a step costs a fixed few dozen NumPy calls whatever the number of
    candidates; while they reach many cells in long runs of the locality order (the first steps of a small k), one
    product per run, read in place; while they reach most points, one product of all candidates with each chunk of
    points, on the worker threads. ``boxes`` are the cells' boxes (:func:`_chunk_boxes`), computed when not given;
    ``work`` holds the per-point arrays to fill (fresh ones when not given), and the labels and distances returned
    are its arrays.

    Sampling is done in two stages, first a cell by its share of the potential and then a point inside the cell
    (:func:`_sample_points`), which avoids a cumulative sum over all points at every step.
    """
    n = data.n_samples
    n_trials = 2 + int(np.log(k))
    lows, highs = _chunk_boxes(data, _seed_cells(data)) if boxes is None else boxes
    work = _Workspace(n) if work is None else work
    state = _SeedState(data, work, runner, n_trials)
    chosen = np.empty(k, dtype=np.intp)
    chosen[0] = rng.integers(n)
    state.start(chosen[0])
    sparse_max = _SPARSE_MAX_SHARE * n_trials * n
    for c in range(1, k):
        cum_pot = np.cumsum(state.cell_pot)
        total = float(cum_pot[-1])
        if total > 0:
            candidates = _sample_points(state.closest_cells, cum_pot, rng.uniform(size=n_trials) * total, n)
        else:  # only reachable through rounding: every point sits on a centre
            candidates = rng.integers(n, size=n_trials)
        reach = _box_sq_distances(data.points(candidates), lows, highs) < state.cell_max
        n_pairs = np.count_nonzero(reach)
        if n_pairs * _SEED_CELL_ROWS > sparse_max:
            chosen[c] = state.dense_step(c, candidates)
            continue
        if n_pairs >= _RUN_MIN_PAIRS:
            # runs of reached cells: where a row of ``reach`` switches on and off
            switch = np.diff(reach, axis=1, prepend=False, append=False)
            owner, bounds = np.nonzero(switch)
            if bounds.size <= 2 * n_pairs / _RUN_MIN_CELLS:  # runs of _RUN_MIN_CELLS cells on average
                chosen[c] = state.run_step(c, candidates, (owner[::2], bounds[::2], bounds[1::2]), total, cum_pot)
                continue
        chosen[c] = state.sparse_step(c, candidates, reach, total)
    return chosen, work.labels, work.closest


class _SeedState:
    """The running distances, labels and per-cell sums of one k-means++ seeding, and its three kinds of step.

    ``closest_cells`` and ``label_cells`` are the workspace's padded per-point arrays as (n_cells, cell rows)
    blocks: the squared distance from each point to its nearest chosen centre and that centre's rank. A padding slot
    weighs nothing (its distance is 0, and no candidate comes strictly closer). ``cell_pot`` and ``cell_max`` are
    each cell's sum and largest value of the running distances.
    """

    def __init__(self, data: _Prepared, work: _Workspace, runner: ChunkRunner, n_trials: int):
        self.data, self.runner = data, runner
        self.closest_cells = work.padded.reshape(-1, _SEED_CELL_ROWS)
        self.label_cells = work.labels_padded.reshape(-1, _SEED_CELL_ROWS)
        n_cells = self.closest_cells.shape[0]
        self.cell_pot = np.empty(n_cells)
        self.cell_max = np.empty(n_cells)
        # the dense steps' chunks, of whole cells: (n_trials + 4) floats of temporaries per point
        rows = rows_per_chunk(8 * (n_trials + 4), _CHUNK_BYTES, data.n_samples)
        rows = min(rows, max(_MIN_CHUNK_ROWS, -(-data.n_samples // _MIN_CHUNKS)))
        self.dense_chunks = chunk_bounds(n_cells, max(1, rows // _SEED_CELL_ROWS))
        self.parallel = data.n_samples >= _PARALLEL_MIN_ROWS
        # [-2 x, |x|^2, 1] of a point is its column of XTa, rows reordered and scaled (see :class:`_Prepared`)
        d = data.n_features
        self.aug_rows = np.r_[np.arange(d), d + 1, d]
        self.aug_scale = np.r_[np.full(d, -2.0), 1.0, 1.0]

    def augmented(self, ids) -> np.ndarray:
        """``[-2 x, |x|^2, 1]`` for the points ``ids``, shape (len(ids), d + 2): times XTa, squared distances."""
        return self.data.padded.take(ids, axis=1)[self.aug_rows].T * self.aug_scale

    def _squared(self, aug: np.ndarray, c0: int, c1: int) -> np.ndarray:
        """Squared distances (rows of ``aug`` by points) to the points of cells ``c0:c1``, padding included.

        Expanded, so rounding can leave tiny negatives: they only shift a candidate's potential by rounding, and
        :meth:`_lower` clips what it keeps.
        """
        return aug @ self.data.padded[:, c0 * _SEED_CELL_ROWS : c1 * _SEED_CELL_ROWS]

    def _lower(self, label: int, d2: np.ndarray, cells) -> None:
        """Lower the running distances of the cells ``cells`` (a slice, or indices) to ``d2`` (cells by rows).

        ``d2`` (the chosen candidate's squared distances, or those already lowered to the running ones) is clipped
        at 0 in place: sampling needs non-negative weights.
        """
        np.maximum(d2, 0.0, out=d2)
        near = self.closest_cells[cells]
        lab = self.label_cells[cells]
        # strictly closer only: a tie keeps the earlier centre, the lowest index, as an argmin would
        lab[d2 < near] = label
        np.minimum(near, d2, out=near)
        if not isinstance(cells, slice):  # fancy indexing gave copies
            self.closest_cells[cells] = near
            self.label_cells[cells] = lab
        self.cell_pot[cells] = near.sum(axis=1)
        self.cell_max[cells] = near.max(axis=1)

    def start(self, first: int) -> None:
        """Distances to the first centre."""
        aug = self.augmented([first])[0]

        def fill(i: int) -> None:
            c0, c1 = self.dense_chunks[i]
            self.closest_cells[c0:c1] = np.maximum(self._squared(aug, c0, c1), 0.0).reshape(c1 - c0, -1)
            self.label_cells[c0:c1] = 0
            self.cell_pot[c0:c1] = self.closest_cells[c0:c1].sum(axis=1)
            self.cell_max[c0:c1] = self.closest_cells[c0:c1].max(axis=1)

        self.runner.map(fill, len(self.dense_chunks), parallel=self.parallel)

    def dense_step(self, label: int, candidates: np.ndarray) -> int:
        """Evaluate every candidate on every point, chunk by chunk; keep the best. Returns the chosen point."""
        aug = self.augmented(candidates)

        def potentials(i: int) -> np.ndarray:
            c0, c1 = self.dense_chunks[i]
            D = self._squared(aug, c0, c1)
            np.minimum(D, self.closest_cells[c0:c1].reshape(-1), out=D)
            return D.sum(axis=1)

        parts = self.runner.map(potentials, len(self.dense_chunks), parallel=self.parallel)
        best = int(np.argmin(np.sum(parts, axis=0)))

        def update(i: int) -> None:
            c0, c1 = self.dense_chunks[i]
            self._lower(label, self._squared(aug[best], c0, c1).reshape(c1 - c0, -1), slice(c0, c1))

        self.runner.map(update, len(self.dense_chunks), parallel=self.parallel)
        return int(candidates[best])

    def run_step(self, label: int, candidates: np.ndarray, edges: tuple, total: float, cum_pot: np.ndarray) -> int:
        """Evaluate each candidate on the runs of consecutive cells it reaches, one product per run; keep the best.

        ``edges`` holds, for each run, its candidate and its first and past-the-end cells. Long runs (the first steps
        of a small k, where a candidate reaches a few long stretches of the locality order) are read in place, which
        is cheaper than copying their cells out. Returns the chosen point.
        """
        aug = self.augmented(candidates)
        cum = np.concatenate([[0.0], cum_pot])
        potentials = np.full(len(candidates), total)
        lowered = []  # (candidate, first cell, past-the-end cell, running distances after choosing the candidate)
        for j, c0, c1 in zip(*(column.tolist() for column in edges), strict=True):
            D = self._squared(aug[j], c0, c1)
            np.minimum(D, self.closest_cells[c0:c1].reshape(-1), out=D)
            potentials[j] += float(D.sum()) - (cum[c1] - cum[c0])
            lowered.append((j, c0, c1, D))
        best = int(np.argmin(potentials))
        for j, c0, c1, D in lowered:
            if j == best:
                self._lower(label, D.reshape(c1 - c0, -1), slice(c0, c1))
        return int(candidates[best])

    def sparse_step(self, label: int, candidates: np.ndarray, reach: np.ndarray, total: float) -> int:
        """Evaluate each candidate on the cells it reaches, all (candidate, cell) pairs at once; keep the best.

        A candidate's potential is the total less its reached cells' sums plus their sums after lowering to its
        distances; the cells it does not reach keep theirs. Returns the chosen point.
        """
        owner, cells = np.nonzero(reach)  # the pairs, grouped by candidate
        if cells.size == 0:  # a candidate drawn at random on a centre, when every point sits on one
            return int(candidates[0])
        D = np.einsum("pi,ipr->pr", self.augmented(candidates)[owner], self.data.cells[:, cells])
        np.minimum(D, self.closest_cells[cells], out=D)  # each point's running distance after the choice
        change = np.bincount(owner, weights=D.sum(axis=1) - self.cell_pot[cells], minlength=len(candidates))
        best = int(np.argmin(total + change))
        first, last = np.searchsorted(owner, [best, best + 1])  # the winner's pairs are consecutive
        self._lower(label, D[first:last], cells[first:last])
        return int(candidates[best])


def _sample_points(closest_cells: np.ndarray, cum_pot: np.ndarray, targets: np.ndarray, n: int) -> np.ndarray:
    """Index of the point where the cumulative potential first exceeds each target (cell first, then point).

    ``closest_cells`` holds the running squared distances as (n_cells, cell rows) blocks (zero-padded beyond the
    ``n`` points) and ``cum_pot`` the cells' cumulative potentials. All targets are resolved at once, one row of
    running sums per target.
    """
    n_cells, rows = closest_cells.shape
    cells = np.minimum(np.searchsorted(cum_pot, targets, side="right"), n_cells - 1)
    weights = closest_cells[cells]
    offsets = targets - np.where(cells > 0, cum_pot[cells - 1], 0.0)
    j = (np.cumsum(weights, axis=1) <= offsets[:, None]).sum(axis=1)
    past = j == rows
    if past.any():
        # rounding put an offset at or past its cell's own sum: the cell's last point with positive mass
        j[past] = rows - 1 - np.argmax(weights[past, ::-1] > 0, axis=1)
    return np.minimum(cells * rows + j, n - 1)  # (a cell with no mass at all: its last point)


class _Workspace:
    """The per-point arrays of one k-means run, allocated once for all ``n_init`` runs of a k.

    Fresh arrays of a million points cost their page faults at every run; these are filled again instead. The
    seeding's squared distances become Lloyd's upper bounds in place (``upper`` is ``closest``). ``closest`` and
    ``labels`` are the first ``n`` entries of ``padded`` and ``labels_padded``, which extend them to whole cells of
    the seeding (zeros beyond ``n``). Two label arrays take turns (:meth:`keep_labels`), so the best run's labels are
    kept without a copy.
    """

    def __init__(self, n: int) -> None:
        size = -(-n // _SEED_CELL_ROWS) * _SEED_CELL_ROWS
        self.n = n
        self.padded = np.zeros(size)
        self.closest = self.padded[:n]
        self.upper = self.closest
        self.lower = np.empty(n)
        self._label_arrays = [np.zeros(size, dtype=np.intp)]
        self.labels_padded = self._label_arrays[0]
        self.labels = self.labels_padded[:n]

    def keep_labels(self) -> None:
        """Leave the current labels alone: the next run fills the other array."""
        if len(self._label_arrays) == 1:
            self._label_arrays.append(np.zeros_like(self.labels_padded))
        self._label_arrays.reverse()
        self.labels_padded = self._label_arrays[0]
        self.labels = self.labels_padded[: self.n]


class _HamerlyState:
    """Per-point bounds and labels of one Lloyd run, plus the per-iteration quantities the chunk kernel reads.

    ``upper[i]`` bounds the distance from point i to its assigned centre from above and ``lower[i]`` bounds the
    distance to every other centre from below. A point needs no distance computation while
    ``upper[i] < max(lower[i], half_sep[labels[i]])`` (Hamerly 2010): its centre is then provably still the nearest.
    """

    def __init__(self, data: _Prepared, k: int, chunks, work: _Workspace | None = None):
        n = data.n_samples
        self.data, self.k, self.chunks = data, k, chunks
        self.block_rows = _block_rows(data, k)
        self.parallel = n >= _PARALLEL_MIN_ROWS
        # centres are means of points, so |c|^2 <= max |x|^2: this bounds the rounding of every expanded distance
        self.prune_slack = 1e-9 * float(data.x_sq.max()) if k >= _PRUNE_K else 0.0
        work = _Workspace(n) if work is None else work
        self.labels, self.upper, self.lower = work.labels, work.upper, work.lower
        self.first = True
        self.seeded = False
        self.shift = np.zeros(k)
        self.other_max_shift = np.zeros(k)

    def seed_assignment(self, labels: np.ndarray, sq_distances: np.ndarray) -> None:
        """Start from the nearest centres found while seeding: the first pass then only sums the clusters.

        The upper bounds are the seeding's distances; no second-nearest distance being known, the lower bounds are
        0, so the next pass examines the points that their centre's half separation does not protect.
        """
        if labels is not self.labels:
            self.labels[:] = labels
        np.sqrt(sq_distances, out=self.upper)
        self.lower[:] = 0.0
        self.seeded = True

    def set_shift(self, shift: np.ndarray) -> None:
        """Record how far each centre moved; a point's lower bound drops by the largest move of the other centres.

        (Hamerly's refinement: the distance to every centre but a point's own can shrink at most by the largest shift
        among those centres, which is the second largest shift for the points of the centre that moved most.)
        """
        self.shift = shift
        if self.k == 1:
            self.other_max_shift = np.zeros(1)
            return
        top = int(np.argmax(shift))
        self.other_max_shift = np.full(self.k, shift[top])
        self.other_max_shift[top] = np.max(np.delete(shift, top))

    def set_centres(self, C: np.ndarray) -> None:
        self.C = C
        self.CT = np.ascontiguousarray(C.T)
        self.C_aug = _augmented_centres(C)
        self.C_aug_T = np.ascontiguousarray(self.C_aug.T)
        self.half_sep = _half_separation(C)

    def _sums(self, cols, labels) -> tuple[np.ndarray, np.ndarray]:
        """Per-cluster coordinate sums (k, d) and counts (k,) of the points ``cols`` with the given labels.

        For a slice of points whose labels come in long runs (consecutive points in locality order mostly share a
        cluster: thousands a run at k = 8), each run is summed with ``np.add.reduceat`` and the runs are added per
        cluster: half the time of a weighted ``bincount`` over the points.
        """
        k, d = self.k, self.data.n_features
        sums = np.empty((k, d))
        if isinstance(cols, slice):
            starts = np.flatnonzero(np.diff(labels, prepend=-1))
            if starts.size * _SUM_RUN_MIN < labels.size:
                run_labels = labels[starts]
                lengths = np.diff(starts, append=labels.size)
                counts = np.bincount(run_labels, weights=lengths, minlength=k).astype(np.intp)
                for j in range(d):
                    run_sums = np.add.reduceat(self.data.XTa[j, cols], starts)
                    sums[:, j] = np.bincount(run_labels, weights=run_sums, minlength=k)
                return sums, counts
        counts = np.bincount(labels, minlength=k)
        for j in range(d):
            sums[:, j] = np.bincount(labels, weights=self.data.XTa[j, cols], minlength=k)
        return sums, counts

    def nearest(self, cols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest centre of the points ``cols`` (a slice or indices), the distance to it and to the second nearest.

        Distances to all centres are computed in blocks of ``block_rows`` points, never for all points at once.
        """
        XTa = self.data.padded[:-1]  # without the squared norms: ranking centres needs only |c|^2 - 2 c.x
        points = XTa[:, cols] if isinstance(cols, slice) else XTa.take(cols, axis=1)
        m, d = points.shape[1], self.data.n_features
        labels = np.empty(m, dtype=np.intp)
        first = np.empty(m)
        second = np.empty(m)
        prune = self.k >= _PRUNE_K
        rows = min(self.block_rows, _PRUNE_ROWS) if prune else self.block_rows
        for b0 in range(0, m, rows):
            b1 = min(m, b0 + rows)
            block = points[:, b0:b1]
            if prune:
                ids = _centres_near_box(self.C, block[:d].min(axis=1), block[:d].max(axis=1), self.prune_slack)
                # points by centres: the search along each contiguous row is several times faster than down columns
                near, first[b0:b1], second[b0:b1] = _nearest_two_by_row(block.T @ self.C_aug_T[:, ids])
                labels[b0:b1] = ids.take(near)
            else:
                labels[b0:b1], first[b0:b1], second[b0:b1] = _nearest_two(self.C_aug @ block)
        x_sq = self.data.x_sq[cols]
        return labels, _distances_from_partial(first, x_sq), _distances_from_partial(second, x_sq)

    def assign_chunk(self, i: int, update_sums: bool):
        """Bring chunk ``i`` up to date with the current centres.

        Returns ``None`` when no label changed, else ``(delta_sums, delta_counts, n_changed)`` (zeros in place of the
        deltas when ``update_sums`` is false). On the first pass the deltas are the chunk's full sums.
        """
        data = self.data
        start, stop = self.chunks[i]
        lab, ub, lb = self.labels[start:stop], self.upper[start:stop], self.lower[start:stop]
        if self.first:
            if not self.seeded:
                lab[:], ub[:], lb[:] = self.nearest(slice(start, stop))
            sums, counts = self._sums(slice(start, stop), lab)
            return sums, counts, stop - start
        # mode="clip" skips the bounds check (labels are always valid), which makes these gathers much cheaper
        ub += self.shift.take(lab, mode="clip")
        lb -= self.other_max_shift.take(lab, mode="clip")
        bound = np.maximum(self.half_sep.take(lab, mode="clip"), lb)
        # ">=" rather than ">": a point tied with another centre is re-examined, so ties go to the lowest index as in
        # plain Lloyd (a tie kept by the bounds could leave two centres on the same spot for good).
        cand = np.flatnonzero(ub >= bound)
        if cand.size == 0:
            return None
        # Tighten the upper bound to the exact distance to the assigned centre.
        cols = cand + start
        diff = data.padded[:-2].take(cols, axis=1)
        diff -= self.CT.take(lab[cand], axis=1)
        exact = np.sqrt(np.einsum("ij,ij->j", diff, diff))
        ub[cand] = exact
        keep = exact >= bound[cand]
        cand, cols = cand[keep], cols[keep]
        if cand.size == 0:
            return None
        new, ub[cand], lb[cand] = self.nearest(cols)
        old = lab[cand]
        changed = new != old
        n_changed = int(np.count_nonzero(changed))
        if n_changed == 0:
            return None
        lab[cand] = new
        if not update_sums:
            return 0.0, 0, n_changed
        moved = cols[changed]
        add_sums, add_counts = self._sums(moved, new[changed])
        sub_sums, sub_counts = self._sums(moved, old[changed])
        return add_sums - sub_sums, add_counts - sub_counts, n_changed

    def exact_sq_distances(self, i: int) -> np.ndarray:
        """Squared distance from each point of chunk ``i`` to its assigned centre, computed from differences."""
        start, stop = self.chunks[i]
        diff = self.data.XTa[:-2, start:stop] - self.CT.take(self.labels[start:stop], axis=1, mode="clip")
        return np.einsum("ij,ij->j", diff, diff)


def _relocate_empty(
    state: _HamerlyState, empty: np.ndarray, sums: np.ndarray, counts: np.ndarray, runner: ChunkRunner
) -> int:
    """Re-seed each empty cluster with the point farthest from its own (current) centre, as scikit-learn does.

    The point is moved into the empty cluster, so labels, sums and counts stay consistent; it is taken only from a
    cluster that keeps at least one point. Returns the number of points moved (one per empty cluster). With
    ``k <= n_distinct`` such a point always exists at a positive distance.
    """
    data, labels = state.data, state.labels
    dist = np.concatenate(runner.map(state.exact_sq_distances, len(state.chunks), parallel=state.parallel))
    n_look = min(dist.size, empty.size + state.k)  # each cluster can hold back at most one point (its last)
    top = np.argpartition(dist, dist.size - n_look)[dist.size - n_look :]
    top = top[np.argsort(-dist[top], kind="stable")]
    moved = 0
    for p in top:
        if moved == empty.size:
            break
        donor = labels[p]
        if counts[donor] <= 1:
            continue
        target = empty[moved]
        x = data.XTa[:-2, p]
        counts[donor] -= 1
        sums[donor] -= x
        counts[target] = 1
        sums[target] = x
        labels[p] = target
        state.upper[p] = 0.0
        state.lower[p] = 0.0
        moved += 1
    logger.debug("re-seeded %d empty cluster(s) with far points", moved)
    return moved


def _lloyd_hamerly(
    data: _Prepared,
    centres: np.ndarray,
    max_iter: int,
    tol_abs: float,
    runner: ChunkRunner,
    chunks,
    seeded: tuple[np.ndarray, np.ndarray] | None = None,
    work: _Workspace | None = None,
    assigned: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Run Lloyd's algorithm from ``centres`` (centred coordinates); return centres, labels, inertia, iterations.

    Points, labels and ``seeded`` are in the prepared (locality) order. ``seeded``, when given, is each point's
    nearest centre among ``centres`` and the squared distance to it (what :func:`_kmeans_plusplus` returns), which
    spares the first iteration its search; so does ``assigned``, when ``work`` already holds the labels and bounds of
    ``centres`` (:func:`_assign_all`). The labels returned are ``work.labels`` when ``work`` is given.

    Each iteration assigns every point to its nearest centre and moves each centre to the mean of its points; Hamerly's
    bounds skip the distance computations for points whose assignment provably cannot change, so the iterates are
    those of plain Lloyd (up to rounding in exact ties). Cluster sums are updated from the points that changed label.
    Stops when no label changes (strict convergence) or when the squared centre shift summed over centres is at most
    ``tol_abs``; in the latter case one more assignment pass makes the labels match the final centres.
    """
    k = centres.shape[0]
    state = _HamerlyState(data, k, chunks, work)
    state.set_centres(centres.copy())
    if seeded is not None:
        state.seed_assignment(*seeded)
    state.seeded |= assigned
    sums = counts = None
    strict = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (the count of iterations run is read after the loop)
        results = runner.map(lambda i: state.assign_chunk(i, True), len(chunks), parallel=state.parallel)
        results = [r for r in results if r is not None]
        n_changed = sum(r[2] for r in results)
        if state.first:
            sums = np.sum([r[0] for r in results], axis=0)
            counts = np.sum([r[1] for r in results], axis=0)
            state.first = False
        else:
            for delta_sums, delta_counts, _ in results:
                sums += delta_sums
                counts += delta_counts
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            n_changed += _relocate_empty(state, empty, sums, counts, runner)
        new_centres = sums / counts[:, None]
        shift = np.sqrt(((new_centres - state.C) ** 2).sum(axis=1))
        state.set_shift(shift)
        state.set_centres(new_centres)
        if n_changed == 0:
            strict = True
            break
        if float((shift**2).sum()) <= tol_abs:
            break
    if not strict:
        runner.map(lambda i: state.assign_chunk(i, False), len(chunks), parallel=state.parallel)
    inertia = float(
        np.sum(runner.map(lambda i: state.exact_sq_distances(i).sum(), len(chunks), parallel=state.parallel))
    )
    return state.C, state.labels, inertia, n_iter


def _check_k(X: np.ndarray, k: int) -> None:
    n = X.shape[0]
    if k > n:
        raise ValueError(f"n_samples={n} should be >= k={k}")
    distinct = count_distinct_rows_at_least(X, k)
    if distinct < k:
        raise ValueError(
            f"k={k} exceeds the number of distinct points in X ({distinct} distinct among "
            f"n_samples={n}); choose k <= {distinct}"
        )


def _kmeans_validated(
    data: _Prepared,
    k: int,
    *,
    n_init: int,
    max_iter: int,
    tol: float,
    rng: np.random.Generator,
    init: np.ndarray | None = None,
) -> KMeansResult:
    """Best of ``n_init`` seeded Lloyd runs on prepared data (arguments already checked).

    With ``init`` (k centres in X's coordinates), one Lloyd run starts from those centres instead.
    """
    chunks = _chunks_for(data, k)
    tol_abs = data.mean_variance * tol
    best = None
    work = _Workspace(data.n_samples)
    if init is not None:
        with ChunkRunner() as runner:
            C, labels, inertia, n_iter = _lloyd_hamerly(
                data, np.ascontiguousarray(init - data.mean), max_iter, tol_abs, runner, chunks, work=work
            )
        return _result(data, C, labels, inertia, n_iter)
    m = _subsample_size(data.n_samples, k)
    if m is not None:
        return _kmeans_subsampled(data, k, m, n_init=n_init, max_iter=max_iter, tol_abs=tol_abs, rng=rng)
    boxes = _chunk_boxes(data, _seed_cells(data))
    with ChunkRunner() as runner:
        for run in range(n_init):
            chosen, seed_labels, seed_sq_distances = _kmeans_plusplus(data, k, rng, runner, boxes, work)
            centres = np.ascontiguousarray(data.points(chosen))
            C, labels, inertia, n_iter = _lloyd_hamerly(
                data, centres, max_iter, tol_abs, runner, chunks, seeded=(seed_labels, seed_sq_distances), work=work
            )
            logger.debug("k-means run %d/%d: k=%d inertia=%.6g n_iter=%d", run + 1, n_init, k, inertia, n_iter)
            if best is None or inertia < best[2]:
                best = (C, labels, inertia, n_iter)
                work.keep_labels()  # the next run fills the other label array
    return _result(data, *best)


def _subsample_size(n: int, k: int) -> int | None:
    """Points of the subsample the seeding runs on (:func:`_kmeans_subsampled`), or None to seed on all points."""
    m = _SUBSAMPLE_PER_CLUSTER * k
    return m if k < _PRUNE_K and n >= _SUBSAMPLE_MIN_FACTOR * m else None


def _subsample(data: _Prepared, ids: np.ndarray) -> _Prepared:
    """The points ``ids``, put in their own locality order, as prepared data of their own.

    Centred on the full data's mean, whose ``mean_variance`` they keep: the tolerance stays the full data's.
    """
    m, d = ids.size, data.n_features
    order = _locality_order(data.XTa[:d].take(ids, axis=1), min_rows=_MIN_CHUNK_ROWS)
    if order is not None:
        ids = ids.take(order)
    padded = np.zeros((d + 2, -(-m // _SEED_CELL_ROWS) * _SEED_CELL_ROWS))
    padded[:, :m] = data.padded.take(ids, axis=1)
    XTa = padded[:, :m]
    return _Prepared(XTa=XTa, padded=padded, mean=data.mean, mean_variance=data.mean_variance)


def _assign_all(data: _Prepared, C: np.ndarray, chunks, runner: ChunkRunner, work: _Workspace) -> float:
    """Each point's nearest centre among ``C`` and Hamerly's bounds into ``work``, as Lloyd's first pass finds them.

    Returns the sum of the squared distances to the nearest centres, the inertia of ``C`` up to the rounding of the
    expanded distances: enough to rank attempts. :func:`_lloyd_hamerly` continues from ``work`` (``assigned``).
    """
    state = _HamerlyState(data, C.shape[0], chunks, work)
    state.set_centres(C)

    def assign(i: int) -> float:
        start, stop = chunks[i]
        cols = slice(start, stop)
        state.labels[cols], state.upper[cols], state.lower[cols] = state.nearest(cols)
        return float(np.dot(state.upper[cols], state.upper[cols]))

    return float(np.sum(runner.map(assign, len(chunks), parallel=state.parallel)))


def _kmeans_subsampled(
    data: _Prepared, k: int, m: int, *, n_init: int, max_iter: int, tol_abs: float, rng: np.random.Generator
) -> KMeansResult:
    """Best of ``n_init`` attempts seeded and converged on a random subsample, then Lloyd on all points from it.

    Each attempt runs greedy k-means++ and Lloyd on the same ``m`` random points (the seeding costs ``m / n`` of a
    full one), to ``_SUBSAMPLE_TOL_FACTOR`` times the tolerance: the full-data run from its centres usually stops
    after one iteration, so its answer is about as converged as the subsample's. The attempts whose subsample
    inertia is within ``_SUBSAMPLE_SCREEN`` of the lowest are compared on all points (one assignment pass each),
    and Lloyd on all points, to the same stopping rule as :func:`_kmeans_validated`'s runs, continues from the
    best of them. ``n_iter`` counts the full-data iterations.
    """
    n = data.n_samples
    sub = _subsample(data, np.sort(rng.choice(n, m, replace=False)))
    # the subsample's passes always run in the calling thread: chunks as large as the cache budget allows
    sub_chunks, chunks = _chunks_for(sub, k, min_chunks=1), _chunks_for(data, k)
    sub_boxes = _chunk_boxes(sub, _seed_cells(sub))
    sub_work = _Workspace(m)
    attempts = []  # (subsample inertia, centres)
    with ChunkRunner() as runner:
        for run in range(n_init):
            chosen, seed_labels, seed_sq = _kmeans_plusplus(sub, k, rng, runner, sub_boxes, sub_work)
            C, _, sub_inertia, sub_iter = _lloyd_hamerly(
                sub,
                np.ascontiguousarray(sub.points(chosen)),
                max_iter,
                tol_abs * _SUBSAMPLE_TOL_FACTOR,
                runner,
                sub_chunks,
                seeded=(seed_labels, seed_sq),
                work=sub_work,
            )
            logger.debug(
                "k-means subsample attempt %d/%d: k=%d inertia=%.6g n_iter=%d",
                run + 1,
                n_init,
                k,
                sub_inertia,
                sub_iter,
            )
            attempts.append((sub_inertia, C))
        lowest = min(inertia for inertia, _ in attempts)
        close = [C for inertia, C in attempts if inertia <= (1.0 + _SUBSAMPLE_SCREEN) * lowest]
        best = None
        for C in close:
            work = _Workspace(n)
            inertia = _assign_all(data, C, chunks, runner, work)
            if best is None or inertia < best[0]:
                best = (inertia, C, work)
        _, C, work = best
        result = _lloyd_hamerly(data, C, max_iter, tol_abs, runner, chunks, work=work, assigned=True)
    return _result(data, *result)


def _result(data: _Prepared, C: np.ndarray, labels: np.ndarray, inertia: float, n_iter: int) -> KMeansResult:
    labels = data.in_input_order(labels)
    centroids = C + data.mean
    centroids.flags.writeable = False
    labels.flags.writeable = False
    return KMeansResult(centroids=centroids, labels=labels, inertia=inertia, n_iter=n_iter)


def kmeans(
    X, k: int, *, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4, seed=None, init=None
) -> KMeansResult:
    """Cluster points with k-means: greedy k-means++ seeding, Lloyd iterations, best of ``n_init`` runs.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points, converted to float64. Must be 2-D, non-empty and finite. A 1-D array is rejected because it is
        ambiguous; pass ``X.reshape(-1, 1)`` for one feature.
    k : int
        Number of clusters, ``1 <= k <=`` the number of distinct points of ``X``.
    n_init : int, default=10
        Number of seeded runs; the run with the lowest inertia is returned.
    max_iter : int, default=300
        Maximum number of Lloyd iterations per run.
    tol : float, default=1e-4
        Convergence tolerance, relative to the data: a run stops when the squared centre shift summed over centres is
        at most ``tol`` times the mean over features of the variance of ``X`` (as scikit-learn). It also stops, earlier,
        when no label changes.
    seed : None, int, numpy.random.Generator or SeedSequence, default=None
        Passed once to ``np.random.default_rng``; a given int gives the same result on every call.
    init : None or array-like of shape (k, n_features), default=None
        Starting centres, e.g. the previous frame's storms when tracking; then one Lloyd run starts from them and
        ``n_init`` and ``seed`` are not used. None: greedy k-means++ seeding.

    Returns
    -------
    KMeansResult
        ``centroids`` (k, n_features), ``labels`` (n_samples,), ``inertia`` (sum of squared distances from each point
        to its centroid) and ``n_iter`` of the best run. The labels always name each point's nearest centroid: after a
        stop on ``tol`` one more assignment pass is made.

    Raises
    ------
    ValueError
        For a malformed ``X`` (wrong ndim, empty, NaN or inf), ``k < 1``, ``k`` above the number of samples or of
        distinct points, or ``n_init``, ``max_iter`` below 1 or a negative ``tol``.

    Notes
    -----
    Seeding costs O(n d k log k) per run at most; the points being kept in a locality order (a Z-order curve), each
    seeding step reads only the cells of 128 consecutive points whose bounding box its candidates are near enough to,
    which on clustered data such as storms is a small part of them once a few centres are chosen; all candidates of a
    step are evaluated in a fixed few NumPy calls, whatever their number. A Lloyd iteration
    costs O(n d k) for the points that must be examined and O(n) for the others: Hamerly's bounds (an upper bound on
    the distance to the assigned centre, a lower bound on the distance to any other) skip points whose assignment
    cannot change, which after the first few iterations is most of them. At storm scale (k from 24 on) the points
    examined are searched in blocks of 256 neighbours against only the centres that can be nearest or second nearest
    to some point of the block's bounding box, a few percent of them for k in the hundreds; the labels are those of a
    search over all centres. Distances use ``|x|^2 - 2 x.c + |c|^2`` on centred data, in row chunks of a few
    megabytes, so memory is O(n d) plus O(k) per chunk row, never O(n k) or O(n^2). From 8,388,608 points on, work
    is split over the worker threads (``LIGHTNING_EDA_THREADS``, default the cores available); below that one thread
    was measured faster (the calls are too short to share). The results do not depend on the number of threads.

    Below 24 clusters, on at least 16,384 points per cluster, each of the ``n_init`` runs is seeded and converged on
    a random subsample of 4,096 points per cluster (to a tenth of ``tol``), which costs a fraction of a full seeding;
    Lloyd's iterations on all points then continue, to the same ``tol``, from the run with the lowest inertia (the
    close contenders compared on all points). The answer is a converged Lloyd run on all the points either way.

    A cluster left empty by an iteration is re-seeded with the point farthest from its centre, taken from a cluster
    that keeps other points (as scikit-learn does). Duplicate points are fine; only the count of distinct points
    limits ``k``.

    References
    ----------
    .. [1] Arthur, D. and Vassilvitskii, S. (2007). "k-means++: the advantages of careful seeding". Proceedings of the
       eighteenth annual ACM-SIAM symposium on Discrete algorithms, 1027-1035.
    .. [2] Hamerly, G. (2010). "Making k-means even faster". Proceedings of the 2010 SIAM International Conference on
       Data Mining, 130-140.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    >>> result = kmeans(X, 2, seed=0)
    >>> sorted(result.centroids[:, 0].tolist()), result.inertia
    ([0.0, 10.0], 1.0)
    """
    X = check_points(X)
    k = check_int(k, "k", minimum=1)
    n_init, max_iter, tol = _check_options(n_init, max_iter, tol)
    _check_k(X, k)
    if init is not None:
        init = check_points(init)
        if init.shape != (k, X.shape[1]):
            raise ValueError(f"init has shape {init.shape}; expected (k, n_features) = {(k, X.shape[1])}")
    rng = np.random.default_rng(seed)
    data = _prepare(X, ordered=init is not None or _subsample_size(X.shape[0], k) is None)
    return _kmeans_validated(data, k, n_init=n_init, max_iter=max_iter, tol=tol, rng=rng, init=init)


_KMEANS_OPTIONS = ("n_init", "max_iter", "tol", "seed")


def _check_options(n_init, max_iter, tol) -> tuple[int, int, float]:
    return check_int(n_init, "n_init", minimum=1), check_int(max_iter, "max_iter", minimum=1), check_tol(tol)


def _sweep(X, ks, kmeans_kwargs: dict):
    """Yield ``(k, kmeans(X, k, **kmeans_kwargs))`` for each k, the checks and preparation done once."""
    unknown = sorted(set(kmeans_kwargs) - set(_KMEANS_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; allowed: {list(_KMEANS_OPTIONS)}")
    X = check_points(X)
    ks = [check_int(k, "k", minimum=1) for k in ks]
    if not ks:
        raise ValueError("ks is empty; give at least one number of clusters")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks has repeated values: {ks}")
    n_init, max_iter, tol = _check_options(
        kmeans_kwargs.get("n_init", 10), kmeans_kwargs.get("max_iter", 300), kmeans_kwargs.get("tol", 1e-4)
    )
    seed = kmeans_kwargs.get("seed")
    _check_k(X, max(ks))
    prepared = {}  # by whether the points are put in locality order, as kmeans() prepares them for each k
    for k in ks:
        ordered = _subsample_size(X.shape[0], k) is None
        if ordered not in prepared:
            prepared[ordered] = _prepare(X, ordered=ordered)
        data = prepared[ordered]
        yield k, _kmeans_validated(data, k, n_init=n_init, max_iter=max_iter, tol=tol, rng=np.random.default_rng(seed))


def kmeans_sweep(X, ks, **kmeans_kwargs) -> dict[int, KMeansResult]:
    """:func:`kmeans` for each number of clusters in ``ks``, the checks and preparation shared.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points, as for :func:`kmeans`. Validated, centred and put in locality order once for all ``ks``.
    ks : iterable of int
        Numbers of clusters, each valid for :func:`kmeans`; no repeats.
    **kmeans_kwargs
        ``n_init``, ``max_iter``, ``tol`` and ``seed``, passed to every run. Each ``k`` starts from
        ``np.random.default_rng(seed)``, so with an int seed the entry for ``k`` equals
        ``kmeans(X, k, seed=seed, ...)``.

    Returns
    -------
    dict
        ``{k: KMeansResult}`` in the order of ``ks``. It holds every k's labels (``n_samples`` integers each); when only
        the inertias are wanted, :func:`elbow_sweep` keeps none of them.
    """
    return dict(_sweep(X, ks, kmeans_kwargs))


def elbow_sweep(X, ks, **kmeans_kwargs) -> dict[int, float]:
    """Inertia of :func:`kmeans` for each number of clusters in ``ks``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points, as for :func:`kmeans`. Validated and prepared once for all ``ks``.
    ks : iterable of int
        Numbers of clusters, each valid for :func:`kmeans`; no repeats.
    **kmeans_kwargs
        ``n_init``, ``max_iter``, ``tol`` and ``seed``, passed to every run. Each ``k`` starts from
        ``np.random.default_rng(seed)``, so with an int seed the entry for ``k`` equals
        ``kmeans(X, k, seed=seed, ...).inertia``.

    Returns
    -------
    dict
        ``{k: inertia}`` in the order of ``ks``; feed it to :func:`lightning_eda.ml.find_knee`.

    Notes
    -----
    Costs the sum of the :func:`kmeans` runs; the shared preparation (checks, centring, ordering) is done once.
    """
    return {k: result.inertia for k, result in _sweep(X, ks, kmeans_kwargs)}
