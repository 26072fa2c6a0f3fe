"""Input checks shared by the public entry points of :mod:`lightning_eda.ml`.

The public functions validate once and hand trusted arrays to private routines, so every error a caller can cause is
raised here, with the offending value in the message.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_points(X, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 array of shape (n_samples, n_features).

    Raises ``ValueError`` for a wrong number of dimensions, no samples or features, complex values and NaN/inf.
    A 1-D array is rejected rather than guessed at: ``(n,)`` could be n samples of one feature or one sample of n
    features; the message says to call ``X.reshape(-1, 1)`` for the former.
    """
    if np.iscomplexobj(X):
        raise ValueError(f"{name} must be real-valued, got complex dtype {np.asarray(X).dtype}")
    try:
        arr = np.ascontiguousarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; could not convert it to float64: {exc}") from exc
    if arr.ndim != 2:
        hint = " Use X.reshape(-1, 1) for a single feature." if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D of shape (n_samples, n_features), got ndim={arr.ndim} with shape {arr.shape}.{hint}"
        )
    n_samples, n_features = arr.shape
    if n_samples == 0:
        raise ValueError(f"{name} is empty: n_samples=0 (shape {arr.shape}); at least one sample is required")
    if n_features == 0:
        raise ValueError(f"{name} has n_features=0 (shape {arr.shape}); at least one feature is required")
    finite = np.isfinite(arr)
    if not finite.all():
        n_bad = int(arr.size - np.count_nonzero(finite))
        first = np.unravel_index(int(np.argmin(finite)), arr.shape)
        raise ValueError(
            f"{name} contains {n_bad} non-finite value(s) (NaN or inf); the first is "
            f"{name}[{first[0]}, {first[1]}]={float(arr[first])!r}"
        )
    return arr


def check_int(value, name: str, *, minimum: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer (not a bool) ``>= minimum``; raise otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
    return value


def check_tol(tol) -> float:
    """Return ``tol`` as a finite float ``>= 0``; raise otherwise."""
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real):
        raise ValueError(f"tol must be a real number, got {tol!r} of type {type(tol).__name__}")
    tol = float(tol)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol={tol} must be finite and >= 0")
    return tol


def count_distinct_rows_at_least(X: np.ndarray, k: int) -> int:
    """Count distinct rows of ``X``, stopping early once at least ``k`` are found.

    Rows are compared bit for bit after adding ``0.0`` (which turns ``-0.0`` into ``0.0``). Growing prefixes are
    examined so that ordinary data, where the first few thousand rows already hold ``k`` distinct points, costs almost
    nothing; only data with fewer than ``k`` distinct points pays for a full sort, O(n log n).

    Returns
    -------
    int
        The number of distinct rows if it is below ``k``, otherwise some number ``>= k``.
    """
    n = X.shape[0]
    row_dtype = np.dtype((np.void, X.dtype.itemsize * X.shape[1]))
    stop = min(n, max(1024, 8 * k))
    while True:
        distinct = np.unique((X[:stop] + 0.0).view(row_dtype).ravel()).size
        if distinct >= k or stop == n:
            return distinct
        stop = min(n, 4 * stop)


def encode_labels(labels, n_samples: int, *, name: str = "labels") -> tuple[np.ndarray, int]:
    """Map arbitrary label values to codes ``0..n_labels-1``; check the length and the count of labels.

    Returns
    -------
    codes : ndarray of shape (n_samples,), dtype intp
    n_labels : int

    Raises
    ------
    ValueError
        If ``labels`` is not 1-D of length ``n_samples``, or the number of distinct labels is not between 2 and
        ``n_samples - 1`` inclusive (the silhouette is undefined otherwise; same rule as scikit-learn).
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got ndim={arr.ndim} with shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has n_samples={n_samples}")
    uniques, codes = np.unique(arr, return_inverse=True)
    n_labels = int(uniques.size)
    if not 2 <= n_labels <= n_samples - 1:
        raise ValueError(
            f"Number of labels is {n_labels} in {name} with n_samples={n_samples}. "
            f"Valid values are 2 to n_samples - 1 (inclusive)"
        )
    return codes.reshape(-1).astype(np.intp, copy=False), n_labels
