"""Quick benchmark of lightning_eda.ml against scikit-learn.

Times, with interleaved repetitions (ours, theirs, ours, theirs, ...) so that drifting machine load hits both alike:

* ``kmeans`` against ``sklearn.cluster.KMeans`` with the same parameters (k-means++, ``n_init``, ``max_iter``, ``tol``,
  same seed) on 2-D flash-like data (lon/lat storm cells of varied size and spread), n = 1e5 and 1e6;
* ``silhouette_sweep`` over k = 2..11 against one ``sklearn.metrics.silhouette_score`` call per k, n = 20,000;
* optionally (``--rss``) the peak resident memory of ``kmeans`` on 5M points, k = 10, in a fresh process.

Prints median times, ratios ours/sklearn (below 1 means we are faster), the inertia ratio, the largest silhouette
difference, the core count and library versions. Run: ``python benchmarks/bench_ml.py [--reps 3] [--rss]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np


def flash_like(n: int, k: int = 8, seed: int = 0) -> np.ndarray:
    """Lon/lat points in ``k`` storm cells of varied size (Dirichlet shares) and spread (0.05 to 1.5 degrees)."""
    rng = np.random.default_rng(seed)
    centres = np.column_stack([rng.uniform(-110, -70, k), rng.uniform(20, 45, k)])
    sizes = rng.multinomial(n, rng.dirichlet(np.full(k, 1.5)))
    spread = rng.uniform(0.05, 1.5, k)
    X = np.concatenate([c + s * rng.standard_normal((m, 2)) for c, s, m in zip(centres, spread, sizes)])
    return X[rng.permutation(n)]


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def environment() -> str:
    import sklearn
    import threadpoolctl

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    blas = [f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    env = {key: os.environ[key] for key in sorted(os.environ) if key.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return (f"cores available: {cpus} (os.cpu_count={os.cpu_count()}), load average {load}\n"
            f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
            f"BLAS: {', '.join(blas) or 'unknown'}\nthreading environment: {env or 'none set'}")


def bench_kmeans(n: int, k: int, n_init: int, reps: int) -> None:
    from sklearn.cluster import KMeans

    from lightning_eda.ml import kmeans

    X = flash_like(n, k=k, seed=1)
    ours_t, theirs_t, ratios = [], [], []
    for rep in range(reps):
        t_ours, result = timed(lambda: kmeans(X, k, n_init=n_init, seed=rep))
        t_theirs, model = timed(lambda: KMeans(n_clusters=k, init="k-means++", n_init=n_init, max_iter=300,
                                               tol=1e-4, random_state=rep).fit(X))
        ours_t.append(t_ours)
        theirs_t.append(t_theirs)
        ratios.append(result.inertia / model.inertia_)
        print(f"  rep {rep}: ours {t_ours:.3f} s ({result.n_iter} it), sklearn {t_theirs:.3f} s ({model.n_iter_} it), "
              f"inertia ratio {ratios[-1]:.6f}")
    ours, theirs = statistics.median(ours_t), statistics.median(theirs_t)
    print(f"kmeans n={n:,} k={k} n_init={n_init}: median ours {ours:.3f} s, sklearn {theirs:.3f} s, "
          f"time ratio ours/sklearn {ours / theirs:.2f}, inertia ratio ours/sklearn "
          f"min {min(ratios):.6f} max {max(ratios):.6f}")


def bench_silhouette(n: int, ks: range, reps: int) -> None:
    from sklearn.metrics import silhouette_score as sk_silhouette

    from lightning_eda.ml import kmeans, silhouette_sweep

    X = flash_like(n, k=8, seed=2)
    labels_by_k = {k: kmeans(X, k, n_init=1, seed=k).labels for k in ks}
    ours_t, theirs_t, diffs = [], [], []
    for rep in range(reps):
        t_ours, ours = timed(lambda: silhouette_sweep(X, labels_by_k))
        t_theirs, theirs = timed(lambda: {k: sk_silhouette(X, labels) for k, labels in labels_by_k.items()})
        ours_t.append(t_ours)
        theirs_t.append(t_theirs)
        diffs.append(max(abs(ours[k] - theirs[k]) for k in ks))
        print(f"  rep {rep}: ours {t_ours:.3f} s, sklearn {t_theirs:.3f} s, largest |difference| {diffs[-1]:.2e}")
    ours, theirs = statistics.median(ours_t), statistics.median(theirs_t)
    print(f"silhouette n={n:,} k={ks.start}..{ks.stop - 1}: median ours (one sweep) {ours:.3f} s, sklearn (per k) "
          f"{theirs:.3f} s, time ratio ours/sklearn {ours / theirs:.3f} (speed-up {theirs / ours:.1f}x), largest "
          f"|difference| {max(diffs):.2e}")


_RSS_CODE = """
import time, numpy as np
from lightning_eda.ml import kmeans


