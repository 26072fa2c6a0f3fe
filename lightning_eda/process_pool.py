"""One pool of worker processes per process, shared by the steps that use every core (decoding, gridding).

Spawned, never forked (Dagster's processes run threads), kept between hours so a backfill pays the spawn cost once,
and each worker exits when its parent is gone (a SIGKILLed run leaves no orphans). In a daemonic process (a Celery
worker's pool process) no children may start: the work then runs in the calling process, and the deployment scales
with its workers instead. No Dagster here.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

SPAWN = multiprocessing.get_context("spawn")
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_workers = 0


def default_workers() -> int:
    """The CPUs this process may run on, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


def may_start_processes() -> bool:
    """False in a daemonic process, which may not start children."""
    return not multiprocessing.current_process().daemon


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """The process's pool of ``workers`` processes (a new one when the count changes)."""
    global _pool, _pool_workers
    with _lock:
        if _pool is None or _pool_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=SPAWN, initializer=_exit_with_parent, initargs=(os.getpid(),)
            )
            _pool_workers = workers
        return _pool


def discard_pool() -> None:
    """Drop the pool (after a worker died and broke it); the next :func:`shared_pool` starts a new one."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def _exit_with_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()
