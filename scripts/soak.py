"""Soak test: a synthetic day of GLM granules loaded hour by hour through an S3 endpoint that keeps failing.

The day's 4,320 granules (one per 20 s slot) are served by the local S3 server (moto over HTTP) under the real key
layout, behind ``lightning_eda.testing.faulty_s3.FaultyS3``, which throttles (503 SlowDown), fails (500), cuts
bodies halfway and holds connections past the client's read timeout on every Nth request. Each hour is materialized
with the real
``extract → transform → load`` assets, which write a new version of the hour into the Parquet store under
``data/store/`` (``data/glm.duckdb`` holds only views over it). A granule whose download outlives its retries is
recorded as ``missing``; an hour left with missing granules (or a failed run) is run again, as a resumed backfill
does, and that run fetches only those granules (at most ``max_passes`` passes).

Meanwhile, on by default:
- **a reader**: a separate process (a plain duckdb user, no lightning_eda) opens ``glm.duckdb`` READ-WRITE as soon as
  the first hour has made it, holds that one connection for the rest of the soak and counts ``glm_event`` and
  ``glm_hour`` in a loop. It must never error, its counts must never decrease, and its last query (same connection)
  must equal the store's final totals: a connection opened before later loads sees them, and never blocks them;
- **a load killed mid-hour**: one hour first runs in a child process that is SIGKILLed (with its decoder workers) as
  soon as it stages the hour's next version (``--kill-at staging``) or hands extract's report to transform
  (``--kill-at work``); the hour is then run again normally and must end like every other.

The soak ends by checking, through the store's own views (never ``glm.duckdb``, which the reader holds), that every
granule is in ``glm_file`` exactly once, ``loaded``, with its rows exactly once, byte-identical on disk, and that no
temporary ``*.part`` file is left.

Granules:
- most are written with ``lightning_eda.testing.lcfa_factory`` at their slot's start, so their times match their names;
- every ``--real-every``-th slot gets the bytes of one of the real granules in ``../shared/data/glm`` under the slot's
  name. The decoder takes times from the file's own ``units`` and ``time_coverage_*`` attributes, never from its name,
  so those granules load with their original times (2018-07-02 04:33, 2020-01-16 06:12, 2021-03-23 06:33) while
  ``glm_file.hour`` is the partition's hour: the figures count them as ``time_outside_hour``;
- every 9th slot is an empty granule (no flashes, no global attributes), which must load as zero rows.

Usage::

    .venv/bin/python scripts/soak.py                 # the full day (24 partitions)
    .venv/bin/python scripts/soak.py --hours 2       # a reduced run
    .venv/bin/python scripts/soak.py --no-reader --no-kill   # faults only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from _granule_day import make_day
from _hour_run import KILL_POINTS, run_hour, run_hour_killed
from _soak_reader import Reader, reader_figures, reader_problems
from _store_check import STORE_FAULTS, verify

from lightning_eda.cli import failure_message
from lightning_eda.store import catalog, database
from lightning_eda.testing.faulty_s3 import MODES, FaultyS3
from lightning_eda.testing.s3_server import LocalS3

DEFAULT_REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glm"


class _RetryCounter(logging.Handler):
    """Counts the archive's own retries (``fetch_with_retries`` logs one line per retry)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("retrying "):
            self.count += 1


