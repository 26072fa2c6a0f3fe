"""A flaky S3 behind ``lightning_eda.testing.faulty_s3.FaultyS3``: throttling, errors, cut bodies and held
connections are retried, a granule that outlives its retries leaves the hour incomplete for the next run, and a
download killed midway is never taken as complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from reliability_helpers import (
    HOUR_2019,
    KEY_2019,
    PRODUCT,
    PROJECT_DIR,
    assert_hour_loaded_exactly_once,
    files_by_status,
    meta,
    part_files,
    rows,
    rows_per_file,
    run,
    sha,
)

from lightning_eda.cli import failure_message
from lightning_eda.goes.layout import hour_prefix
from lightning_eda.ingest.archive import STALE_PART_AGE


def test_throttling_errors_cuts_and_timeouts_are_retried_and_every_granule_loads_once(flaky_hour, proxy, tmp_path):
    bucket, granules, counts = flaky_hour["bucket"], flaky_hour["granules"], flaky_hour["counts"]
    # the proxy holds delayed and stalled connections for 20 s: only the client's own 1 s read timeout ends them early
    proxy.configure(every=3, modes=("slowdown", "error500", "cut", "delay", "stall"), scope="all", delay=20.0)
    result = run(tmp_path, bucket, KEY_2019, read_timeout=1.0, max_attempts=3)
    assert result.success, failure_message(result)
    assert set(proxy.faults) == {"slowdown", "error500", "cut", "delay", "stall"}, proxy.faults
    held = proxy.faults["delay"] + proxy.faults["stall"]
    assert proxy.hung_up_while_held == held, "the client's read_timeout did not end every held connection"
    assert meta(result, "extract")["download_failures"] == 0
    assert_hour_loaded_exactly_once(tmp_path / "glm.duckdb", tmp_path, bucket, counts, granules)
    assert len(proxy.object_gets()) > len(granules), "faulted downloads were fetched again"


def test_a_granule_that_outlives_every_retry_is_recorded_and_a_later_run_completes_the_hour(
    flaky_hour, proxy, tmp_path, no_jitter
):
    bucket, granules, counts = flaky_hour["bucket"], flaky_hour["granules"], flaky_hour["counts"]
    victim = sorted(granules)[3]
    proxy.configure(every=1, modes=("error500", "cut"), scope="objects", match=victim)
    result = run(tmp_path, bucket, KEY_2019, max_attempts=1)
    assert result.success, failure_message(result)
    db = tmp_path / "glm.duckdb"
    state, error = files_by_status(db)[victim]
    # transient: recorded as missing (not as a corrupt file), so the hour is incomplete and the next run retries it
    assert state == "missing" and "download failed" in error and "after 4 attempts" in error, error
    assert rows(db, "SELECT complete, missing FROM glm_hour") == [(False, 1)]
    assert victim not in rows_per_file(db)
    assert meta(result, "extract")["download_failures"] == 1 and victim in meta(result, "transform")["failures"]
    assert part_files(tmp_path) == [] and not list(tmp_path.rglob(victim))
    assert proxy.object_gets().count(hour_prefix(PRODUCT, HOUR_2019) + victim) >= 4  # at least our 4 attempts

    proxy.configure(every=0)
    again = run(tmp_path, bucket, KEY_2019)
    assert again.success
    assert meta(again, "extract")["downloaded"] == 1  # only the missing one
    assert meta(again, "transform")["granules"] == 1  # and only it is decoded; the others come from the store
    assert_hour_loaded_exactly_once(db, tmp_path, bucket, counts, granules)
    assert rows(db, "SELECT complete, missing FROM glm_hour") == [(True, 0)]


def test_an_hour_whose_every_download_fails_is_a_failed_run(flaky_hour, proxy, tmp_path, no_jitter):
    proxy.configure(every=1, modes=("slowdown",), scope="objects")
    result = run(tmp_path, flaky_hour["bucket"], KEY_2019, max_attempts=0)
    assert not result.success
    message = failure_message(result)
    assert message.startswith("extract:") and "every one of the 10 granules failed to download" in message
    assert part_files(tmp_path) == [] and not list(tmp_path.rglob("*.nc"))


def test_a_listing_throttled_beyond_every_retry_fails_the_run_with_the_reason(flaky_hour, proxy, tmp_path):
    proxy.configure(every=1, modes=("slowdown",), scope="list")
    result = run(tmp_path, flaky_hour["bucket"], KEY_2019, max_attempts=1)
    assert not result.success
    message = failure_message(result)
    assert message.startswith("extract:") and "SlowDown" in message and "ListObjectsV2" in message, message
    assert proxy.object_gets() == [] and not (tmp_path / "raw").exists()


CHILD_EXTRACT = """
import sys
from datetime import datetime
from pathlib import Path
from lightning_eda.ingest.archive import S3Archive, extract_hour, make_s3_client

