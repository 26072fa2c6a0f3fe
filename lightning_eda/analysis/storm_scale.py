"""k at the scale of storms: count the storms of a flash-density grid, then let k-means start from them.

Silhouette and elbow curves of flash positions are flat from continents down to storms, so choosing k from them
lands on continents. Storms are what a forecaster sees on a flash-density map: regions where flashes are dense,
separated by sparse ground or by a dip of density between two cores. :func:`segment_storms` finds them the way the
field's cell identification does (the multi-threshold feature detection of tobac, Heikenfeld et al. 2019), in a few
SciPy calls on a sparse flash-count grid of a physical cell size:

1. count the flashes in square cells of ``cell_km`` on the equal-area plane, smooth with a Gaussian of
   ``sigma_cells`` cells;
2. at each threshold of a ladder (1, 2, 5, 10, 20, 50, ... flashes per cell), label the regions at or above it
   (connected through the 8 neighbours of a cell: diagonal neighbours are 14 km apart on a 10 km grid);
   a region at a higher threshold replaces the region below that contains it, so a region holding two separate
   cores gives two storms and a region with one core gives one;
3. give every cell holding a flash to the storm of the nearest core cell among the cells with flashes connected to
   it, never across an empty cell.

The number of storms is ``k``; :func:`storm_kmeans` runs one k-means from the storms' centres. No Dagster here.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from lightning_eda.ml import KMeansResult, kmeans

logger = logging.getLogger(__name__)

DEFAULT_CELL_KM = 10.0
DEFAULT_SIGMA_CELLS = 0.5
DEFAULT_MIN_CELLS = 2

_LADDER_STEPS = (1.0, 2.0, 5.0)


@dataclass(frozen=True)
class StormSegmentation:
    """The storms of a set of flashes.

    Attributes
    ----------
    k : int
        Number of storms.
    labels : ndarray of shape (n_flashes,), dtype intp
        Storm of each flash, ``0..k-1``; -1 for a flash in no storm (an isolated flash, or a sparse patch whose
        density never reaches the lowest threshold).
    centres_km : ndarray of shape (k, 2)
        Flash-weighted centre (x, y) of each storm in km, in the plane of the flashes given.
    n_flashes : ndarray of shape (k,), dtype int64
        Flashes in each storm.
    reason : str
        One line saying how k was found, for metadata and the command line.

    The arrays are read-only.
    """

    k: int
    labels: np.ndarray
    centres_km: np.ndarray
    n_flashes: np.ndarray
    reason: str

    @property
    def in_storm(self) -> np.ndarray:
        """Mask of the flashes that belong to a storm."""
        return self.labels >= 0


def threshold_ladder(peak: float, start: float = 1.0) -> tuple[float, ...]:
    """Thresholds 1, 2, 5, 10, 20, 50, ... (times ``start``) up to ``peak`` (at least the first): equal steps in log.

    A storm's core is found at whichever step separates it from its neighbours, whether the hour is quiet (a few
    flashes per cell) or a day's sum (thousands).
    """
    if not start > 0:
        raise ValueError(f"start={start!r} must be > 0")
    ladder, decade = [], start
    while True:
        for step in _LADDER_STEPS:
            level = step * decade
            if level > max(peak, start):
                return tuple(ladder)
            ladder.append(level)
        decade *= 10.0


def segment_storms(
    x_km,
    y_km,
    *,
    cell_km: float = DEFAULT_CELL_KM,
    sigma_cells: float = DEFAULT_SIGMA_CELLS,
    thresholds: Sequence[float] | None = None,
    min_cells: int = DEFAULT_MIN_CELLS,
) -> StormSegmentation:
    """The storms of flashes at ``(x_km, y_km)``: dense regions of a flash-count grid, split at saddles.

    Parameters
    ----------
    x_km, y_km : array-like of shape (n_flashes,)
        Flash positions on an equal-area plane, in km (``preprocess``'s ``x_km``, ``y_km``).
    cell_km : float, default 10.0
        Side of the grid's square cells, in km: the scale of a storm cell's core.
    sigma_cells : float, default 0.5
        Standard deviation, in cells, of the Gaussian smoothing of the counts before thresholding (5 km at 10 km
        cells). A lone flash then counts about 0.6 in its cell: below the first threshold, so it is not a storm.
    thresholds : sequence of float, optional
        Increasing flash counts per cell of the smoothed grid; a storm's core is a region at or above one of them.
        Default: :func:`threshold_ladder` from 1 flash per cell up to the grid's maximum.
    min_cells : int, default 2
        Cells a region needs at or above a threshold to be a core: two 10-km cells, 200 km² (tobac's
        ``n_min_threshold=1``, which keeps regions of more than one cell). A few flashes alone in one cell are then not
        a storm; about 12 or more are, as smoothing lifts the cell's neighbours to a flash each.

    Returns
    -------
    StormSegmentation

    Notes
    -----
    Only the cells with flashes and their neighbours within the smoothing's reach are held (a sparse grid), so time
    and memory grow with the area the flashes cover, not with the box around them: O(n log n) for the flashes,
    O(m × thresholds) for the m cells near flashes.
    """
    x = np.asarray(x_km, dtype=np.float64).reshape(-1)
    y = np.asarray(y_km, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x_km has {x.size} values, y_km has {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x_km and y_km must be finite")
    if not cell_km > 0:
        raise ValueError(f"cell_km={cell_km!r} must be > 0")
    if not sigma_cells >= 0:
        raise ValueError(f"sigma_cells={sigma_cells!r} must be >= 0")
    if min_cells < 1:
        raise ValueError(f"min_cells={min_cells!r} must be >= 1")
    if x.size == 0:
        return _segmentation(np.empty(0, dtype=np.intp), x, y, "no flashes, so no storms")

    grid = _StormGrid.of(x, y, cell_km, sigma_cells)
    ladder = threshold_ladder(float(grid.density.max())) if thresholds is None else _check_thresholds(thresholds)
    storms = grid.storms(grid.cores(ladder, min_cells))
    labels = storms[grid.cell_of_flash].astype(np.intp) - 1
    reason = (
        f"{{k}} storms: cores of the flash count on {cell_km:g} km cells (smoothed σ={sigma_cells * cell_km:g} km) "
        f"at or above {_levels(ladder)} flashes per cell, each grown over the cells with flashes around it"
    )
    return _segmentation(labels, x, y, reason)


def segmentation_from_labels(labels, x_km, y_km, reason: str) -> StormSegmentation:
    """The segmentation whose per-flash storm labels were kept (``flash_features.storm``), rebuilt with its centres.

    Parameters
    ----------
    labels : array-like of int, shape (n_flashes,)
        Storm of each flash as :func:`segment_storms` gave it (-1 outside every storm).
    x_km, y_km : array-like of shape (n_flashes,)
        The positions that were segmented.
    reason : str
        The segmentation's reason, kept with the labels.
    """
    labels = np.asarray(labels, dtype=np.intp).reshape(-1)
    x = np.asarray(x_km, dtype=np.float64).reshape(-1)
    y = np.asarray(y_km, dtype=np.float64).reshape(-1)
    if not x.shape == y.shape == labels.shape:
        raise ValueError(f"{labels.size} labels for {x.size} x_km and {y.size} y_km values")
    return replace(_segmentation(labels, x, y, ""), reason=reason)


def storm_kmeans(X, segmentation: StormSegmentation, *, max_iter: int = 300, tol: float = 1e-4) -> KMeansResult:
    """k-means of ``X`` with k = the number of storms, started from the storms' centres in ``X``'s own space.

    Parameters
    ----------
    X : array-like of shape (n_flashes, n_features)
        Features of the same flashes, in the same order, as the segmentation (e.g. z-scored ``f_x, f_y[, f_t]``).
    segmentation : StormSegmentation
        From :func:`segment_storms` on these flashes.
    max_iter, tol
        As for :func:`lightning_eda.ml.kmeans`.

    Returns
    -------
    KMeansResult
        Centroids of one Lloyd run over the flashes in storms (no restarts: the start is the storms, not chance);
        labels of every flash, those outside any storm included, to its nearest centroid; inertia over all flashes.

    Raises
    ------
    ValueError
        When the segmentation is of other flashes or found no storm (k-means needs k >= 1).

    Notes
    -----
    The flashes outside storms are scattered (a lone flash far from any storm, a sparse fringe); were they in the
    Lloyd run, a few far ones would pull a storm's centroid off its core and move the borders between neighbouring
    storms. They are labelled afterwards instead, with a k-d tree of the centroids (O(n log k)).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(segmentation.labels):
        raise ValueError(f"X has shape {X.shape}; expected ({len(segmentation.labels)}, n_features) as segmented")
    if segmentation.k == 0:
        raise ValueError(f"no storm to start k-means from: {segmentation.reason}")
    inside = segmentation.in_storm
    storm_of = segmentation.labels[inside]
    centres = (
        np.column_stack([np.bincount(storm_of, weights=column, minlength=segmentation.k) for column in X[inside].T])
        / segmentation.n_flashes[:, None]
    )
    fit = kmeans(X[inside], segmentation.k, init=centres, max_iter=max_iter, tol=tol)
    distances, labels = cKDTree(fit.centroids).query(X)
    labels = labels.astype(np.intp)
    distances.setflags(write=False)
    labels.setflags(write=False)
    return KMeansResult(
        centroids=fit.centroids, labels=labels, inertia=float(np.dot(distances, distances)), n_iter=fit.n_iter
    )


def k_range_around(k: int, *, low: float = 0.5, high: float = 1.5, steps: int = 10) -> list[int]:
    """About ``steps`` whole ks from ``low·k`` to ``high·k``, ``k`` among them, for the elbow and silhouette curves.

    The curves then describe the neighbourhood of the storms' count, whatever its size, instead of a fixed 2..40.
    """
    if k < 1:
        raise ValueError(f"k={k!r} must be >= 1")
    if not 0 < low <= 1 <= high:
        raise ValueError(f"low={low!r} and high={high!r} must satisfy 0 < low <= 1 <= high")
    if steps < 2:
        raise ValueError(f"steps={steps!r} must be >= 2")
    ks = np.rint(np.linspace(max(1.0, low * k), high * k, steps)).astype(int)
    return sorted({int(v) for v in ks} | {k})


@dataclass(frozen=True)
class _StormGrid:
    """The cells with flashes and their neighbours within the smoothing's reach, as a graph of 8-neighbours.

    Cell ``i`` is at ``(rows[i], cols[i])``; ``edges`` joins neighbouring cells (each pair once).
    """

    rows: np.ndarray
    cols: np.ndarray
    density: np.ndarray  # smoothed flash count of each cell
    occupied: np.ndarray  # the cell holds a flash
    edges: np.ndarray  # (n_edges, 2) cell indices
    cell_of_flash: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, cell_km: float, sigma_cells: float) -> _StormGrid:
        ix = np.floor(x / cell_km).astype(np.int64)
        iy = np.floor(y / cell_km).astype(np.int64)
        offsets, weights = _gaussian_stencil(sigma_cells)
        reach = int(np.abs(offsets).max()) + 1
        width = int(ix.max() - ix.min()) + 2 * reach + 1
        flash_keys = (iy - iy.min() + reach) * width + (ix - ix.min() + reach)
        occupied_keys, flash_to_occupied, counts = np.unique(flash_keys, return_inverse=True, return_counts=True)
        stencil = offsets[:, 0] * width + offsets[:, 1]
        keys, spread = np.unique((occupied_keys[:, None] + stencil[None, :]).ravel(), return_inverse=True)
        density = np.bincount(spread, weights=(counts[:, None] * weights[None, :]).ravel(), minlength=len(keys))
        occupied = np.zeros(len(keys), dtype=bool)
        occupied_cells = np.searchsorted(keys, occupied_keys)
        occupied[occupied_cells] = True
        pairs = []
        for step in (1, width - 1, width, width + 1):  # the 4 neighbours after a cell; the others see it
            found = np.searchsorted(keys, keys + step)
            hit = found < len(keys)
            hit[hit] = keys[found[hit]] == keys[hit] + step
            pairs.append(np.column_stack([np.flatnonzero(hit), found[hit]]))
        return cls(
            rows=keys // width,
            cols=keys % width,
            density=density,
            occupied=occupied,
            edges=np.concatenate(pairs),
            cell_of_flash=occupied_cells[flash_to_occupied.reshape(-1)],
        )

    def regions(self, cells: np.ndarray) -> tuple[np.ndarray, int]:
        """Connected regions (8-neighbours) of the ``cells`` mask: region ids 1..n for its cells, 0 for the others."""
        both = cells[self.edges[:, 0]] & cells[self.edges[:, 1]]
        graph = coo_matrix(
            (np.ones(int(both.sum()), dtype=np.int8), (self.edges[both, 0], self.edges[both, 1])),
            shape=(len(cells), len(cells)),
        )
        _, component = connected_components(graph, directed=False)
        used, ids = np.unique(component[cells], return_inverse=True)
        regions = np.zeros(len(cells), dtype=np.int64)
        regions[cells] = ids.reshape(-1) + 1
        return regions, len(used)

    def cores(self, ladder: Sequence[float], min_cells: int) -> np.ndarray:
        """Core (1..k) of each cell, 0 outside cores.

        From the highest threshold down: a region of at least ``min_cells`` cells at or above the threshold becomes a
        core unless it contains a region already kept above it (a core, or a region that contains one), which then
        stands for it.
        """
        cores = np.zeros(len(self.density), dtype=np.int64)
        above = np.zeros(len(self.density), dtype=bool)  # cells of the regions kept so far, at their own threshold
        n_cores = 0
        for level in sorted(ladder, reverse=True):
            regions, n = self.regions(self.density >= level)
            if n == 0:
                continue
            covers = np.zeros(n + 1, dtype=bool)
            covers[regions[above]] = True
            new = (np.bincount(regions, minlength=n + 1) >= min_cells) & ~covers
            new[0] = False
            ids = np.cumsum(new) + n_cores
            fresh = new[regions]
            cores[fresh] = ids[regions[fresh]]
            n_cores += int(new.sum())
            keep = new | covers
            keep[0] = False
            above = keep[regions]
        return cores

    def storms(self, cores: np.ndarray) -> np.ndarray:
        """Storm (1..k, 0 for none) of each cell with flashes: the core of the nearest core cell in its patch.

        A patch is a connected group of cells with flashes; empty cells separate storms. A cell whose nearest core
        cell lies in another patch (or whose patch has no core) is in no storm.
        """
        patches, _ = self.regions(self.occupied)
        storms = np.zeros(len(cores), dtype=np.int64)
        core_cells = np.flatnonzero((cores > 0) & self.occupied)
        if len(core_cells) == 0:
            return storms
        cells = np.flatnonzero(self.occupied)
        _, nearest = cKDTree(np.column_stack([self.rows[core_cells], self.cols[core_cells]])).query(
            np.column_stack([self.rows[cells], self.cols[cells]])
        )
        nearest = core_cells[nearest]
        same_patch = patches[nearest] == patches[cells]
        storms[cells[same_patch]] = cores[nearest[same_patch]]
        return storms