def run_soak(
    s3: LocalS3 | None = None,
    *,
    workdir: Path,
    day: datetime = datetime(2018, 7, 2),
    hours: int = 24,
    fault_every: int = 30,
    modes: tuple[str, ...] = MODES,
    read_timeout: float = 2.0,
    real_dir: Path | None = DEFAULT_REAL_DIR,
    real_every: int = 30,
    bucket: str = "soak-goes16",
    max_passes: int = 5,
    reader: bool = True,
    kill: bool = True,
    kill_at: str = "staging",
    kill_hour: int | None = None,
    reader_connect_timeout: float = 120.0,
    log: Callable[[str], None] = print,
) -> dict:
    """Load ``hours`` hours from ``day`` 00:00 UTC through the faulty endpoint and return the soak's figures.

    ``reader``: a separate process holds ``glm.duckdb`` open read-write from the first hour on and counts in a loop.
    ``kill``: hour ``kill_hour`` (default: the middle one) first runs in a child SIGKILLed at ``kill_at``.
    """
    if kill_at not in KILL_POINTS:
        raise ValueError(f"kill_at {kill_at!r} must be one of {KILL_POINTS}")
    started = time.monotonic()
    own_server = s3 is None
    s3 = s3 or LocalS3().start()
    workdir = Path(workdir)
    data_dir = workdir / "data"
    retry_counter = _RetryCounter()
    archive_log = logging.getLogger("lightning_eda.ingest.archive")
    old_level, old_endpoint = archive_log.level, os.environ.get("AWS_ENDPOINT_URL_S3")
    proxy = FaultyS3(s3.url, every=0, modes=modes, scope="all", delay=max(4 * read_timeout, read_timeout + 3))
    holder: Reader | None = None
    kill_index = (hours // 2 if kill_hour is None else kill_hour) if kill else None
    try:
        log(f"writing {hours * 180} granules into s3://{bucket} ...")
        expected = make_day(s3, bucket, day, hours, workdir / "staging", real_dir, real_every, log)
        generated = time.monotonic()
        proxy.start()
        proxy.configure(every=fault_every, modes=modes, scope="all", delay=proxy.delay)
        os.environ["AWS_ENDPOINT_URL_S3"] = proxy.url
        archive_log.addHandler(retry_counter)
        archive_log.setLevel(logging.INFO)
        if reader:
            holder = Reader(data_dir / catalog.DATABASE_FILE_NAME, workdir / "reader.log")

        todo = [day + timedelta(hours=h) for h in range(hours)]
        runs = failed_runs = child_runs = child_retries = 0
        failures: list[str] = []
        kill_notes: list[str] = []
        killed_hours: list[datetime] = []
        download_failures = missing_after_runs = 0
        store_con = catalog.connect_store(data_dir)  # the soak's own reads never touch glm.duckdb
        for attempt in range(1, max_passes + 1):
            again = []
            for hour in todo:
                if attempt == 1 and kill_index is not None and hour == day + timedelta(hours=kill_index):
                    outcome = run_hour_killed(
                        data_dir, bucket, hour, read_timeout, kill_at, workdir / f"killed-{hour:%H}.log"
                    )
                    child_runs += 1
                    child_retries += outcome["archive_retries"]
                    kill_notes.append(outcome["note"])
                    if outcome["killed"]:
                        killed_hours.append(hour)
                    log(f"  {outcome['note']}")
                t0 = time.monotonic()
                result = run_hour(data_dir, bucket, hour, read_timeout)
                runs += 1
                if result.success:
                    extract_meta = result.asset_materializations_for_node("extract")[0].metadata
                    download_failures += extract_meta["download_failures"].value
                    summary = database.hour_summary(store_con, bucket=bucket, hour=hour)
                    note = f"{summary['loaded']} loaded, {summary['failed']} failed, {summary['missing']} missing"
                    missing_after_runs += summary["missing"]
                    if summary["missing"] or not summary["loaded"]:  # not complete: a resumed backfill runs it again
                        again.append(hour)
                else:
                    failed_runs += 1
                    note = f"FAILED: {failure_message(result)}"
                    failures.append(f"{hour:%Y-%m-%d %H}:00 {note}")
                    again.append(hour)
                if holder is not None and holder.connected is None and (data_dir / catalog.DATABASE_FILE_NAME).exists():
                    # the reader opens glm.duckdb as soon as the first load made it: wait for it before loading more
                    if holder.wait_connected(reader_connect_timeout):
                        note += f"; reader connected, sees {holder.connected['counts']}"
                    else:
                        note += "; reader did NOT connect"
                log(
                    f"  pass {attempt} {hour:%Y-%m-%d %H}:00  {time.monotonic() - t0:5.1f} s  {note}  "
                    f"(faults so far {sum(proxy.faults.values())})"
                )
            todo = again
            if not todo:
                break
        store_con.close()
        loaded = time.monotonic()

        reader_report = holder.finish() if holder is not None else None
        holder = None
        checks = verify(data_dir, bucket, expected)
        gets = proxy.object_gets()
        lists = sum(1 for s in proxy.seen if s.is_list)
        distinct_downloaded = len(set(gets))
        archive_retries = retry_counter.count + child_retries
        figures = {
            "granules": len(expected),
            "real_copies": sum(1 for facts in expected.values() if facts["real"]),
            "empty_granules": sum(1 for facts in expected.values() if facts["counts"] == (0, 0, 0)),
            "hours": hours,
            "runs": runs,
            "rerun_hours": runs - hours,
            "hours_incomplete_at_end": len(todo),
            "failed_runs": failed_runs,
            "run_failures": failures,
            "granule_download_failures": download_failures,
            "missing_after_runs": missing_after_runs,
            "requests": proxy.requests,
            "object_gets": len(gets),
            "list_requests": lists,
            "faults": sum(proxy.faults.values()),
            "faults_by_mode": dict(proxy.faults),
            "fault_rate": round(sum(proxy.faults.values()) / max(proxy.requests, 1), 4),
            "archive_retries": archive_retries,
            "botocore_retries": len(gets) - distinct_downloaded - archive_retries + (lists - runs - child_runs),
            "killed_hours": len(killed_hours),
            "kill_notes": kill_notes,
            **reader_figures(reader_report, checks["final_counts"]),
            "generate_seconds": round(generated - started, 1),
            "load_seconds": round(loaded - generated, 1),
            "wall_seconds": round(time.monotonic() - started, 1),
            **checks,
        }
        return figures
    finally:
        if holder is not None:
            holder.kill()
        archive_log.removeHandler(retry_counter)
        archive_log.setLevel(old_level)
        if old_endpoint is None:
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        else:
            os.environ["AWS_ENDPOINT_URL_S3"] = old_endpoint
        proxy.stop()
        if own_server:
            s3.stop()


def verdict(figures: dict) -> list[str]:
    """What is wrong with a soak's figures (nothing: every granule ended exactly once, the reader and kill held)."""
    problems = []
    if figures["loaded_once"] != figures["granules"]:
        problems.append(f"loaded_once {figures['loaded_once']} of {figures['granules']}")
    for key in (*STORE_FAULTS, "unexpected", "failed", "failed_runs"):
        if figures[key]:
            problems.append(f"{key} {figures[key]}")
    if figures.get("reader"):
        problems += reader_problems(figures)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", default="2018-07-02", help="UTC day to synthesise, YYYY-MM-DD")
    parser.add_argument("--hours", type=int, default=24, help="hours (partitions) to load from 00:00")
    parser.add_argument("--fault-every", type=int, default=30, help="fault every Nth request (30 = 3.3%%)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"fault modes, in turn: {','.join(MODES)}")
    parser.add_argument("--read-timeout", type=float, default=2.0, help="the S3 client's read timeout, seconds")
    parser.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR, help="real granules to copy")
    parser.add_argument("--real-every", type=int, default=30, help="every Nth slot is a real granule (0: none)")
    parser.add_argument("--max-passes", type=int, default=5, help="runs per hour at most (missing granules retried)")
    parser.add_argument("--no-reader", action="store_true", help="no process holding glm.duckdb open")
    parser.add_argument("--no-kill", action="store_true", help="no load killed mid-hour")
    parser.add_argument(
        "--kill-at",
        choices=KILL_POINTS,
        default="staging",
        help="kill when the hour's next version is staged, or when transform gets extract's report",
    )
    parser.add_argument("--kill-hour", type=int, default=None, help="which hour to kill (default: the middle one)")
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
        max_passes=args.max_passes,
        reader=not args.no_reader,
        kill=not args.no_kill,
        kill_at=args.kill_at,
        kill_hour=args.kill_hour,
    )
    print(json.dumps(figures, indent=1, default=str))
    print(f"workdir: {workdir}")
    if figures.get("reader"):
        print(
            f"reader: {figures['reader_queries']} queries on one read-write connection to glm.duckdb, "
            f"{figures['reader_errors']} errors, decrease seen: {figures['reader_saw_decrease']}, "
            f"first {figures['reader_first_counts']}, last {figures['reader_last_counts']}, "
            f"final {figures['reader_final_counts']} (matches the store: {figures['reader_final_matches']})"
        )
    for note in figures["kill_notes"]:
        print(f"killed: {note}")
    problems = verdict(figures)
    if not args.no_kill and figures["killed_hours"] < 1:
        problems.append("no load was killed mid-hour")
    for problem in problems:
        print(f"  problem: {problem}")
    print("soak: every granule loaded exactly once" if not problems else "soak: FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
