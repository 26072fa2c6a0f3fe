"""Benchmark of the whole clustering of a synthetic day against the same sweep done with scikit-learn.

The day: ``--n`` flashes (default 1,000,000) in ``--cells`` storm cells (default 60) a few tens of km across
(σ 6-15 km), at least 250 km apart over the Americas, each active for 1-6 hours of a 24-hour day; 3-5 events per
flash within a few km of it and one group per flash, for the flash extent density. Source files are one-minute
granules; flash and group ids are unique within a granule.

Ours, timed part by part in one fresh process: ``preprocess``; ``evaluate_elbow`` over k = 1..40 and
``evaluate_silhouette`` over k = 2..40 sharing one ``KMeansFits`` (silhouette sample 20,000);
``choose_k_from_evaluation``; the final fit taken from the fits with its cluster summary and storm statistics (rates,
jumps); the flash extent density chunked by hour; and the cluster map, FED map, elbow and silhouette plots.

scikit-learn, in another fresh process on the same features (our preprocess, not timed on that side):
``KMeans(n_clusters=k, n_init=N, random_state=0)`` for each k = 2..40, ``silhouette_score`` of each on the same
20,000-point sample, and one final ``KMeans`` at our chosen k (a user refits).

Both sides run with the same thread settings (the defaults: our pool of ``default_threads()`` and OpenMP/BLAS as
threadpoolctl reports them). Peak memory is the child's VmHWM: over the whole child and, reset with
``/proc/self/clear_refs`` after the data are built, during the timed run alone.

Run from the project root: ``python benchmarks/bench_clustering.py [--n 1000000] [--n-init 10]``; writes
``benchmarks/results/clustering.txt`` (``--no-write`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT, Report, high_water_mib, load_average, machine, reset_high_water, versions

SAMPLE_SIZE = 20_000
SEED = 0
TARGET = 0.25

REPORT = Report("clustering")
say = REPORT.say


# ------------------------------------------------------------------------------------------------------------------
# The synthetic day
# ------------------------------------------------------------------------------------------------------------------


def synthetic_day(n: int, n_cells: int, seed: int = 0):
    """Flashes (the columns ``preprocess`` needs), and per hour (events, groups) for the FED; also the planted cell."""
    from lightning_eda.analysis.features import laea_inverse

    rng = np.random.default_rng(seed)
    centres: list[np.ndarray] = []
    while len(centres) < n_cells:  # the Americas, about 35°S..45°N, in the plane centred at (5°N, 75°W)
        candidate = rng.uniform([-3500, -4500], [3500, 4500])
        if all(np.hypot(*(candidate - c)) > 250 for c in centres):
            centres.append(candidate)
    centres = np.array(centres)
    cell = rng.choice(n_cells, size=n, p=rng.dirichlet(np.full(n_cells, 3.0)))
    sigma = rng.uniform(6, 15, n_cells)
    xy = centres[cell] + sigma[cell][:, None] * rng.standard_normal((n, 2))
    lat, lon = laea_inverse(xy[:, 0], xy[:, 1], 5.0, -75.0)
    start_h = rng.uniform(0, 18, n_cells)
    length_h = rng.uniform(1, 6, n_cells)
    seconds = (start_h[cell] + length_h[cell] * rng.random(n)) * 3600.0
    order = np.argsort(seconds, kind="stable")
    cell, lat, lon, seconds = cell[order], lat[order], lon[order], seconds[order]
    day = pd.Timestamp("2026-06-15")
    time_start = day + pd.to_timedelta(seconds, unit="s")
    minute = (seconds // 60).astype(np.int64)
    flash_id = (np.arange(n) - np.searchsorted(minute, minute)).astype(np.int32)  # from 0 in each one-minute granule
    names = np.array([f"OR_GLM-L2-LCFA_G16_s2026166{m // 60:02d}{m % 60:02d}000.nc" for m in range(1440)], dtype=object)
    source = names[minute]
    flashes = pd.DataFrame(
        {
            "source_file": source,
            "flash_id": flash_id,
            "time_start": time_start,
            "time_end": time_start + pd.to_timedelta(rng.uniform(0.05, 1.0, n), unit="s"),
            "lat": lat.astype(np.float32).astype(np.float64),
            "lon": lon.astype(np.float32).astype(np.float64),
            "energy": rng.lognormal(-33, 1.0, n),
            "quality_flag": np.where(rng.random(n) < 0.002, 1, 0).astype(np.int16),
            "area": rng.lognormal(np.log(1.5e8), 0.8, n),
        }
    )
    # events: 3-5 per flash within a few km; one group per flash (group_id = flash_id)
    per = rng.integers(3, 6, n)
    parent = np.repeat(np.arange(n), per)
    spread_deg = 0.03
    ev_lat = lat[parent] + spread_deg * rng.standard_normal(len(parent))
    ev_lon = lon[parent] + spread_deg * rng.standard_normal(len(parent))
    hour = (seconds // 3600).astype(np.int64)
    chunks = []
    for h in range(24):
        in_h = np.flatnonzero(hour == h)
        if not len(in_h):
            continue
        ev = np.flatnonzero(hour[parent] == h)
        groups = pd.DataFrame(
            {"source_file": source[in_h], "group_id": flash_id[in_h], "parent_flash_id": flash_id[in_h]}
        )
        events = pd.DataFrame(
            {
                "source_file": source[parent[ev]],
                "parent_group_id": flash_id[parent[ev]],
                "lat": ev_lat[ev].astype(np.float32),
                "lon": ev_lon[ev].astype(np.float32),
            }
        )
        chunks.append((events, groups))
    return flashes, chunks, len(parent)


# ------------------------------------------------------------------------------------------------------------------
# The two sides (each run in a child process)
# ------------------------------------------------------------------------------------------------------------------


def run_ours(n: int, n_cells: int, n_init: int) -> dict:
    from lightning_eda.analysis import clustering, storms
    from lightning_eda.analysis.features import feature_matrix, preprocess
    from lightning_eda.analysis.fed import DEFAULT_CELL_KM, FlashExtentDensity
    from lightning_eda.plots.cluster_map import cluster_map
    from lightning_eda.plots.curves import elbow_plot, silhouette_plot
    from lightning_eda.plots.fed_map import fed_map
    from lightning_eda.plots.output import save_png

    flashes, chunks, n_events = synthetic_day(n, n_cells)
    data_peak = high_water_mib()
    reset_high_water()
    parts: dict[str, float] = {}
    out_dir = Path(tempfile.mkdtemp(prefix="bench_clustering_"))

    def part(name, fn):
        start = time.perf_counter()
        value = fn()
        parts[name] = time.perf_counter() - start
        return value

    total_start = time.perf_counter()
    pre = part("preprocess", lambda: preprocess(flashes))
    X = feature_matrix(pre.features, pre.time_weight_km_per_min)
    fits = clustering.KMeansFits.of(X, n_init=n_init, seed=SEED)
    inertias, knee = part(
        "elbow (k=1..40 fits)",
        lambda: clustering.evaluate_elbow(X, clustering.DEFAULT_ELBOW_KS, n_init=n_init, seed=SEED, fits=fits),
    )
    sweep = part(
        "silhouette (k=2..40, reusing fits)",
        lambda: clustering.evaluate_silhouette(
            X, clustering.DEFAULT_SILHOUETTE_KS, n_init=n_init, seed=SEED, sample_size=SAMPLE_SIZE, fits=fits
        ),
    )

    def choose():
        evaluation = pd.DataFrame({"k": list(inertias), "inertia": list(inertias.values())}).merge(
            pd.DataFrame({"k": list(sweep.scores), "silhouette": list(sweep.scores.values())}), on="k", how="left"
        )
        k, reason = clustering.choose_k_from_evaluation("auto", evaluation)
        return k, reason, fits.fit(X, [k])[k]

    k, reason, result = part("choose k + final fit (from fits)", choose)

    def statistics():
        feats = pre.features
        lat, lon = pre.transform.to_latlon(result.centroids[:, :2])
        summary = clustering.summarize_clusters(feats, result.labels, np.column_stack([lat, lon]))
        per_minute = storms.flash_rate_per_minute(feats, result.labels)
        jumps = storms.storm_jumps(per_minute)
        summary = summary.merge(storms.storm_statistics(feats, result.labels, jumps), on="cluster", how="left")
        return summary, per_minute, jumps

    summary, per_minute, jumps = part("cluster summary + storm statistics", statistics)

    def density():
        fed = FlashExtentDensity(pre.transform, DEFAULT_CELL_KM)
        for events, groups in chunks:
            fed.add(events, groups)
        return fed.table()

    table = part("FED (24 hourly chunks)", density)
    feats = pre.features
    part(
        "cluster_map",
        lambda: save_png(
            cluster_map(
                feats["lat"].to_numpy(),
                feats["lon"].to_numpy(),
                result.labels,
                summary[["lat", "lon"]].to_numpy(),
                energy=feats["energy"].to_numpy(),
                title="synthetic day",
            ),
            out_dir / "cluster_map.png",
        ),
    )
    part(
        "fed_map",
        lambda: save_png(
            fed_map(
                table["lat"].to_numpy(),
                table["lon"].to_numpy(),
                table["flash_count"].to_numpy(),
                cell_km=DEFAULT_CELL_KM,
                title="synthetic day",
            ),
            out_dir / "fed_map.png",
        ),
    )
    best_k = max(sweep.scores, key=sweep.scores.get)
    part(
        "elbow + silhouette plots",
        lambda: (
            save_png(elbow_plot(list(inertias), list(inertias.values()), knee=knee), out_dir / "elbow.png"),
            save_png(
                silhouette_plot(list(sweep.scores), list(sweep.scores.values()), best_k=best_k),
                out_dir / "silhouette.png",
            ),
        ),
    )
    total = time.perf_counter() - total_start
    shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "parts": parts,
        "total": total,
        "k": int(k),
        "reason": reason,
        "knee": knee,
        "best_k": int(best_k),
        "best_silhouette": float(sweep.scores[best_k]),
        "n_features": len(X),
        "n_events": n_events,
        "fed_cells": len(table),
        "n_jumps": int(jumps["jump"].sum()) if len(jumps) else 0,
        "iters": {str(kk): int(r.n_iter) for kk, r in fits.results.items()},
        "inertias": {str(kk): float(v) for kk, v in inertias.items()},
        "scores": {str(kk): float(v) for kk, v in sweep.scores.items()},
        "run_peak_mib": high_water_mib(),
        "data_peak_mib": data_peak,
        "threads": thread_info(),
    }


def run_sklearn(n: int, n_cells: int, n_init: int, final_k: int) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from lightning_eda.analysis.features import feature_matrix, preprocess

    flashes, _, _ = synthetic_day(n, n_cells)
    pre = preprocess(flashes)
    X = feature_matrix(pre.features, pre.time_weight_km_per_min)
    del flashes
    index = np.sort(np.random.default_rng(SEED).choice(len(X), size=SAMPLE_SIZE, replace=False))
    data_peak = high_water_mib()
    reset_high_water()
    fit_s = sil_s = 0.0
    inertias, scores = {}, {}
    total_start = time.perf_counter()
    for k in range(2, 41):
        start = time.perf_counter()
        model = KMeans(n_clusters=k, n_init=n_init, random_state=0).fit(X)
        mid = time.perf_counter()
        scores[k] = float(silhouette_score(X[index], model.labels_[index]))
        sil_s += time.perf_counter() - mid
        fit_s += mid - start
        inertias[k] = float(model.inertia_)
    start = time.perf_counter()
    KMeans(n_clusters=final_k, n_init=n_init, random_state=0).fit(X)
    final_s = time.perf_counter() - start
    total = time.perf_counter() - total_start
    return {
        "parts": {"KMeans fits k=2..40": fit_s, "silhouette_score x39": sil_s, f"final KMeans k={final_k}": final_s},
        "total": total,
        "best_k": max(scores, key=scores.get),
        "best_silhouette": max(scores.values()),
        "inertias": {str(k): v for k, v in inertias.items()},
        "run_peak_mib": high_water_mib(),
        "data_peak_mib": data_peak,
        "threads": thread_info(),
    }


def thread_info() -> str:
    import threadpoolctl

    import lightning_eda.ml._parallel as parallel

    pools = [f"{i['user_api']}:{i['internal_api']} {i['num_threads']} threads" for i in threadpoolctl.threadpool_info()]
    env = {key: os.environ[key] for key in sorted(os.environ) if key.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    return (
        f"our pool of {parallel.default_threads()} threads (cpus {parallel.available_cpus()}); "
        f"{', '.join(pools)}; env {env or 'none set'}"
    )


def child(side: str, **kwargs) -> dict:
    """``run_<side>(**kwargs)`` in a fresh process: this script again, as ``bench_clustering.py _child SIDE JSON``."""
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_clustering.py"), "_child", side, json.dumps(kwargs)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{side} side failed (exit {proc.returncode})")
    line = next(out for out in proc.stdout.splitlines() if out.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="flashes in the day (default 1,000,000)")
    parser.add_argument("--cells", type=int, default=60, help="storm cells (default 60)")
    parser.add_argument("--n-init", type=int, default=10, help="n_init for both sides (default 10, the project's)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    say(f"{machine()}; {versions('numpy', 'sklearn')}")
    say(
        f"day: n={args.n:,} flashes, {args.cells} storm cells, n_init={args.n_init} both sides, silhouette sample "
        f"{SAMPLE_SIZE:,}, seed {SEED}"
    )
    ours = child("ours", n=args.n, n_cells=args.cells, n_init=args.n_init)
    say(f"threads (ours): {ours['threads']}")
    say(
        f"ours (fresh process, load now {load_average()}): {ours['n_features']:,} flashes kept, {ours['n_events']:,} "
        f"events, k={ours['k']} ({ours['reason']}), knee {ours['knee']}, {ours['fed_cells']:,} FED cells, "
        f"{ours['n_jumps']} jumps"
    )
    for name, seconds in ours["parts"].items():
        say(f"  {name:<40} {seconds:8.2f} s")
    say(f"  {'total':<40} {ours['total']:8.2f} s")
    say(
        f"  peak RSS during the run {ours['run_peak_mib']:.0f} MiB (building the synthetic day beforehand: "
        f"{ours['data_peak_mib']:.0f} MiB)"
    )
    theirs = child("sklearn", n=args.n, n_cells=args.cells, n_init=args.n_init, final_k=ours["k"])
    say(f"threads (sklearn): {theirs['threads']}")
    say(
        f"scikit-learn (fresh process, load now {load_average()}): best silhouette k={theirs['best_k']} "
        f"({theirs['best_silhouette']:.4f}; ours k={ours['best_k']}, {ours['best_silhouette']:.4f})"
    )
    for name, seconds in theirs["parts"].items():
        say(f"  {name:<40} {seconds:8.2f} s")
    say(f"  {'total':<40} {theirs['total']:8.2f} s")
    say(f"  peak RSS during the run {theirs['run_peak_mib']:.0f} MiB (before: {theirs['data_peak_mib']:.0f} MiB)")
    worst = max(ours["inertias"][k] / theirs["inertias"][k] for k in theirs["inertias"])
    sweep_ours = sum(v for name, v in ours["parts"].items() if name.startswith(("elbow (", "silhouette", "choose")))
    ratio = ours["total"] / theirs["total"]
    say()
    say(f"summary (load average now {load_average()})")
    say(f"  n={args.n:,}  n_init={args.n_init}")
    say(f"  ours, whole clustering of the day        {ours['total']:8.2f} s")
    say(f"  scikit-learn, sweep + final fit          {theirs['total']:8.2f} s")
    say(
        f"  ratio ours/sklearn                       {ratio:8.3f}   target <= {TARGET}: "
        f"{'met' if ratio <= TARGET else 'NOT met'}"
    )
    say(
        f"  ratio of the sweeps alone (our elbow+silhouette+choose {sweep_ours:.2f} s) "
        f"{sweep_ours / theirs['total']:.3f}"
    )
    say(f"  worst inertia ratio ours/sklearn over k=2..40  {worst:.6f}")
    say(f"  peak RSS of our run                      {ours['run_peak_mib']:8.0f} MiB")
    if not args.no_write:
        REPORT.write()


if __name__ == "__main__":
    if sys.argv[1:2] == ["_child"]:
        run_side = {"ours": run_ours, "sklearn": run_sklearn}[sys.argv[2]]
        print("RESULT " + json.dumps(run_side(**json.loads(sys.argv[3]))))
    else:
        main()
