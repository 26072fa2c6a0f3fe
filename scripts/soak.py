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
import hashlib
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

SCRIPT = Path(__file__).resolve()
PROJECT = SCRIPT.parents[1]
READER_PAUSE = 0.05
"""Seconds the reader waits for a stop request between two rounds of queries (it does nothing else meanwhile)."""


# --- the reader: a user holding glm.duckdb open ------------------------------------------------------------------
# It runs as ``soak.py _reader <glm.duckdb>`` and is dispatched before the imports below: it is a plain duckdb user,
# with no lightning_eda, Dagster or moto in its process. It talks to the soak in JSON lines: on stdout it says
# "connected" after its first query and "final" at the end; a line on its stdin (or its closing) asks it to stop.


def reader_main(db_path: str) -> int:
    import duckdb

    def say(**message) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def stop_requested(timeout: float) -> bool:
        readable, _, _ = select.select([sys.stdin], [], [], timeout)
        return bool(readable)  # a "stop" line or EOF (the soak went away): either way, stop

    con = None
    connect_retries, connect_error = 0, None
    while con is None:  # wait for the first hour's load to create the file, then for it to let go of it
        if os.path.exists(db_path):
            try:
                con = duckdb.connect(db_path)  # READ-WRITE, as a user's notebook would
                break
            except duckdb.Error as exc:  # the pipeline is writing its views right now: try again shortly
                connect_retries, connect_error = connect_retries + 1, f"{type(exc).__name__}: {exc}"
        if stop_requested(READER_PAUSE):
            say(event="final", connected=False, connect_retries=connect_retries, connect_error=connect_error)
            return 0

    def counts() -> tuple[int, int]:
        events = con.execute("SELECT count(*) FROM glm_event").fetchone()[0]
        hours = con.execute("SELECT count(*) FROM glm_hour").fetchone()[0]
        return int(events), int(hours)

    queries = errors = decreases = 0
    error_samples: list[str] = []
    first = last = None
    while True:
        try:
            seen = counts()
        except Exception as exc:  # noqa: BLE001 - every error counts against the store, whatever its kind
            queries += 2
            errors += 1
            if len(error_samples) < 5:
                error_samples.append(f"{type(exc).__name__}: {exc}")
        else:
            queries += 2
            if last is not None and (seen[0] < last[0] or seen[1] < last[1]):
                decreases += 1
            if first is None:
                first = seen
                say(event="connected", counts=seen, connect_retries=connect_retries)
            last = seen
        if stop_requested(READER_PAUSE):
            break
    final, final_error = None, None
    try:  # the last query, on the connection opened before the later hours were loaded
        final = counts()
        queries += 2
    except Exception as exc:  # noqa: BLE001
        errors += 1
        final_error = f"{type(exc).__name__}: {exc}"
    con.close()
    say(
        event="final",
        connected=True,
        connect_retries=connect_retries,
        queries=queries,
        errors=errors,
        error_samples=error_samples,
        decreases=decreases,
        first=first,
        last=last,
        final=final,
        final_error=final_error,
    )
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["_reader"]:
    sys.exit(reader_main(sys.argv[2]))

from dagster import materialize  # noqa: E402

from lightning_eda.cli import failure_message  # noqa: E402
from lightning_eda.goes.granule import read_granule  # noqa: E402
from lightning_eda.goes.layout import hour_prefix, parse_granule_name  # noqa: E402
from lightning_eda.ingest.hourly import HourPaths  # noqa: E402
from lightning_eda.orchestration.assets.ingestor import extract, load, transform  # noqa: E402
from lightning_eda.orchestration.partitions import partition_key_for_hour  # noqa: E402
from lightning_eda.orchestration.resources import build_resources  # noqa: E402
from lightning_eda.store import catalog, database  # noqa: E402
from lightning_eda.store.parquet_store import ParquetStore  # noqa: E402
from lightning_eda.store.schemas import DATA_TABLES  # noqa: E402
from lightning_eda.testing import lcfa_factory  # noqa: E402
from lightning_eda.testing.faulty_s3 import MODES, FaultyS3  # noqa: E402
from lightning_eda.testing.s3_server import LocalS3  # noqa: E402

