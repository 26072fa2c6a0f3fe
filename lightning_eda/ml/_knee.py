"""Find the elbow of a decreasing convex curve, such as k-means inertia against k (Kneedle)."""

from __future__ import annotations

import numpy as np

__all__ = ["find_knee"]

#: Largest distance below the chord (in normalised units) still treated as no knee: absorbs rounding on straight lines.
_MIN_KNEE_DEPTH = 1e-9


def find_knee(ks, values):
    """Return the ``k`` at the elbow of a decreasing convex curve, or ``None`` when the curve has no elbow.

    Kneedle, offline form: both axes are scaled to [0, 1], so the curve runs from (0, 1) to (1, 0) and its chord is
    ``y = 1 - x``; the knee is the point farthest below the chord, i.e. maximising ``1 - x - y``.

    Parameters
    ----------
    ks : sequence of int or float, length n
        Abscissae (numbers of clusters), distinct; need not be sorted.
    values : sequence of float, length n
        Curve values at ``ks`` (e.g. inertia from :func:`lightning_eda.ml.elbow_sweep`), finite.

    Returns
    -------
    The element of ``ks`` at the knee (ties: the smallest such ``k``), or ``None`` when there are fewer than three
    points, when the curve does not decrease from its first to its last point (flat or increasing curves), or when no
    point lies below the chord (a straight line, or a concave curve, which has no elbow of this kind).

    Raises
    ------
    ValueError
        If the lengths differ, ``ks`` repeats a value, or a value is not finite.

    Notes
    -----
    O(n log n) for the sort. Unlike the online detector of the paper there is no sensitivity threshold: on a
    noisy or nearly straight curve the deepest point is returned however shallow, as long as it is below the chord.
    A curve that is not monotone (k-means can end in a worse local optimum for a larger k) is still handled, since
    only the end points define the scaling.

    References
    ----------
    .. [1] Satopää, V., Albrecht, J., Irwin, D. and Raghavan, B. (2011). "Finding a 'Kneedle' in a Haystack:
       Detecting Knee Points in System Behavior". 31st International Conference on Distributed Computing Systems
       Workshops, 166-171.

    Examples
    --------
    >>> find_knee([1, 2, 3, 4, 5], [100.0, 30.0, 20.0, 15.0, 12.0])
    2
    >>> find_knee([1, 2, 3], [3.0, 2.0, 1.0]) is None
    True
    """
    ks_list = list(ks)
    x = np.asarray(ks_list, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"ks and values must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"ks and values must be finite, got ks={ks_list} values={y.tolist()}")
    if np.unique(x).size != x.size:
        raise ValueError(f"ks has repeated values: {ks_list}")
    if x.size < 3:
        return None
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if not y[0] > y[-1]:
        return None
    x_norm = (x - x[0]) / (x[-1] - x[0])
    y_norm = (y - y[-1]) / (y[0] - y[-1])
    depth = 1.0 - x_norm - y_norm
    best = int(np.argmax(depth))
    if depth[best] <= _MIN_KNEE_DEPTH:
        return None
    return ks_list[int(order[best])]