endpoint, bucket, raw_root = sys.argv[1:4]
archive = S3Archive(make_s3_client(endpoint_url=endpoint), bucket, "GLM-L2-LCFA")
extract_hour(archive, datetime(2019, 6, 1, 12), Path(raw_root), max_workers=2)
"""


@pytest.mark.slow
def test_a_download_killed_midway_is_never_taken_as_complete(flaky_hour, proxy, tmp_path):
    bucket, granules, counts = flaky_hour["bucket"], flaky_hour["granules"], flaky_hour["counts"]
    big = sorted(granules)[0]  # ~200 KB: the half sent before the stall spans a whole 64 KiB read
    raw = tmp_path / "raw" / bucket / hour_prefix(PRODUCT, HOUR_2019)
    # the granule stalls after half its body, long enough for the kill to land mid-download
    proxy.configure(every=1, modes=("stall",), scope="objects", match=big, delay=60)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_EXTRACT, proxy.url, bucket, str(tmp_path / "raw" / bucket)],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        others_done = False
        while not (others_done and any(p.stat().st_size for p in part_files(tmp_path))):
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "the download never stalled"
            time.sleep(0.05)
            others_done = raw.is_dir() and len(list(raw.glob("*.nc"))) == len(granules) - 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    leftovers = part_files(tmp_path)
    assert len(leftovers) == 1 and 0 < leftovers[0].stat().st_size < len(granules[big])
    assert not (raw / big).exists(), "a partial download must never sit under the granule's name"

    # another partial file, under the final name this time (say, copied by hand): its size gives it away
    other = sorted(granules)[1]
    (raw / other).write_bytes(granules[other][:1000])
    # the killed download's temporary file, once old, is cleaned up; a fresh one may belong to a live download
    old = time.time() - 2 * STALE_PART_AGE
    os.utime(leftovers[0], (old, old))
    live = raw / f".{sorted(granules)[2]}.live.part"
    live.write_bytes(b"still downloading")

    proxy.configure(every=0)
    result = run(tmp_path, bucket, KEY_2019)
    assert result.success, failure_message(result)
    extract_meta = meta(result, "extract")
    assert extract_meta["downloaded"] == 2  # the killed one and the short one; the others were complete
    assert extract_meta["already_present"] == len(granules) - 2
    assert sha((raw / big).read_bytes()) == sha(granules[big])
    assert part_files(tmp_path) == [live]
    live.unlink()
    assert_hour_loaded_exactly_once(tmp_path / "glm.duckdb", tmp_path, bucket, counts, granules)


@pytest.mark.slow
def test_a_resumed_backfill_completes_an_incomplete_hour_and_skips_complete_ones(
    flaky_hour, proxy, tmp_path, monkeypatch, capsys, no_jitter
):
    """The CLI, in process: a granule that outlives its retries leaves the hour incomplete, and says so; the same
    command again fetches and decodes only that granule; once complete, the hour is skipped."""
    from lightning_eda import cli

    bucket, granules, counts = flaky_hour["bucket"], flaky_hour["granules"], flaky_hour["counts"]
    victim = sorted(granules)[5]
    for name, value in {
        "S3_BUCKET": bucket,
        "LIGHTNING_EDA_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }.items():
        monkeypatch.setenv(name, value)
    hour = ["--start", "2019-06-01T12", "--end", "2019-06-01T12", "--no-cluster"]
    proxy.configure(every=1, modes=("cut",), scope="objects", match=victim)
    assert cli.main(["backfill", *hour]) == 0
    first = capsys.readouterr().out
    assert "INCOMPLETE: 1 granules missing (download failed" in first and victim in first, first
    assert "hours are incomplete; run the same command again" in first

    proxy.configure(every=0)
    proxy.clear()
    assert cli.main(["backfill", *hour]) == 0
    second = capsys.readouterr().out
    assert "INCOMPLETE" not in second, second
    assert proxy.object_gets() == [hour_prefix(PRODUCT, HOUR_2019) + victim]  # only the missing granule
    assert_hour_loaded_exactly_once(tmp_path / "data" / "glm.duckdb", tmp_path / "data", bucket, counts, granules)

    proxy.clear()
    assert cli.main(["backfill", *hour]) == 0
    assert "already loaded, unchanged in the archive, skipped" in capsys.readouterr().out  # listed, nothing fetched
    assert proxy.object_gets() == []