PRODUCT = "GLM-L2-LCFA"
DEFAULT_REAL_DIR = PROJECT.parent / "shared" / "data" / "glm"
SLOT = timedelta(seconds=20)
KILL_POINTS = ("staging", "work")


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
    s3: LocalS3,
    bucket: str,
    first_hour: datetime,
    hours: int,
    staging: Path,
    real_dir: Path | None,
    real_every: int,
    log: Callable[[str], None],
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


def run_hour_main(data_dir: str, bucket: str, hour: str, read_timeout: str) -> int:
    """``soak.py _run_hour ...``: one hour's run in a process of its own (the one that gets killed)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    archive_log = logging.getLogger("lightning_eda.ingest.archive")
    archive_log.addHandler(handler)  # its "retrying ..." lines are counted by the soak
    archive_log.setLevel(logging.INFO)
    result = run_hour(Path(data_dir), bucket, datetime.fromisoformat(hour), float(read_timeout))
    return 0 if result.success else 1


def _entries(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def run_hour_killed(
    data_dir: Path, bucket: str, hour: datetime, read_timeout: float, kill_at: str, log_path: Path
) -> dict:
    """Run the hour in a child process and SIGKILL it (and its decoder workers) at ``kill_at``.

    ``staging``: as soon as a new folder appears under ``store/.staging/`` (transform is writing the hour's next
    version, load has not renamed it in); ``work``: as soon as a complete file appears in the hour's ``work/`` folder
    (extract has handed its report to transform). Polls the folders; never sleeps a fixed time.
    """
    store = ParquetStore(data_dir)
    paths = HourPaths(data_dir, bucket, PRODUCT, hour)
    staging_before = _entries(store.staging_root)
    version_before = store.current(paths.key)
    t0 = time.monotonic()
    with open(log_path, "w") as child_log:
        child = subprocess.Popen(
            [sys.executable, str(SCRIPT), "_run_hour", str(data_dir), bucket, hour.isoformat(), str(read_timeout)],
            stdout=child_log,
            stderr=child_log,
            cwd=PROJECT,
            env=dict(os.environ),
            start_new_session=True,  # its own process group: the kill takes its decoder pool with it
        )
    trigger = None
    try:
        while child.poll() is None:
            if kill_at == "staging":
                new = _entries(store.staging_root) - staging_before
                trigger = f"staging folder {sorted(new)[0]}" if new else None
            else:
                files = sorted(f for f in _entries(paths.work_dir) if not f.startswith("."))  # not atomic_write's temp
                trigger = f"work file {files[0]}" if files else None
            if trigger:
                os.killpg(child.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if child.poll() is None and trigger is None:  # the soak itself is being interrupted
            os.killpg(child.pid, signal.SIGKILL)
        returncode = child.wait()
    killed = trigger is not None and returncode == -signal.SIGKILL
    left = sorted(_entries(store.staging_root) - staging_before)
    version_after = store.current(paths.key)
    committed = version_after is not None and (
        version_before is None or version_after.version != version_before.version
    )
    child_retries = sum(1 for line in log_path.read_text(errors="replace").splitlines() if line.startswith("retrying "))
    if killed:
        note = (
            f"{hour:%Y-%m-%d %H}:00 killed after {time.monotonic() - t0:.1f} s at {trigger}: "
            f"{'committed before the kill' if committed else 'nothing committed'}, "
            f"{len(left)} staging folder(s) left, {len(_entries(paths.work_dir))} work file(s) left"
        )
    else:
        note = f"{hour:%Y-%m-%d %H}:00 NOT killed: the child ended with {returncode} before reaching {kill_at}"
    return {"killed": killed, "note": note, "archive_retries": child_retries, "staging_left": left}


class Reader:
    """The reader process (:func:`reader_main`) and what it says."""

    def __init__(self, db_path: Path, log_path: Path):
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "_reader", str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=PROJECT,
        )
        self.connected: dict | None = None
        self.final: dict | None = None
        self.ended = False  # its stdout has closed
        self._messages: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, name="soak-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self._messages.put(json.loads(line))
            except json.JSONDecodeError:
                self._messages.put({"event": "noise", "line": line})
        self._messages.put(None)  # the reader's stdout closed: it has ended

    def _take(self, timeout: float) -> bool:
        """Handle one message; False when none came in time or the reader has ended."""
        if self.ended:
            return False
        try:
            message = self._messages.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return False
        if message is None:
            self.ended = True
            return False
        if message.get("event") == "connected":
            self.connected = message
        elif message.get("event") == "final":
            self.final = message
        return True

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the reader holds glm.duckdb and has counted once (its first counts are in ``connected``)."""
        deadline = time.monotonic() + timeout
        while self.connected is None and self.final is None and not self.ended and time.monotonic() < deadline:
            self._take(deadline - time.monotonic())
        return self.connected is not None

    def finish(self, timeout: float = 120.0) -> dict:
        """Ask the reader to stop; returns its final report (its last query runs on its first connection)."""
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        deadline = time.monotonic() + timeout
        while self.final is None and not self.ended and time.monotonic() < deadline:
            self._take(deadline - time.monotonic())
        try:
            self.proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return {
            **(
                self.final
                or {
                    "connected": self.connected is not None,
                    "errors": 1,
                    "error_samples": ["the reader ended without its final report"],
                }
            ),
            "exit_code": self.proc.returncode,
        }

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def totals(con) -> tuple[int, int]:
    """What the reader counts, through the store's own views: (glm_event rows, glm_hour rows)."""
    events = con.execute("SELECT count(*) FROM glm_event").fetchone()[0]
    hours = con.execute("SELECT count(*) FROM glm_hour").fetchone()[0]
    return int(events), int(hours)


