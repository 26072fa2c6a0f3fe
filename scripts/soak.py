"""Soak test: a synthetic day of GLM granules loaded hour by hour through an S3 endpoint that keeps failing.

The day's 4,320 granules (one per 20 s slot) are served by the local S3 server (moto over HTTP) under the real key
layout, behind ``faulty_s3.FaultyS3``, which throttles (503 SlowDown), fails (500), cuts bodies halfway and holds
connections past the client's read timeout on every Nth request. Each hour is materialized with the real
``extract → transform → load`` assets; hours left with a failed run or a failed granule get another run (at most
three passes). The soak ends by checking that every granule is in ``glm_file`` exactly once, loaded, with its rows,
byte-identical on disk, and that no temporary ``*.part`` file is left.

Granules:
- most are written with ``lcfa_factory`` at their slot's start, so their times match their names;
- every ``--real-every``-th slot gets the bytes of one of the real granules in ``../shared/data/glm`` under the slot's
  name. The decoder takes times from the file's own ``units`` and ``time_coverage_*`` attributes, never from its name,
  so those granules load with their original times (2018-07-02 04:33, 2020-01-16 06:12, 2021-03-23 06:33) while
  ``glm_file.hour`` is the partition's hour: the figures count them as ``time_outside_hour``;
- every 9th slot is an empty granule (no flashes, no global attributes), which must load as zero rows.

Usage::

    .venv/bin/python scripts/soak.py                 # the full day (24 partitions)
    .venv/bin/python scripts/soak.py --hours 2       # a reduced run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Optional

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "lightning_eda_tests"))

import lcfa_factory  # noqa: E402
from faulty_s3 import MODES, FaultyS3  # noqa: E402
from s3_server import LocalS3  # noqa: E402

from dagster import materialize  # noqa: E402

from lightning_eda.store import database  # noqa: E402
from lightning_eda.orchestration.assets.ingestor import extract, load, transform  # noqa: E402
from lightning_eda.cli import _failure_message  # noqa: E402
from lightning_eda.goes.granule import read_granule  # noqa: E402
from lightning_eda.goes.layout import hour_prefix, parse_granule_name  # noqa: E402
from lightning_eda.orchestration.partitions import partition_key_for_hour  # noqa: E402
from lightning_eda.orchestration.resources import build_resources  # noqa: E402

PRODUCT = "GLM-L2-LCFA"
DEFAULT_REAL_DIR = PROJECT.parent / "shared" / "data" / "glm"
SLOT = timedelta(seconds=20)


class _RetryCounter(logging.Handler):
    """Counts the archive's own retries (``fetch_with_retries`` logs one line per retry)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("retrying "):
            self.count += 1


def _write_synthetic(job: tuple[str, datetime, bool]) -> bytes:
    """One synthetic granule's bytes (run in a worker process: netCDF/HDF5 writes do not overlap in threads)."""
    path, start, empty = job
    if empty:
        lcfa_factory.write_empty_lcfa(path, start=start)
    else:
        lcfa_factory.write_lcfa(path, start=start)
    body = Path(path).read_bytes()
    Path(path).unlink()
    return body