def _gaussian_stencil(sigma_cells: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (row, col) and weights of a 2-D Gaussian smoothing, as ``scipy.ndimage.gaussian_filter`` makes it.

    The kernel is separable, truncated at 4 σ and normalised to sum 1, so smoothing keeps the number of flashes.
    σ = 0 is no smoothing.
    """
    radius = int(4.0 * sigma_cells + 0.5)
    steps = np.arange(-radius, radius + 1)
    line = np.exp(-0.5 * (steps / sigma_cells) ** 2) if sigma_cells > 0 else np.ones(1)
    line /= line.sum()
    dy, dx = np.meshgrid(steps, steps, indexing="ij")
    return np.column_stack([dy.ravel(), dx.ravel()]), np.outer(line, line).ravel()


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    ladder = tuple(float(t) for t in thresholds)
    if not ladder or not all(t > 0 for t in ladder) or any(b <= a for a, b in itertools.pairwise(ladder)):
        raise ValueError(f"thresholds={list(thresholds)!r} must be increasing and > 0")
    return ladder


def _segmentation(labels: np.ndarray, x: np.ndarray, y: np.ndarray, reason: str) -> StormSegmentation:
    """Number the storms holding flashes 0..k-1 and compute their centres."""
    inside = labels >= 0
    used, labels_inside = np.unique(labels[inside], return_inverse=True)
    k = len(used)
    labels = labels.copy()
    labels[inside] = labels_inside
    n_flashes = np.bincount(labels_inside, minlength=k).astype(np.int64)
    centres = np.column_stack(
        [np.bincount(labels_inside, weights=v[inside], minlength=k) / np.maximum(n_flashes, 1) for v in (x, y)]
    ).reshape(k, 2)
    for array in (labels, centres, n_flashes):
        array.setflags(write=False)
    logger.debug("segment_storms: %d storms hold %d of %d flashes", k, int(inside.sum()), len(labels))
    return StormSegmentation(k=k, labels=labels, centres_km=centres, n_flashes=n_flashes, reason=reason.format(k=k))


def _levels(ladder: Sequence[float]) -> str:
    shown = [f"{t:g}" for t in ladder]
    return ", ".join(shown) if len(shown) <= 4 else f"{shown[0]}, {shown[1]}, {shown[2]}, ... {shown[-1]}"
