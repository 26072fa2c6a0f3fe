"""Benchmark of lightning_eda.ml against scikit-learn, and its memory.

Times, with interleaved repetitions (ours, theirs, ours, theirs, ...) so that drifting machine load hits both alike:

* ``kmeans`` against ``sklearn.cluster.KMeans`` with the same parameters (k-means++, ``n_init``, ``max_iter``, ``tol``,
  same seed) on 2-D flash-like data (lon/lat storm cells of varied size and spread), n = 1e5 and 1e6, k = 8;
* ``silhouette_sweep`` over k = 2..11 against one ``sklearn.metrics.silhouette_score`` call per k, n = 20,000;

and, each in a fresh process so that nothing else inflates the peak:

* ``silhouette_sweep`` alone over k = 2..11 at n = 100,000 (labels from our ``kmeans``): time, peak RSS increase
  during the sweep and tracemalloc's peak of the allocations made during it (NumPy reports its buffers to tracemalloc);
* the peak resident memory of ``kmeans`` on 5M points, k = 10.

Prints median times, ratios ours/sklearn (below 1 means we are faster), the inertia ratio, the largest silhouette
difference, the core count, load average and library versions, then a summary table against the targets; writes the
report to ``benchmarks/results/ml.txt``. Run from the project root: ``python benchmarks/bench_ml.py [--reps 3]``
(``--skip-memory`` leaves out the two fresh-process measurements; ``--no-write`` keeps the results file as it is).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tracemalloc

import numpy as np
from _common import ROOT, Report, high_water_mib, load_average, machine, reset_high_water, rss_mib, timed, versions

from lightning_eda.testing.storm_points import flash_like

REPORT = Report("ml")
say = REPORT.say


def environment() -> str:
    import threadpoolctl

    blas = [
        f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
        for i in threadpoolctl.threadpool_info()
        if i["user_api"] == "blas"
    ]
    env = {key: os.environ[key] for key in sorted(os.environ) if key.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    return (
        f"{machine()} (os.cpu_count={os.cpu_count()})\n{versions('numpy', 'sklearn')}, "
        f"BLAS: {', '.join(blas) or 'unknown'}\nthreading environment: {env or 'none set'}"
    )


def bench_kmeans(n: int, k: int, n_init: int, reps: int) -> dict:
    from sklearn.cluster import KMeans

    from lightning_eda.ml import kmeans

    X = flash_like(n, k=k, seed=1)
    ours_t, theirs_t, ratios = [], [], []
    for rep in range(reps):
        t_ours, result = timed(functools.partial(kmeans, X, k, n_init=n_init, seed=rep))
        sklearn_kmeans = KMeans(n_clusters=k, init="k-means++", n_init=n_init, max_iter=300, tol=1e-4, random_state=rep)
        t_theirs, model = timed(functools.partial(sklearn_kmeans.fit, X))
        ours_t.append(t_ours)
        theirs_t.append(t_theirs)
        ratios.append(result.inertia / model.inertia_)
        say(
            f"  rep {rep}: ours {t_ours:.3f} s ({result.n_iter} it), sklearn {t_theirs:.3f} s ({model.n_iter_} it), "
            f"inertia ratio {ratios[-1]:.6f}, load {load_average()}"
        )
    ours, theirs = statistics.median(ours_t), statistics.median(theirs_t)
    say(
        f"kmeans n={n:,} k={k} n_init={n_init}: median ours {ours:.3f} s, sklearn {theirs:.3f} s, "
        f"time ratio ours/sklearn {ours / theirs:.2f}, inertia ratio ours/sklearn "
        f"min {min(ratios):.6f} max {max(ratios):.6f}"
    )
    return {
        "n": n,
        "ours": ours,
        "theirs": theirs,
        "time_ratio": ours / theirs,
        "inertia_max": max(ratios),
        "inertia_min": min(ratios),
    }


def bench_silhouette(n: int, ks: range, reps: int) -> dict:
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
        say(
            f"  rep {rep}: ours {t_ours:.3f} s, sklearn {t_theirs:.3f} s, largest |difference| {diffs[-1]:.2e}, "
            f"load {load_average()}"
        )
    ours, theirs = statistics.median(ours_t), statistics.median(theirs_t)
    say(
        f"silhouette n={n:,} k={ks.start}..{ks.stop - 1}: median ours (one sweep) {ours:.3f} s, sklearn (per k) "
        f"{theirs:.3f} s, time ratio ours/sklearn {ours / theirs:.3f} (speed-up {theirs / ours:.1f}x), largest "
        f"|difference| {max(diffs):.2e}"
    )
    return {"n": n, "ours": ours, "theirs": theirs, "speedup": theirs / ours, "diff": max(diffs)}


# The fresh-process measurements run this script again with a first argument naming one of these; each prints its
# figures as one JSON line.


def rss_child(n: int, k: int, n_init: int) -> dict:
    """``bench_ml.py _rss N K N_INIT``: kmeans on N points, and the peak resident set during it."""
    from lightning_eda.ml import kmeans

    rng = np.random.default_rng(0)
    centres = np.column_stack([rng.uniform(-110, -70, k), rng.uniform(20, 45, k)])
    cell = rng.integers(0, k, n)
    X = rng.standard_normal((n, 2))
    X *= rng.uniform(0.05, 1.5, k)[cell][:, None]
    X += centres[cell]
    del cell
    before = high_water_mib()
    reset_high_water()
    seconds, result = timed(lambda: kmeans(X, k, n_init=n_init, seed=0))
    return {"peak_mib": high_water_mib(), "before_mib": before, "seconds": seconds, "n_iter": result.n_iter}


def sweep_child(n: int, k_lo: int, k_hi: int) -> dict:
    """``bench_ml.py _sweep N K_LO K_HI``: silhouette_sweep alone, its time, peak resident set and traced peak."""
    from lightning_eda.ml import kmeans, silhouette_sweep

    X = flash_like(n, k=8, seed=2)
    labels_by_k = {k: kmeans(X, k, n_init=1, seed=k).labels for k in range(k_lo, k_hi)}
    before = rss_mib()
    reset_high_water()
    seconds, scores = timed(lambda: silhouette_sweep(X, labels_by_k))
    peak = high_water_mib()
    # a second, traced sweep: tracemalloc sees every NumPy buffer (its own cost stays out of the timing above)
    tracemalloc.start()
    traced_scores = silhouette_sweep(X, labels_by_k)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "before_mib": before,
        "peak_mib": peak,
        "seconds": seconds,
        "traced_peak_mib": traced_peak / 2**20,
        "x_mib": X.nbytes / 2**20,
        "same": scores == traced_scores,
        "scores": {str(k): s for k, s in scores.items()},
    }


CHILDREN = {"_rss": rss_child, "_sweep": sweep_child}


def in_fresh_process(name: str, *args: int) -> dict:
    """Run ``CHILDREN[name](*args)`` in a fresh interpreter (nothing else inflates its peak) and return its figures."""
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_ml.py"), name, *map(str, args)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout)


def bench_rss(n: int, k: int, n_init: int) -> dict:
    out = in_fresh_process("_rss", n, k, n_init)
    say(
        f"kmeans n={n:,} k={k} n_init={n_init}: peak RSS during kmeans {out['peak_mib']:.0f} MiB, X itself "
        f"{n * 2 * 8 / 2**20:.0f} MiB (peak while generating the data: {out['before_mib']:.0f} MiB), "
        f"{out['seconds']:.2f} s, {out['n_iter']} iterations, load {load_average()}"
    )
    return {"n": n, "k": k, "peak_mib": out["peak_mib"], "x_mib": n * 2 * 8 / 2**20}


def bench_sweep_alone(n: int, ks: range) -> dict:
    from lightning_eda.ml._silhouette import _SUMS_BYTES

    out = in_fresh_process("_sweep", n, ks.start, ks.stop)
    increase = out["peak_mib"] - out["before_mib"]
    best = max(out["scores"], key=out["scores"].get)
    say(
        f"silhouette_sweep alone n={n:,} k={ks.start}..{ks.stop - 1} (fresh process): {out['seconds']:.2f} s; "
        f"peak RSS increase during the sweep {increase:.0f} MiB (RSS {out['before_mib']:.0f} -> peak "
        f"{out['peak_mib']:.0f} MiB); tracemalloc peak of its allocations {out['traced_peak_mib']:.0f} MiB "
        f"(the library's budget for the n-by-K arrays: {_SUMS_BYTES / 2**20:.0f} MiB; X itself "
        f"{out['x_mib']:.1f} MiB; a full distance matrix would be {n * n * 8 / 2**30:.0f} GiB); best k={best} "
        f"({out['scores'][best]:.4f}); traced run identical: {out['same']}; load {load_average()}"
    )
    return {
        "n": n,
        "seconds": out["seconds"],
        "increase_mib": increase,
        "traced_mib": out["traced_peak_mib"],
        "budget_mib": _SUMS_BYTES / 2**20,
    }


def summary(kmeans_rows: list[dict], silhouette: dict | None, sweep: dict | None, rss: dict | None) -> str:
    """The ratios and figures side by side with the targets of the issue (2-core machine)."""
    rows = []

    def row(what: str, value: str, target: str, met: bool | None) -> None:
        rows.append((what, value, target, "-" if met is None else ("met" if met else "NOT met")))

    for r in kmeans_rows:
        row(
            f"kmeans n={r['n']:,} k=8: time ratio ours/sklearn",
            f"{r['time_ratio']:.2f}",
            "<= 1.0",
            r["time_ratio"] <= 1.0,
        )
        row(
            f"kmeans n={r['n']:,} k=8: inertia ratio (worst rep)",
            f"{r['inertia_max']:.6f}",
            "<= 1.001",
            r["inertia_max"] <= 1.001,
        )
    if silhouette:
        row(
            f"silhouette_sweep n={silhouette['n']:,} k=2..11: speed-up over per-k sklearn",
            f"{silhouette['speedup']:.1f}x",
            ">= 20x",
            silhouette["speedup"] >= 20,
        )
        row(
            "silhouette_sweep: largest |difference| from sklearn",
            f"{silhouette['diff']:.1e}",
            "<= 1e-6",
            silhouette["diff"] <= 1e-6,
        )
    if sweep:
        row(f"silhouette_sweep alone n={sweep['n']:,} k=2..11: time", f"{sweep['seconds']:.1f} s", "-", None)
        row(
            f"silhouette_sweep alone n={sweep['n']:,}: peak RSS increase (tracemalloc peak)",
            f"{sweep['increase_mib']:.0f} MiB ({sweep['traced_mib']:.0f} MiB)",
            "bounded",
            sweep["traced_mib"] <= 1.5 * sweep["budget_mib"],
        )
    if rss:
        row(
            f"kmeans n={rss['n']:,} k={rss['k']}: peak RSS",
            f"{rss['peak_mib']:.0f} MiB",
            "< 1 GB (954 MiB)",
            rss["peak_mib"] * 2**20 < 1e9,
        )
    widths = [max(len(r[i]) for r in rows + [("measure", "value", "target", "")]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(("measure", "value", "target", ""), widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each k-means timing (default 3)")
    parser.add_argument("--silhouette-reps", type=int, default=2, help="repetitions of the silhouette timing")
    parser.add_argument("--n-init", type=int, default=3, help="n_init for both k-means (default 3)")
    parser.add_argument(
        "--skip-memory",
        action="store_true",
        help="leave out the fresh-process measurements (sweep at n=100,000; kmeans RSS at 5M)",
    )
    parser.add_argument(
        "--single-thread",
        action="store_true",
        help="one thread for both sides (our pool, OpenMP, BLAS): compares work per core, which a "
        "busy machine distorts less",
    )
    parser.add_argument("--skip-silhouette", action="store_true", help="leave out both silhouette measurements")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {REPORT.path.relative_to(ROOT)}")
    args = parser.parse_args()
    limits = contextlib.nullcontext()
    if args.single_thread:
        import sklearn.cluster  # noqa: F401  (load scikit-learn's BLAS and OpenMP before limiting them)
        import sklearn.metrics  # noqa: F401
        import threadpoolctl

        from lightning_eda.ml._parallel import THREADS_ENV

        os.environ[THREADS_ENV] = "1"  # read by each runner as it starts
        limits = threadpoolctl.threadpool_limits(limits=1)
        say(
            "single-thread mode: our pool, OpenMP and BLAS limited to one thread (the fresh-process measurements "
            "still use the defaults)"
        )
    silhouette = sweep = rss = None
    with limits:
        say(environment())
        say()
        say(f"1. kmeans against sklearn.cluster.KMeans (median of {args.reps}, interleaved)")
        kmeans_rows = [bench_kmeans(n, 8, args.n_init, args.reps) for n in (100_000, 1_000_000)]
        if not args.skip_silhouette:
            say()
            say(
                "2. silhouette_sweep against sklearn.metrics.silhouette_score per k "
                f"(median of {args.silhouette_reps}, interleaved)"
            )
            silhouette = bench_silhouette(20_000, range(2, 12), args.silhouette_reps)
    if not args.skip_memory:
        if not args.skip_silhouette:
            sweep = bench_sweep_alone(100_000, range(2, 12))
        say()
        say("4. memory of kmeans (fresh process)")
        rss = bench_rss(5_000_000, 10, args.n_init)
    say()
    say(f"summary (load average now {load_average()})")
    say(summary(kmeans_rows, silhouette, sweep, rss))
    if not args.no_write:
        REPORT.write()


if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in CHILDREN:
        print(json.dumps(CHILDREN[sys.argv[1]](*map(int, sys.argv[2:]))))
    else:
        main()