def verify(data_dir: Path, bucket: str, expected: dict[str, dict]) -> dict:
    """Every granule exactly once in glm_file, loaded, with its rows and its bytes; no temporary files left.

    Reads through an in-memory DuckDB over the store (glm.duckdb's own views, without its file: the reader holds it).
    """
    with catalog.connect_store(data_dir) as con:
        files = con.execute(
            "SELECT source_file, count(*), any_value(status), any_value(n_flashes), any_value(n_groups), "
            "any_value(n_events), any_value(hour), any_value(time_start) FROM glm_file GROUP BY 1"
        ).fetchall()
        per_table = {}
        for table in DATA_TABLES:
            per_table[table] = dict(con.execute(f"SELECT source_file, count(*) FROM {table} GROUP BY 1").fetchall())
        duplicate_ids = sum(
            con.execute(f"SELECT count(*) - count(DISTINCT (source_file, {column})) FROM {table}").fetchone()[0]
            for table, column in (("glm_flash", "flash_id"), ("glm_group", "group_id"), ("glm_event", "event_id"))
        )
        statuses = dict(con.execute("SELECT status, count(*) FROM glm_file GROUP BY 1").fetchall())
        final = totals(con)
    seen = {row[0]: row for row in files}
    loaded_once = wrong_counts = time_outside_hour = bad_bytes = 0
    for name, facts in expected.items():
        row = seen.get(name)
        if row is None or row[1] != 1 or row[2] != "loaded":
            continue
        loaded_once += 1
        counts = tuple(row[3:6])
        rows = tuple(per_table[t].get(name, 0) for t in DATA_TABLES)
        if counts != facts["counts"] or rows != facts["counts"]:
            wrong_counts += 1
        hour, time_start = row[6], row[7]
        if time_start is not None and not hour <= time_start < hour + timedelta(hours=1):
            time_outside_hour += 1
        raw = data_dir / "raw" / bucket / hour_prefix(PRODUCT, parse_granule_name(name).start) / name
        if not raw.is_file() or hashlib.sha256(raw.read_bytes()).hexdigest() != facts["sha"]:
            bad_bytes += 1
    # rows of granules glm_file does not list (or lists more than once) are rows too many
    orphan_rows = sum(
        n for table in DATA_TABLES for name, n in per_table[table].items() if name not in seen or seen[name][1] != 1
    )
    return {
        "loaded_once": loaded_once,
        "missing": sum(1 for name in expected if name not in seen),
        "unexpected": sum(1 for name in seen if name not in expected),
        "duplicated": sum(1 for row in files if row[1] != 1),
        "failed": sum(1 for row in files if row[2] != "loaded"),
        "statuses": statuses,
        "wrong_counts": wrong_counts,
        "orphan_rows": orphan_rows,
        "duplicate_ids": int(duplicate_ids),
        "bad_bytes": bad_bytes,
        "part_files": len(list(data_dir.rglob("*.part"))),
        "staging_left": len(_entries(ParquetStore(data_dir).staging_root)),
        "time_outside_hour": time_outside_hour,
        "final_counts": {"glm_event": final[0], "glm_hour": final[1]},
    }


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
            **_reader_figures(reader_report, checks["final_counts"]),
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


