"""Joins and group-bys on int64 keys by sorting, for arrays of millions of rows.

NumPy's SIMD sort is an order of magnitude faster than a stable ``argsort`` or a hash-based ``unique`` on such keys
(7M random int64: ``np.sort`` 0.18 s, stable ``argsort`` 2.1 s; ``np.unique`` of 3M took 8.2 s), and searching
sorted values in sorted keys stays in the cache where unsorted probes miss it on every one. No Dagster here.
"""

from __future__ import annotations

import numpy as np


def lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The row of ``keys`` holding each of ``wanted``, -1 where none does (a join on a unique key: both sides sorted,
    then merged; searching unsorted values in millions of keys misses the cache on every probe)."""
    out = np.full(len(wanted), -1, dtype=np.int64)
    if not len(keys) or not len(wanted):
        return out
    ordered, order = sort_with_order(keys)
    wanted_sorted, wanted_order = sort_with_order(wanted)
    at = np.minimum(np.searchsorted(ordered, wanted_sorted), len(ordered) - 1)
    out[wanted_order] = np.where(ordered[at] == wanted_sorted, order[at], -1)
    return out


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values (a plain sort: NumPy's hash-based ``unique`` was 100× slower here)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def distinct_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted distinct values, the first row holding each, and each row's index into them."""
    ordered, order = sort_with_order(values)
    starts = np.r_[True, ordered[1:] != ordered[:-1]] if len(ordered) else np.zeros(0, dtype=bool)
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return ordered[starts], order[starts], inverse


def sort_with_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` sorted and the stable permutation that sorts them.

    When each key (less the smallest) and its row number fit in an int64 together, one ``np.sort`` of the pairs
    packed into it does it: NumPy's SIMD sort took 0.18 s on 7M random int64 keys where a stable ``argsort`` took
    2.1 s. Otherwise the stable ``argsort``.
    """
    keys = np.asarray(keys, dtype=np.int64)
    n = len(keys)
    if n == 0:
        return keys.copy(), np.zeros(0, dtype=np.int64)
    low, high = int(keys.min()), int(keys.max())
    row_bits = max(1, (n - 1).bit_length())
    if (high - low).bit_length() + row_bits <= 62:
        packed = (keys - low) << row_bits
        packed |= np.arange(n, dtype=np.int64)
        packed.sort()
        return (packed >> row_bits) + low, packed & ((1 << row_bits) - 1)
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def reduce_by_key(
    keys: np.ndarray, sums: dict[str, np.ndarray] | None = None, mins: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The sorted distinct ``keys`` and, for each, the sum of each array of ``sums`` and the minimum of ``mins``."""
    keys, order = sort_with_order(keys)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    out = {}
    for name, values in (sums or {}).items():
        values = np.asarray(values)[order]
        out[name] = np.add.reduceat(values, starts) if len(keys) else values
    for name, values in (mins or {}).items():
        values = np.asarray(values)[order]
        out[name] = np.minimum.reduceat(values, starts) if len(keys) else values
    return keys[starts], out


def sorted_contains(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in the sorted ``keys``."""
    if not len(keys):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return keys[at] == values
