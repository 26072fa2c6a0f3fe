"""One hour through the real ``extract → transform → load`` assets: in this process, or in a child SIGKILLed mid-hour.

Run as ``python _hour_run.py <data dir> <bucket> <hour> <read timeout>`` (by :func:`run_hour_killed`), it is the
child that gets killed; its archive's "retrying ..." lines go to stderr, where the soak counts them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from _granule_day import PRODUCT
from _store_check import entries
from dagster import materialize

from lightning_eda.ingest.hourly import HourPaths
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.partitions import partition_key_for_hour
from lightning_eda.orchestration.resources import build_resources
from lightning_eda.store.parquet_store import ParquetStore

SCRIPT = Path(__file__).resolve()
KILL_POINTS = ("staging", "work")


def run_hour(data_dir: Path, bucket: str, hour: datetime, read_timeout: float):
    return materialize(
        [extract, transform, load],
        partition_key=partition_key_for_hour(hour),
        resources=build_resources(data_dir, bucket=bucket, read_timeout=read_timeout),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )


def run_hour_main(data_dir: str, bucket: str, hour: str, read_timeout: str) -> int:
    """One hour's run in a process of its own (the one that gets killed)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    archive_log = logging.getLogger("lightning_eda.ingest.archive")
    archive_log.addHandler(handler)  # its "retrying ..." lines are counted by the soak
    archive_log.setLevel(logging.INFO)
    result = run_hour(Path(data_dir), bucket, datetime.fromisoformat(hour), float(read_timeout))
    return 0 if result.success else 1


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
    staging_before = entries(store.staging_root)
    version_before = store.current(paths.key)
    t0 = time.monotonic()
    with open(log_path, "w") as child_log:
        child = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(data_dir), bucket, hour.isoformat(), str(read_timeout)],
            stdout=child_log,
            stderr=child_log,
            cwd=SCRIPT.parents[1],
            env=dict(os.environ),
            start_new_session=True,  # its own process group: the kill takes its decoder pool with it
        )
    trigger = None
    try:
        while child.poll() is None:
            if kill_at == "staging":
                new = entries(store.staging_root) - staging_before
                trigger = f"staging folder {sorted(new)[0]}" if new else None
            else:
                files = sorted(f for f in entries(paths.work_dir) if not f.startswith("."))  # not atomic_write's temp
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
    left = sorted(entries(store.staging_root) - staging_before)
    version_after = store.current(paths.key)
    committed = version_after is not None and (
        version_before is None or version_after.version != version_before.version
    )
    child_retries = sum(1 for line in log_path.read_text(errors="replace").splitlines() if line.startswith("retrying "))
    if killed:
        note = (
            f"{hour:%Y-%m-%d %H}:00 killed after {time.monotonic() - t0:.1f} s at {trigger}: "
            f"{'committed before the kill' if committed else 'nothing committed'}, "
            f"{len(left)} staging folder(s) left, {len(entries(paths.work_dir))} work file(s) left"
        )
    else:
        note = f"{hour:%Y-%m-%d %H}:00 NOT killed: the child ended with {returncode} before reaching {kill_at}"
    return {"killed": killed, "note": note, "archive_retries": child_retries, "staging_left": left}


if __name__ == "__main__":
    sys.exit(run_hour_main(*sys.argv[1:5]))
