"""Chunk sizes and a small thread pool for the NumPy kernels of :mod:`lightning_eda.ml`.

NumPy releases the GIL inside its loops and BLAS calls, so Python threads working on different row chunks keep as many
cores busy. Two rules keep that fast and reproducible:

* Work is split into a fixed list of chunks and results come back in chunk order, so every floating-point sum is done
  in the same order whatever the thread timing: results depend on the chunk size, never on the scheduling.
* BLAS must not start threads of its own. Our products are small (a few centres times a chunk of points, or one
  distance block times a few label columns) and are already spread over our threads; OpenBLAS would split each of
  them again over threads that spin while they wait, which on a two-core machine, worse on a busy one, makes k-means
  several times slower (measured 7-9 s instead of 1 s at a million points). While a runner is active BLAS is
  therefore limited to one thread through ``threadpoolctl``, the standard tool for this (scikit-learn depends on it).

How many threads: ``LIGHTNING_EDA_THREADS`` (a positive integer) when set, otherwise the CPUs this process may run
on (``os.sched_getaffinity(0)`` where available, else ``os.cpu_count()``). Set it below the core count to leave cores
to other work, or to 1 for no worker threads at all. Results do not depend on it (see the first rule above).

``threadpoolctl`` only changes speed, never results. Without it, our threads are used only if the environment already
keeps BLAS to one thread (``OPENBLAS_NUM_THREADS=1``, ``OMP_NUM_THREADS=1`` or ``MKL_NUM_THREADS=1``); otherwise
everything runs in the calling thread and a warning says how to get the fast path. The limit is process-wide: other
threads of the process that call BLAS meanwhile run it on one thread too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Environment variable that sets the number of worker threads (default: the CPUs the process may run on).
THREADS_ENV = "LIGHTNING_EDA_THREADS"

_blas_controller = None
_warned = False


def available_cpus() -> int:
    """Number of CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Worker threads of a runner: ``LIGHTNING_EDA_THREADS`` when set, else :func:`available_cpus`.

    Read at every call, so a change of the variable applies to the next runner. A value that is not a positive
    integer raises ``ValueError`` naming it rather than silently falling back.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return available_cpus()
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{THREADS_ENV}={value!r} must be a positive integer (the number of worker threads)")
    return threads


def _blas_controller_or_none():
    """Return a cached ``threadpoolctl.ThreadpoolController``, or ``None`` when ``threadpoolctl`` is missing."""
    global _blas_controller, _warned
    if _blas_controller is None:
        try:
            import threadpoolctl
        except ImportError:
            if not _warned and not _blas_single_threaded_by_environment():
                logger.warning(
                    "threadpoolctl is not installed, so BLAS threads cannot be limited: lightning_eda.ml "
                    "runs on one thread. Install threadpoolctl or set OPENBLAS_NUM_THREADS=1 for the "
                    "multi-threaded path."
                )
                _warned = True
            return None
        _blas_controller = threadpoolctl.ThreadpoolController()
    return _blas_controller


def _blas_single_threaded_by_environment() -> bool:
    return any(
        os.environ.get(name, "").strip() == "1"
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    )


def rows_per_chunk(bytes_per_row: int, budget_bytes: int, n_rows: int) -> int:
    """Rows per chunk so that a chunk's temporaries take about ``budget_bytes``: at least 1, at most ``n_rows``."""
    return int(max(1, min(n_rows, budget_bytes // max(1, bytes_per_row))))


def chunk_bounds(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Split ``range(n_rows)`` into consecutive ``(start, stop)`` pairs of at most ``chunk_rows`` rows."""
    return [(start, min(n_rows, start + chunk_rows)) for start in range(0, n_rows, chunk_rows)]


class ChunkRunner:
    """Run ``fn(i)`` for ``i in range(n_items)`` on a few threads; results come back as a list in item order.

    Items are dealt round-robin (worker ``t`` takes items ``t, t + T, t + 2T, ...``), which balances work when cost
    varies smoothly along the data and keeps the item-to-thread assignment fixed. Use as a context manager; one
    runner serves all the passes of one computation, so threads are started once.

    Parameters
    ----------
    n_threads : int or None, default=None
        Worker threads; ``None`` means :func:`default_threads`. Forced to 1 when BLAS may start
        threads of its own that cannot be limited (see the module notes).
    """

    def __init__(self, n_threads: int | None = None):
        wanted = default_threads() if n_threads is None else max(1, int(n_threads))
        self._controller = _blas_controller_or_none()
        if self._controller is None and not _blas_single_threaded_by_environment():
            wanted = 1
        self.n_threads = wanted
        self._stack = ExitStack()
        self._executor = None

    def __enter__(self) -> ChunkRunner:
        if self._controller is not None:
            # limit() applies the limit at once and restores the previous one on exit.
            self._stack.enter_context(self._controller.limit(limits=1, user_api="blas"))
        if self.n_threads > 1:
            self._executor = self._stack.enter_context(ThreadPoolExecutor(self.n_threads))
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()
        self._executor = None

    def map(self, fn: Callable[[int], T], n_items: int, parallel: bool = True) -> list[T]:
        """Return ``[fn(0), fn(1), ..., fn(n_items - 1)]``, computed on the worker threads.

        ``parallel=False`` computes them in the calling thread, for work too small to pay the hand-off to the
        threads (tens of microseconds per call, a millisecond and more on a busy machine). Results are the same.
        """
        if self._executor is None or n_items <= 1 or not parallel:
            return [fn(i) for i in range(n_items)]
        results: list = [None] * n_items
        n_workers = min(self.n_threads, n_items)

        def work(first: int) -> None:
            for i in range(first, n_items, n_workers):
                results[i] = fn(i)

        for future in [self._executor.submit(work, t) for t in range(n_workers)]:
            future.result()
        return results