def high_water_mib():
    # VmHWM belongs to this process image (ru_maxrss would include the parent's peak, inherited through fork)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


rng = np.random.default_rng(0)
n, k = {n}, {k}
centres = np.column_stack([rng.uniform(-110, -70, k), rng.uniform(20, 45, k)])
cell = rng.integers(0, k, n)
X = rng.standard_normal((n, 2))
X *= rng.uniform(0.05, 1.5, k)[cell][:, None]
X += centres[cell]
del cell
before = high_water_mib()
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # reset the high-water mark to the current RSS
start = time.perf_counter()
result = kmeans(X, k, n_init={n_init}, seed=0)
elapsed = time.perf_counter() - start
print(f"{{high_water_mib():.0f}} {{before:.0f}} {{elapsed:.2f}} {{result.n_iter}}")
"""


def bench_rss(n: int, k: int, n_init: int) -> None:
    out = subprocess.run([sys.executable, "-c", _RSS_CODE.format(n=n, k=k, n_init=n_init)], check=True,
                         capture_output=True, text=True).stdout.split()
    peak, before, elapsed, n_iter = out
    print(f"kmeans n={n:,} k={k} n_init={n_init}: peak RSS during kmeans {peak} MiB, X itself "
          f"{n * 2 * 8 / 2**20:.0f} MiB (peak while generating the data: {before} MiB), {elapsed} s, "
          f"{n_iter} iterations")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each k-means timing (default 3)")
    parser.add_argument("--silhouette-reps", type=int, default=2, help="repetitions of the silhouette timing")
    parser.add_argument("--n-init", type=int, default=3, help="n_init for both k-means (default 3)")
    parser.add_argument("--rss", action="store_true", help="also measure peak RSS of kmeans on 5M points, k=10")
    parser.add_argument("--single-thread", action="store_true",
                        help="one thread for both sides (our pool, OpenMP, BLAS): compares work per core, which a "
                             "busy machine distorts less")
    parser.add_argument("--skip-silhouette", action="store_true", help="time k-means only")
    args = parser.parse_args()
    limits = contextlib.nullcontext()
    if args.single_thread:
        import sklearn.cluster  # noqa: F401  (load scikit-learn's BLAS and OpenMP before limiting them)
        import sklearn.metrics  # noqa: F401
        import threadpoolctl

        import lightning_eda.ml._parallel

        lightning_eda.ml._parallel.MAX_THREADS = 1
        limits = threadpoolctl.threadpool_limits(limits=1)
        print("single-thread mode: our pool, OpenMP and BLAS limited to one thread")
    with limits:
        print(environment())
        for n in (100_000, 1_000_000):
            bench_kmeans(n, 8, args.n_init, args.reps)
        if not args.skip_silhouette:
            bench_silhouette(20_000, range(2, 12), args.silhouette_reps)
    if args.rss:
        bench_rss(5_000_000, 10, args.n_init)


if __name__ == "__main__":
    main()
