"""Run the whole benchmark suite: bench_ml.py, bench_pipeline.py, transform_breakdown.py, bench_store.py,
bench_clustering.py and bench_grids.py, one process each.

Each script prints its report and writes its results file (``benchmarks/results/ml.txt``, ``pipeline.txt``,
``transform_breakdown.txt``, ``store.txt``, ``clustering.txt``, ``grids.txt``); each stays runnable alone. This is
what ``make bench`` runs; it is not part of the test suite and takes about forty minutes (the clustering day alone
about twelve, the gridded day six to fifteen).
The benchmarks' standard error (Dagster's run log, the local S3 server's request log) is kept out of the way and shown
only when a benchmark fails (``--verbose`` shows it as it comes).

Run from the project root:
``python benchmarks/run_all.py [--only ml|pipeline|transform_breakdown|store|clustering|grids]
[--glm-dir ../shared/data/glm]``.
Exits non-zero if any benchmark failed (the others still run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from _common import RESULTS_DIR, ROOT, load_average

BENCHMARKS = {
    "ml": ROOT / "benchmarks" / "bench_ml.py",
    "pipeline": ROOT / "benchmarks" / "bench_pipeline.py",
    "transform_breakdown": ROOT / "benchmarks" / "transform_breakdown.py",
    "store": ROOT / "benchmarks" / "bench_store.py",
    "clustering": ROOT / "benchmarks" / "bench_clustering.py",
    "grids": ROOT / "benchmarks" / "bench_grids.py",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run only this benchmark (repeatable); default: all"
    )
    parser.add_argument("--glm-dir", help="real granules for the ingest benchmarks (default ../shared/data/glm)")
    parser.add_argument("--verbose", action="store_true", help="pass the benchmarks' standard error through")
    args = parser.parse_args()
    failed = []
    for name in args.only or list(BENCHMARKS):
        command = [sys.executable, str(BENCHMARKS[name])]
        if name not in ("ml", "clustering") and args.glm_dir:
            command += ["--glm-dir", args.glm_dir]
        print(f"== {name}: {' '.join(command)}  (load average {load_average()})", flush=True)
        start = time.perf_counter()
        with tempfile.TemporaryFile("w+") as errors:
            rc = subprocess.run(command, cwd=ROOT, stderr=None if args.verbose else errors).returncode
            if rc and not args.verbose:
                errors.seek(0)
                print("".join(errors.readlines()[-40:]), end="", file=sys.stderr)
        print(f"== {name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(name)
    for name in BENCHMARKS:
        result = RESULTS_DIR / f"{name}.txt"
        if result.exists():
            print(f"results: {result.relative_to(ROOT)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