def _reader_figures(report: dict | None, final_counts: dict) -> dict:
    """The reader's figures; ``reader_final_matches``: its last query equals the store's totals at the end."""
    if report is None:
        return {"reader": False}
    as_counts = lambda pair: None if pair is None else {"glm_event": pair[0], "glm_hour": pair[1]}  # noqa: E731
    final = as_counts(report.get("final"))
    return {
        "reader": True,
        "reader_connected": bool(report.get("connected")),
        "reader_queries": int(report.get("queries", 0)),
        "reader_errors": int(report.get("errors", 0)),
        "reader_error_samples": [*report.get("error_samples", []), *filter(None, [report.get("final_error")])],
        "reader_saw_decrease": bool(report.get("decreases", 0)),
        "reader_first_counts": as_counts(report.get("first")),
        "reader_last_counts": as_counts(report.get("last")),
        "reader_final_counts": final,
        "reader_final_matches": final is not None and final == final_counts,
        "reader_connect_retries": int(report.get("connect_retries", 0)),
        "reader_exit_code": report.get("exit_code"),
    }


def verdict(figures: dict) -> list[str]:
    """What is wrong with a soak's figures (nothing: every granule ended exactly once, the reader and kill held)."""
    problems = []
    if figures["loaded_once"] != figures["granules"]:
        problems.append(f"loaded_once {figures['loaded_once']} of {figures['granules']}")
    for key in (
        "missing",
        "unexpected",
        "duplicated",
        "failed",
        "wrong_counts",
        "orphan_rows",
        "duplicate_ids",
        "bad_bytes",
        "part_files",
        "failed_runs",
    ):
        if figures[key]:
            problems.append(f"{key} {figures[key]}")
    if figures.get("reader"):
        if not figures["reader_connected"] or figures["reader_queries"] == 0:
            problems.append("the reader never held glm.duckdb")
        if figures["reader_errors"] or figures["reader_exit_code"] != 0:
            problems.append(
                f"reader_errors {figures['reader_errors']} (exit {figures['reader_exit_code']}): "
                f"{figures['reader_error_samples']}"
            )
        if figures["reader_saw_decrease"]:
            problems.append("the reader saw a count decrease")
        if not figures["reader_final_matches"]:
            problems.append(f"reader_final_counts {figures['reader_final_counts']} != {figures['final_counts']}")
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
    if sys.argv[1:2] == ["_run_hour"]:
        sys.exit(run_hour_main(*sys.argv[2:6]))
    sys.exit(main())