def make_day(
    s3: LocalS3, bucket: str, first_hour: datetime, hours: int, staging: Path, real_dir: Optional[Path],
    real_every: int, log: Callable[[str], None],
) -> dict[str, dict]:
    """Write and upload one granule per 20 s slot; returns {name: {"counts", "sha", "real"}}."""
    staging.mkdir(parents=True, exist_ok=True)
    reals = sorted(real_dir.glob("OR_GLM-L2-LCFA_*.nc")) if real_dir and real_dir.is_dir() and real_every else []
    real_counts = {}
    for path in reals:
        meta = read_granule(path).meta
        real_counts[path] = (meta["n_flashes"], meta["n_groups"], meta["n_events"])
    plan = []  # (name, key, real source or None, synthetic job or None, counts)
    for i in range(hours * 180):
        start = first_hour + i * SLOT
        if reals and i % real_every == real_every // 2:
            source = reals[(i // real_every) % len(reals)]
            name = lcfa_factory.lcfa_name(parse_granule_name(source.name).platform, start)
            plan.append((name, source, None, real_counts[source]))
        else:
            name = lcfa_factory.lcfa_name("G16", start)
            empty = i % 9 == 0
            plan.append((name, None, (str(staging / name), start, empty), (0, 0, 0) if empty else (2, 3, 5)))
    jobs = [job for _, _, job, _ in plan if job is not None]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        written = iter(list(pool.map(_write_synthetic, jobs, chunksize=32)))
    bodies = {name: (source.read_bytes() if source else next(written)) for name, source, _, _ in plan}
    log(f"  written {len(plan)} granules")
    expected = {
        name: {"counts": counts, "sha": hashlib.sha256(bodies[name]).hexdigest(), "real": source is not None}
        for name, source, _, counts in plan
    }
    s3.create_bucket(bucket)
    admin = s3.admin  # one client for every upload (LocalS3.put makes a new one each time)

    def upload(name: str) -> None:
        key = hour_prefix(PRODUCT, parse_granule_name(name).start) + name
        admin.put_object(Bucket=bucket, Key=key, Body=bodies[name], ACL="public-read")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(upload, bodies))
    return expected


def run_hour(data_dir: Path, bucket: str, hour: datetime, read_timeout: float):
    return materialize(
        [extract, transform, load],
        partition_key=partition_key_for_hour(hour),
        resources=build_resources(data_dir, bucket=bucket, read_timeout=read_timeout),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )


def verify(data_dir: Path, bucket: str, expected: dict[str, dict]) -> dict:
    """Every granule exactly once in glm_file, loaded, with its rows and its bytes; no temporary files left."""
    db = data_dir / "glm.duckdb"
    with database.connect(db, read_only=True) as con:
        files = con.execute(
            "SELECT source_file, count(*), any_value(status), any_value(n_flashes), any_value(n_groups), "
            "any_value(n_events), any_value(hour), any_value(time_start) FROM glm_file GROUP BY 1"
        ).fetchall()
        per_table = {}
        for table in database.DATA_TABLES:
            per_table[table] = dict(con.execute(f"SELECT source_file, count(*) FROM {table} GROUP BY 1").fetchall())
        duplicate_ids = sum(
            con.execute(f"SELECT count(*) - count(DISTINCT (source_file, {column})) FROM {table}").fetchone()[0]
            for table, column in (("glm_flash", "flash_id"), ("glm_group", "group_id"), ("glm_event", "event_id"))
        )
    seen = {row[0]: row for row in files}
    loaded_once = wrong_counts = time_outside_hour = bad_bytes = 0
    for name, facts in expected.items():
        row = seen.get(name)
        if row is None or row[1] != 1 or row[2] != "loaded":
            continue
        loaded_once += 1
        counts = tuple(row[3:6])
        rows = tuple(per_table[t].get(name, 0) for t in database.DATA_TABLES)
        if counts != facts["counts"] or rows != facts["counts"]:
            wrong_counts += 1
        hour, time_start = row[6], row[7]
        if time_start is not None and not hour <= time_start < hour + timedelta(hours=1):
            time_outside_hour += 1
        raw = data_dir / "raw" / bucket / hour_prefix(PRODUCT, parse_granule_name(name).start) / name
        if not raw.is_file() or hashlib.sha256(raw.read_bytes()).hexdigest() != facts["sha"]:
            bad_bytes += 1
    return {
        "loaded_once": loaded_once,
        "missing": sum(1 for name in expected if name not in seen),
        "unexpected": sum(1 for name in seen if name not in expected),
        "duplicated": sum(1 for row in files if row[1] != 1),
        "failed": sum(1 for row in files if row[2] != "loaded"),
        "wrong_counts": wrong_counts,
        "duplicate_ids": int(duplicate_ids),
        "bad_bytes": bad_bytes,
        "part_files": len(list(data_dir.rglob("*.part"))),
        "time_outside_hour": time_outside_hour,
    }


def run_soak(
    s3: Optional[LocalS3] = None,
    *,
    workdir: Path,
    day: datetime = datetime(2018, 7, 2),
    hours: int = 24,
    fault_every: int = 30,
    modes: tuple[str, ...] = MODES,
    read_timeout: float = 2.0,
    real_dir: Optional[Path] = DEFAULT_REAL_DIR,
    real_every: int = 30,
    bucket: str = "soak-goes16",
    max_passes: int = 3,
    log: Callable[[str], None] = print,
) -> dict:
    """Load ``hours`` hours from ``day`` 00:00 UTC through the faulty endpoint and return the soak's figures."""
    started = time.monotonic()
    own_server = s3 is None
    s3 = s3 or LocalS3().start()
    workdir = Path(workdir)
    data_dir = workdir / "data"
    retry_counter = _RetryCounter()
    archive_log = logging.getLogger("lightning_eda.ingest.archive")
    old_level, old_endpoint = archive_log.level, os.environ.get("AWS_ENDPOINT_URL_S3")
    proxy = FaultyS3(s3.url, every=0, modes=modes, scope="all", delay=max(4 * read_timeout, read_timeout + 3))
    try:
        log(f"writing {hours * 180} granules into s3://{bucket} ...")
        expected = make_day(s3, bucket, day, hours, workdir / "staging", real_dir, real_every, log)
        generated = time.monotonic()
        proxy.start()
        proxy.configure(every=fault_every, modes=modes, scope="all", delay=proxy.delay)
        os.environ["AWS_ENDPOINT_URL_S3"] = proxy.url
        archive_log.addHandler(retry_counter)
        archive_log.setLevel(logging.INFO)

        todo = [day + timedelta(hours=h) for h in range(hours)]
        runs = failed_runs = 0
        failures: list[str] = []
        download_failures = 0
        for attempt in range(1, max_passes + 1):
            again = []
            for hour in todo:
                t0 = time.monotonic()
                result = run_hour(data_dir, bucket, hour, read_timeout)
                runs += 1
                if result.success:
                    extract_meta = result.asset_materializations_for_node("extract")[0].metadata
                    download_failures += extract_meta["download_failures"].value
                    with database.connect(data_dir / "glm.duckdb", read_only=True) as con:
                        summary = database.hour_summary(con, bucket=bucket, hour=hour)
                    note = f"{summary['loaded']} loaded, {summary['failed']} failed"
                    if summary["failed"]:
                        again.append(hour)
                else:
                    failed_runs += 1
                    note = f"FAILED: {_failure_message(result)}"
                    failures.append(f"{hour:%Y-%m-%d %H}:00 {note}")
                    again.append(hour)
                log(f"  pass {attempt} {hour:%Y-%m-%d %H}:00  {time.monotonic() - t0:5.1f} s  {note}  "
                    f"(faults so far {sum(proxy.faults.values())})")
            todo = again
            if not todo:
                break
        loaded = time.monotonic()

        checks = verify(data_dir, bucket, expected)
        gets = proxy.object_gets()
        lists = sum(1 for s in proxy.seen if s.is_list)
        distinct_downloaded = len(set(gets))
        figures = {
            "granules": len(expected),
            "real_copies": sum(1 for facts in expected.values() if facts["real"]),
            "empty_granules": sum(1 for facts in expected.values() if facts["counts"] == (0, 0, 0)),
            "hours": hours,
            "runs": runs,
            "rerun_hours": runs - hours,
            "failed_runs": failed_runs,
            "run_failures": failures,
            "granule_download_failures": download_failures,
            "requests": proxy.requests,
            "object_gets": len(gets),
            "list_requests": lists,
            "faults": sum(proxy.faults.values()),
            "faults_by_mode": dict(proxy.faults),
            "fault_rate": round(sum(proxy.faults.values()) / max(proxy.requests, 1), 4),
            "archive_retries": retry_counter.count,
            "botocore_retries": len(gets) - distinct_downloaded - retry_counter.count + (lists - runs),
            "generate_seconds": round(generated - started, 1),
            "load_seconds": round(loaded - generated, 1),
            "wall_seconds": round(time.monotonic() - started, 1),
            **checks,
        }
        return figures
    finally:
        archive_log.removeHandler(retry_counter)
        archive_log.setLevel(old_level)
        if old_endpoint is None:
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        else:
            os.environ["AWS_ENDPOINT_URL_S3"] = old_endpoint
        proxy.stop()
        if own_server:
            s3.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", default="2018-07-02", help="UTC day to synthesise, YYYY-MM-DD")
    parser.add_argument("--hours", type=int, default=24, help="hours (partitions) to load from 00:00")
    parser.add_argument("--fault-every", type=int, default=30, help="fault every Nth request (30 = 3.3%%)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"fault modes, in turn: {','.join(MODES)}")
    parser.add_argument("--read-timeout", type=float, default=2.0, help="the S3 client's read timeout, seconds")
    parser.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR, help="real granules to copy")
    parser.add_argument("--real-every", type=int, default=30, help="every Nth slot is a real granule (0: none)")
    parser.add_argument("--workdir", type=Path, default=None, help="data folder parent (default: a temporary one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the archive logger is raised to INFO to count retries
        handler.setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lightning-eda-soak-"))
    figures = run_soak(
        workdir=workdir,
        day=datetime.strptime(args.day, "%Y-%m-%d"),
        hours=args.hours,
        fault_every=args.fault_every,
        modes=tuple(m for m in args.modes.split(",") if m),
        read_timeout=args.read_timeout,
        real_dir=args.real_dir,
        real_every=args.real_every,
    )
    print(json.dumps(figures, indent=1, default=str))
    print(f"workdir: {workdir}")
    ok = (
        figures["loaded_once"] == figures["granules"]
        and not any(figures[k] for k in ("missing", "unexpected", "duplicated", "failed", "wrong_counts",
                                         "duplicate_ids", "bad_bytes", "part_files"))
    )
    print("soak: every granule loaded exactly once" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
