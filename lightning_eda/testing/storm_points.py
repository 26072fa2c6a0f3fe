"""Lon/lat points shaped like a scene of flashes, for the k-means and silhouette tests and benchmarks."""

from __future__ import annotations

import numpy as np


def flash_like(n: int, k: int = 6, seed: int = 0, max_spread: float = 1.5) -> np.ndarray:
    """``n`` lon/lat points in ``k`` storm cells of varied size (Dirichlet shares) and spread (0.05 to ``max_spread``
    degrees), over the continental US, in random order."""
    rng = np.random.default_rng(seed)
    centres = np.column_stack([rng.uniform(-110, -70, k), rng.uniform(20, 45, k)])
    sizes = rng.multinomial(n, rng.dirichlet(np.full(k, 1.5)))
    spread = rng.uniform(0.05, max_spread, k)
    X = np.concatenate([c + s * rng.standard_normal((m, 2)) for c, s, m in zip(centres, spread, sizes, strict=True)])
    return X[rng.permutation(n)]
