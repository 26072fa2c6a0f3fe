"""Reliability of the ingestor under real faults: bad granules, a flaky S3, killed processes, hostile listings,
bad configuration and stray credentials.

Everything runs against the local S3 server (moto over HTTP) under the real key layout, most of it through
``faulty_s3.FaultyS3``, a proxy that fails or cuts every Nth request and records every request it sees. Each test
uses its own bucket, so the session's server can be shared with the other test modules.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize

from lightning_eda.testing import lcfa_factory
from lightning_eda.testing.faulty_s3 import FaultyS3
from lightning_eda.ingest import hourly
from lightning_eda.ingest.archive import ExtractReport
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import DATA_TABLES, ParquetStore
from lightning_eda.ingest.archive import STALE_PART_AGE
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.cli import failure_message
from lightning_eda.goes.layout import hour_prefix
from lightning_eda.orchestration.resources import build_resources

PRODUCT = "GLM-L2-LCFA"
TESTS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = TESTS_DIR.parent
HOUR_2018 = datetime(2018, 7, 2, 4)  # the hour of the real busy minute
KEY_2018 = "2018-07-02-04:00"
HOUR_2019 = datetime(2019, 6, 1, 12)  # lcfa_factory's default granule start
KEY_2019 = "2019-06-01-12:00"
FIRST_THREE = {  # the real busy minute: (flashes, groups, events)
    "OR_GLM-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231.nc": (302, 7182, 18361),
    "OR_GLM-L2-LCFA_G16_s20181830433200_e20181830433400_c20181830433424.nc": (277, 6919, 19956),
    "OR_GLM-L2-LCFA_G16_s20181830433400_e20181830434000_c20181830434029.nc": (274, 7478, 21480),
}
SAMPLE_COUNTS = (2, 3, 5)  # lcfa_factory.sample_tables()
DUMMY_KEY_ID = "AKIARELIABILITYDUMMY7"
DUMMY_SECRET = "reliability-dummy-secret-Zq8wX"
DUMMY_TOKEN = "reliability-dummy-session-token-Vb3k"


# --- helpers -----------------------------------------------------------------------------------------------------


def resources_for(data_dir: Path, bucket: str, **archive) -> dict:
    return build_resources(data_dir, bucket=bucket, **archive)


def run(data_dir: Path, bucket: str, key: str, *, assets=(extract, transform, load), instance=None, **archive):
    return materialize(
        list(assets),
        partition_key=key,
        resources=resources_for(data_dir, bucket, **archive),
        instance=instance,
        raise_on_error=False,
    )


def meta(result, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def run_messages(instance, result) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(result.run_id)]


def rows(db: Path, sql: str, params=()) -> list[tuple]:
    """Query the store beside ``db`` through the same views glm.duckdb holds (whether or not the file exists)."""
    with catalog.connect_store(db.parent) as con:
        return con.execute(sql, list(params)).fetchall()


def files_by_status(db: Path) -> dict[str, tuple]:
    found = rows(db, "SELECT source_file, status, error FROM glm_file")
    return {name: (status, error) for name, status, error in found}


def rows_per_file(db: Path) -> dict[str, tuple[int, int, int]]:
    """{source_file: (flash rows, group rows, event rows)} for every file with at least one row anywhere."""
    counts: dict[str, list[int]] = {}
    for i, table in enumerate(("glm_flash", "glm_group", "glm_event")):
        for name, n in rows(db, f"SELECT source_file, count(*) FROM {table} GROUP BY 1"):
            counts.setdefault(name, [0, 0, 0])[i] = n
    return {name: tuple(n) for name, n in counts.items()}


def snapshot(db: Path) -> dict:
    """The whole store's content except load times (which differ between identical loads), read as users see it."""
    with catalog.connect_store(db.parent) as con:
        tables = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in DATA_TABLES}
        tables["glm_file"] = con.execute("SELECT * EXCLUDE (loaded_at) FROM glm_file ORDER BY ALL").fetchall()
    return tables


def part_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.part"))


def synthetic(folder: Path, start: datetime, platform: str = "G16", **kwargs) -> tuple[str, bytes]:
    """A small LCFA granule starting at ``start`` (sample tables unless given): its name and bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    name = lcfa_factory.lcfa_name(platform, start)
    path = lcfa_factory.write_lcfa(folder / name, start=start, platform=platform, **kwargs)
    return name, path.read_bytes()


def random_tables(rng: np.random.Generator, n_flashes: int, groups_per_flash: int = 3, events_per_group: int = 4):
    """A consistent flash/group/event hierarchy of any size, within the 2019+ packing ranges."""
    n_groups, n_events = n_flashes * groups_per_flash, n_flashes * groups_per_flash * events_per_group
    flash_id = np.arange(1, n_flashes + 1)
    group_id = 3_000_000_000 + np.arange(1, n_groups + 1)
    event_id = 4_000_000_000 + np.arange(1, n_events + 1)
    start = rng.uniform(-1.5, 18.0, n_flashes)
    lat, lon = rng.uniform(-50, 50, n_flashes), rng.uniform(-120, -30, n_flashes)
    g_flash = np.repeat(np.arange(n_flashes), groups_per_flash)
    e_group = np.repeat(np.arange(n_groups), events_per_group)
    g_time = start[g_flash] + rng.uniform(0, 0.3, n_groups)
    g_lat, g_lon = lat[g_flash] + rng.normal(0, 0.02, n_groups), lon[g_flash] + rng.normal(0, 0.02, n_groups)
    return {
        "flashes": {
            "flash_id": flash_id, "time_start": start, "time_end": start + 0.3, "lat": lat, "lon": lon,
            "energy": rng.uniform(1e-14, 1e-12, n_flashes), "area": rng.uniform(1e9, 5e9, n_flashes),
            "quality_flag": np.zeros(n_flashes, dtype=int),
        },
        "groups": {
            "group_id": group_id, "parent_flash_id": flash_id[g_flash], "time": g_time, "lat": g_lat, "lon": g_lon,
            "energy": rng.uniform(1e-15, 1e-13, n_groups), "area": rng.uniform(3e8, 9e8, n_groups),
            "quality_flag": np.zeros(n_groups, dtype=int),
        },
        "events": {
            "event_id": event_id, "parent_group_id": group_id[e_group], "time": g_time[e_group],
            "lat": g_lat[e_group] + rng.normal(0, 0.01, n_events),
            "lon": g_lon[e_group] + rng.normal(0, 0.01, n_events),
            "energy": rng.uniform(3e-16, 1e-14, n_events),
        },
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def proxy(s3, monkeypatch):
    """The fault-injecting proxy in front of the session's S3 server; the pipeline reaches S3 only through it."""
    with FaultyS3(s3.url) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.url)
        yield faulty


# --- bad granules ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_hour(s3, real_granules, tmp_path_factory):
    """The real busy minute beside every kind of bad granule, all under hour 2018-07-02 04 of their own bucket."""
    bucket = "rel-bad-granules"
    folder = tmp_path_factory.mktemp("bad-granules")
    real = {p.name: p for p in real_granules}
    for name in FIRST_THREE:
        s3.put_granule(bucket, real[name])
    busy = real_granules[0].read_bytes()
    slot = iter(HOUR_2018 + timedelta(seconds=20 * i) for i in range(60))
    bad: dict[str, str] = {}  # name -> what is wrong with it

    def put(body: bytes, why: str, platform: str = "G16") -> str:
        name = lcfa_factory.lcfa_name(platform, next(slot))
        s3.put_granule(bucket, body, name=name)
        bad[name] = why
        return name

    put(busy[:1024], "truncated to 1 KiB")
    put(busy[: len(busy) // 2], "truncated to half")
    put(busy[:-1], "one byte short")
    put(b"<html><body><h1>503 Service Unavailable</h1></body></html>\n", "an HTML error page")
    put(b"", "zero bytes")
    _, no_energy = synthetic(folder / "a", HOUR_2018, omit={"event_energy"})
    put(no_energy, "no event_energy variable")
    _, no_times = synthetic(folder / "b", HOUR_2018, omit={"flash_time_offset_of_first_event"})
    put(no_times, "no flash time variable")

    good: dict[str, tuple[int, int, int]] = dict(FIRST_THREE)
    start = next(slot)
    name, body = synthetic(folder, start, global_attributes=False, **lcfa_factory.empty_tables())
    s3.put_granule(bucket, body, name=name)
    good[name] = (0, 0, 0)
    empty_real = next(p for p in real_granules if p.name.startswith("OR_GLM-L2-LCFA_G17"))
    name = lcfa_factory.lcfa_name("G17", next(slot))
    s3.put_granule(bucket, empty_real.read_bytes(), name=name)
    good[name] = (0, 0, 0)
    name, body = synthetic(folder, next(slot))
    s3.put_granule(bucket, body, name=name)
    good[name] = SAMPLE_COUNTS
    return {"bucket": bucket, "bad": bad, "good": good, "real": real}


def test_bad_granules_are_recorded_as_failed_and_the_good_ones_load(bad_hour, s3, tmp_path):
    bucket, bad, good = bad_hour["bucket"], bad_hour["bad"], bad_hour["good"]
    instance = DagsterInstance.ephemeral()
    result = run(tmp_path, bucket, KEY_2018, instance=instance)
    assert result.success, failure_message(result)
    db = tmp_path / "glm.duckdb"

    status = files_by_status(db)
    assert set(status) == set(bad) | set(good)
    for name, why in bad.items():
        state, error = status[name]
        assert state == "failed", f"{why}: {name} should have failed"
        assert error and name in error, f"{why}: the error should name the file, got {error!r}"
    for name in good:
        assert status[name] == ("loaded", None), name
    # empty granules load as zero rows; no row of a failed granule reaches the tables
    assert rows_per_file(db) == {name: n for name, n in good.items() if n != (0, 0, 0)}
    n_columns = rows(db, "SELECT source_file, n_flashes, n_groups, n_events FROM glm_file WHERE status = 'loaded'")
    assert {name: tuple(n) for name, *n in n_columns} == good

    # the run says which granules failed: transform's metadata and log, load's metadata
    transform_meta, load_meta = meta(result, "transform"), meta(result, "load")
    assert transform_meta["failed_granules"] == len(bad) and transform_meta["granules"] == len(good)
    assert all(name in transform_meta["failures"] for name in bad)
    assert load_meta["granules_failed"] == len(bad) and load_meta["granules_loaded"] == len(good)
    messages = run_messages(instance, result)
    for name in bad:
        assert any(name in m and "failed" in m for m in messages), f"no log line names {name}"

    # a granule that loaded before and is now republished truncated: its old rows (and old CSVs) must not survive
    victim = next(iter(FIRST_THREE))
    s3.put_granule(bucket, bad_hour["real"][victim].read_bytes()[:5000], name=victim)
    try:
        again = run(tmp_path, bucket, KEY_2018)
        assert again.success, failure_message(again)
        assert files_by_status(db)[victim][0] == "failed"
        assert victim not in rows_per_file(db)
        assert set(rows_per_file(db)) == {n for n, c in good.items() if c != (0, 0, 0) and n != victim}
    finally:
        s3.put_granule(bucket, bad_hour["real"][victim])


def test_an_hour_where_every_granule_fails_to_decode_is_a_failed_run(s3, tmp_path):
    bucket = "rel-all-bad"
    for i, body in enumerate([b"", b"<html>Access Denied</html>", b"\x89HDF\r\n\x1a\n" + b"\0" * 100]):
        s3.put_granule(bucket, body, name=lcfa_factory.lcfa_name("G16", HOUR_2019 + timedelta(seconds=20 * i)))
    result = run(tmp_path, bucket, KEY_2019)
    assert not result.success
    message = failure_message(result)
    assert message.startswith("transform:") and "all 3 granules" in message and "failed to decode" in message
    assert not result.asset_materializations_for_node("load")
    db = tmp_path / "glm.duckdb"
    assert not db.exists() or not rows(db, "SELECT * FROM glm_file")


def test_an_hour_mixing_whole_and_fractional_second_times_loads(s3, tmp_path):
    # real granules end on a tenth of a second when they are short (docs/glm_format.md;
    # e.g. ..._e20210820634005_...)
    bucket = "rel-fractional"
    staging = tmp_path / "staging"
    staging.mkdir()
    names = []
    for start, seconds in ((HOUR_2019, 20.0), (HOUR_2019 + timedelta(seconds=20), 10.5)):
        name = lcfa_factory.lcfa_name("G16", start, seconds)
        path = lcfa_factory.write_lcfa(staging / name, start=start, seconds=seconds)
        s3.put_granule(bucket, path)
        names.append(name)
    result = run(tmp_path / "data", bucket, KEY_2019)
    assert result.success, failure_message(result)
    ends = rows(tmp_path / "data" / "glm.duckdb", "SELECT source_file, time_end FROM glm_file ORDER BY 1")
    assert ends == [(names[0], HOUR_2019 + timedelta(seconds=20)), (names[1], HOUR_2019 + timedelta(seconds=30.5))]


# --- a flaky S3 --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flaky_hour(s3, tmp_path_factory):
    """Ten granules of hour 2019-06-01 12, two of them large enough to be cut mid-body in several reads."""
    bucket = "rel-flaky"
    folder = tmp_path_factory.mktemp("flaky")
    rng = np.random.default_rng(7)
    granules: dict[str, bytes] = {}
    counts: dict[str, tuple[int, int, int]] = {}
    for i in range(10):
        start = HOUR_2019 + timedelta(seconds=20 * i)
        if i < 2:
            tables = random_tables(rng, 600)
            name, body = synthetic(folder, start, **tables)
            counts[name] = (600, 1800, 7200)
        else:
            name, body = synthetic(folder, start)
            counts[name] = SAMPLE_COUNTS
        s3.put_granule(bucket, body, name=name)
        granules[name] = body
    return {"bucket": bucket, "granules": granules, "counts": counts}


def assert_hour_loaded_exactly_once(db: Path, data_dir: Path, bucket: str, counts: dict, bodies: dict) -> None:
    files = rows(db, "SELECT source_file, status, n_flashes, n_groups, n_events FROM glm_file")
    assert sorted(f[0] for f in files) == sorted(counts), "every granule exactly once in glm_file"
    assert {name: (status, tuple(n)) for name, status, *n in files} == {n: ("loaded", c) for n, c in counts.items()}
    assert rows_per_file(db) == {n: c for n, c in counts.items() if c != (0, 0, 0)}
    for table, id_column in (("glm_flash", "flash_id"), ("glm_group", "group_id"), ("glm_event", "event_id")):
        (dupes,) = rows(db, f"SELECT count(*) - count(DISTINCT (source_file, {id_column})) FROM {table}")[0]
        assert dupes == 0, table
    raw = data_dir / "raw" / bucket / hour_prefix(PRODUCT, HOUR_2019)
    for name, body in bodies.items():
        assert sha((raw / name).read_bytes()) == sha(body), f"{name} on disk differs from the bucket"
    assert part_files(data_dir) == []


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


@pytest.fixture
def no_jitter(monkeypatch):
    """Backoff at the low end of its jitter, so tests that exhaust every retry wait ~2 s instead of ~4."""
    import lightning_eda.ingest.archive

    monkeypatch.setattr(lightning_eda.ingest.archive.random, "random", lambda: 0.0)


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
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
    for name, value in {"S3_BUCKET": bucket, "LIGHTNING_EDA_DATA_DIR": str(tmp_path / "data"),
                        "DAGSTER_HOME": str(tmp_path / "home")}.items():
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
    assert "already loaded, skipped" in capsys.readouterr().out
    assert proxy.object_gets() == []


# --- crashes and overlapping loads -------------------------------------------------------------------------------


def stage(data_dir: Path, bucket: str, granules: dict[str, bytes], hour: datetime = HOUR_2019) -> hourly.HourPaths:
    """Put ``granules`` in the hour's raw folder (and only them) and stage the hour's next version from them."""
    paths = hourly.HourPaths(data_dir, bucket, PRODUCT, hour)
    shutil.rmtree(paths.raw_dir, ignore_errors=True)
    paths.raw_dir.mkdir(parents=True)
    for name, body in granules.items():
        (paths.raw_dir / name).write_bytes(body)
    hourly.write_extract_report(paths, ExtractReport(hour, listed_names=sorted(granules)))
    hourly.transform_hour(paths, ParquetStore(data_dir), redecode=True)
    return paths


def stage_and_load(data_dir: Path, bucket: str, granules: dict[str, bytes], hour: datetime = HOUR_2019) -> None:
    hourly.load_hour(stage(data_dir, bucket, granules, hour), ParquetStore(data_dir))


# Child-process code: a loader that stages an hour then commits it, forever, alternating between two states of the
# hour; with "hang-before" it stops just before the commit's rename, with "hang-after" just after it (before the
# fsync, pruning and clean-up), and says so on stdout.
CHILD_LOAD = """
import sys, time
from pathlib import Path
from lightning_eda.store import parquet_store
from lightning_eda.store.parquet_store import ParquetStore

def install_hang(mode):
    if mode == "hang-before":
        commit = ParquetStore.commit
        def hang(self, key, staged):
            print("BEFORE_RENAME", flush=True)
            time.sleep(600)
        ParquetStore.commit = hang
    elif mode == "hang-after":
        def hang(folder):
            print("AFTER_RENAME", flush=True)
            time.sleep(600)
        parquet_store._fsync_dir = hang
"""

CHILD_LOOP = CHILD_LOAD + """
sys.path.insert(0, "lightning_eda_tests")
from test_reliability import stage_and_load, crash_states
mode, data_dir, bucket, folder = sys.argv[1:]
install_hang(mode)
states = crash_states(Path(folder))
i = 0
while True:
    stage_and_load(Path(data_dir), bucket, states["AB"[i % 2]])
    print("COMMITTED", i, flush=True)
    i += 1
"""


def start_child(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_line(child: subprocess.Popen, prefix: str, timeout: float = 60) -> None:
    result: list[str] = []

    def read():
        for line in child.stdout:
            if line.startswith(prefix):
                result.append(line)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        child.kill()
        raise AssertionError(f"child never printed {prefix!r}: {child.stderr.read()}")


def crash_states(folder: Path) -> dict[str, dict[str, bytes]]:
    """Two small granules (state A) and the same plus a large one (state B) of hour 2019-06-01 12 (deterministic)."""
    rng = np.random.default_rng(11)
    a = dict(synthetic(folder, HOUR_2019 + timedelta(seconds=20 * i)) for i in range(2))
    big = synthetic(folder, HOUR_2019 + timedelta(seconds=40), **random_tables(rng, 3000))
    return {"A": a, "B": {**a, big[0]: big[1]}}


@pytest.fixture(scope="module")
def crash_granules(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    return {"folder": folder, **crash_states(folder)}


B_COUNTS = [SAMPLE_COUNTS, SAMPLE_COUNTS, (3000, 9000, 36000)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hang-before", "hang-after"])
def test_a_first_load_killed_at_its_commit_leaves_the_hour_absent_or_whole(crash_granules, tmp_path, mode):
    bucket = "rel-crash"
    child = start_child(CHILD_LOOP, mode, str(tmp_path), bucket, str(crash_granules["folder"]))
    try:
        wait_for_line(child, "BEFORE_RENAME" if mode == "hang-before" else "AFTER_RENAME")
        # meanwhile the next hour loads beside it: partitions never wait for each other
        later = HOUR_2019 + timedelta(hours=1)
        stage_and_load(tmp_path, bucket, dict([synthetic(tmp_path / "later", later)]), later)
        assert rows(tmp_path / "glm.duckdb", "SELECT hour, loaded FROM glm_hour WHERE hour = ?", [later]) == [(later, 1)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    db = tmp_path / "glm.duckdb"
    hour = rows(db, "SELECT count(*) FROM glm_file WHERE hour = ?", [HOUR_2019])
    if mode == "hang-before":
        assert hour == [(0,)], "the hour was never committed: it is absent"
        assert sorted(rows_per_file(db).values()) == [SAMPLE_COUNTS]  # only the later hour's granule
    else:  # renamed before the kill: the hour is whole state A (the loop's first state)
        assert hour == [(2,)]
        assert sorted(rows_per_file(db).values()) == [SAMPLE_COUNTS] * 3
    stage_and_load(tmp_path, bucket, crash_granules["B"])
    assert sorted(rows_per_file(db).values()) == sorted([*B_COUNTS, SAMPLE_COUNTS])
    ParquetStore(tmp_path).sweep(grace=0, stale=0)
    assert not any((tmp_path / "store" / ".staging").iterdir()), "the killed writer's staging folder is swept"


@pytest.mark.slow
def test_kills_at_any_moment_of_repeated_loads_leave_one_whole_state(crash_granules, tmp_path):
    bucket = "rel-crash"
    db = tmp_path / "glm.duckdb"
    states = {}
    for state in ("A", "B"):
        stage_and_load(tmp_path, bucket, crash_granules[state])
        states[state] = snapshot(db)
    rng = np.random.default_rng(3)
    for attempt in range(4):
        child = start_child(CHILD_LOOP, "loop", str(tmp_path), bucket, str(crash_granules["folder"]))
        try:
            wait_for_line(child, "COMMITTED")
            time.sleep(float(rng.uniform(0.0, 0.4)))  # lands in a decode, a staging write, a rename or a prune
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        after = snapshot(db)
        assert after in (states["A"], states["B"]), f"kill {attempt}: the hour is neither whole state A nor B"
    stage_and_load(tmp_path, bucket, crash_granules["B"])
    assert snapshot(db) == states["B"]


CHILD_RUN = CHILD_LOAD + """
from dagster import materialize
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.resources import build_resources

bucket, data_dir, key = sys.argv[1:4]
install_hang("hang-before")
materialize([extract, transform, load], partition_key=key, resources=build_resources(data_dir, bucket=bucket))
"""


@pytest.mark.slow
def test_a_run_killed_during_load_leaves_the_old_hour_and_the_next_run_completes_it(crash_granules, s3, tmp_path):
    bucket = "rel-crash-run"
    for name, body in crash_granules["A"].items():
        s3.put_granule(bucket, body, name=name)
    first = run(tmp_path, bucket, KEY_2019)
    assert first.success, failure_message(first)
    db = tmp_path / "glm.duckdb"
    old = snapshot(db)
    for name, body in crash_granules["B"].items():
        s3.put_granule(bucket, body, name=name)

    child = start_child(CHILD_RUN, bucket, str(tmp_path), KEY_2019)
    try:
        wait_for_line(child, "BEFORE_RENAME", timeout=120)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert snapshot(db) == old, "the killed load must leave the hour exactly as it was"

    second = run(tmp_path, bucket, KEY_2019)
    assert second.success, failure_message(second)
    expected = {name: SAMPLE_COUNTS for name in crash_granules["A"]}
    expected.update({name: (3000, 9000, 36000) for name in crash_granules["B"] if name not in expected})
    assert rows_per_file(db) == expected
    assert rows(db, "SELECT count(*), count(DISTINCT source_file) FROM glm_file") == [(3, 3)]


@pytest.mark.parametrize("existing", [False, True], ids=["first load", "reload"])
def test_overlapping_loads_of_one_hour_never_duplicate_rows(crash_granules, tmp_path, existing):
    """Three writers of one hour at once (no lock, no pool): each commits a whole version, the newest wins."""
    bucket = "rel-overlap"
    if existing:
        stage_and_load(tmp_path / "first", bucket, crash_granules["A"])
    errors: list[BaseException] = []
    tables = _decoded_state(crash_granules["B"], tmp_path / "decoded")  # netCDF4 decodes in one thread at a time

    def load_once():
        try:
            store = ParquetStore(tmp_path / "first")
            store.commit(hourly.HourPaths(store.data_dir, bucket, PRODUCT, HOUR_2019).key, store.stage(tables))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load_once) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    db = tmp_path / "first" / "glm.duckdb"
    assert rows(db, "SELECT count(*), count(DISTINCT source_file) FROM glm_file") == [(3, 3)]
    assert sorted(rows_per_file(db).values()) == sorted(B_COUNTS)


def test_a_reader_sees_each_hour_entirely_old_or_entirely_new_while_it_is_replaced(crash_granules, tmp_path):
    """A reader querying the four tables again and again while the hour flips between states: each table's rows of
    the hour are always one whole version (one statement spanning the swap may see one table old, another new)."""
    bucket = "rel-reader"
    tables = {state: _decoded_state(crash_granules[state], tmp_path / state) for state in ("A", "B")}
    store = ParquetStore(tmp_path)
    key = hourly.HourPaths(tmp_path, bucket, PRODUCT, HOUR_2019).key
    store.commit(key, store.stage(tables["A"]))
    whole = {"A": (2, 4, 6, 10), "B": (3, 3004, 9006, 36010)}  # files, flashes, groups, events
    seen, stop = set(), threading.Event()

    def read():
        with catalog.connect_store(tmp_path) as con:
            while not stop.is_set():
                seen.add(con.execute(
                    "SELECT (SELECT count(*) FROM glm_file), (SELECT count(*) FROM glm_flash), "
                    "(SELECT count(*) FROM glm_group), (SELECT count(*) FROM glm_event)"
                ).fetchall()[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(12):
            store.commit(key, store.stage(tables["AB"[i % 2 - 1]]))
    finally:
        stop.set()
        reader.join(60)
    assert seen
    for index, table in enumerate(("glm_file", "glm_flash", "glm_group", "glm_event")):
        assert {counts[index] for counts in seen} <= {whole["A"][index], whole["B"][index]}, (table, seen)


def _decoded_state(granules: dict[str, bytes], folder: Path) -> dict:
    """The four tables of an hour holding ``granules``, decoded in this process."""
    folder.mkdir(parents=True, exist_ok=True)
    decoded = []
    for name, body in sorted(granules.items()):
        (folder / name).write_bytes(body)
        decoded.append(hourly.transform_granule(folder / name))
    tables = {table: pa.concat_tables([data[table] for _, data in decoded]) for table in DATA_TABLES}
    return {"glm_file": hourly.files_table([record for record, _ in decoded]), **tables}


def test_only_granule_keys_are_fetched_and_nothing_is_written_outside_the_data_folder(s3, proxy, tmp_path):
    bucket = "rel-hostile"
    data_dir = tmp_path / "sandbox" / "data"
    prefix = hour_prefix(PRODUCT, HOUR_2018)
    good_name, good_body = synthetic(tmp_path / "staging", HOUR_2018 + timedelta(minutes=5))
    s3.put_granule(bucket, good_body, name=good_name)
    tag = uuid.uuid4().hex[:8]
    other_hour = lcfa_factory.lcfa_name("G16", HOUR_2018 + timedelta(hours=1))
    granule_like = lcfa_factory.lcfa_name("G16", HOUR_2018 + timedelta(minutes=7))
    hostile = [
        f"{prefix}../../../../../../escape-{tag}.nc",  # lands beside data/ if joined naively
        f"{prefix}../../../../../../../{granule_like}",  # a valid name after the dot-dots
        f"{prefix}%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/pct-{tag}.nc",
        f"{prefix}..\\..\\..\\..\\..\\..\\bs-{tag}.nc",
        f"{prefix}/{granule_like}",  # an empty folder: '//' in the key
        f"{prefix}./{granule_like}",
        f"{prefix}sub/{granule_like}",
        f"{prefix}{other_hour}",  # a real granule name filed under the wrong hour
        f"{prefix}{granule_like}.part",
        f"{prefix}{granule_like[:-3]}.html",
        f"{prefix}index.html",
        f"{prefix}{granule_like} ",
        f"{prefix}/etc/passwd-{tag}",
        f"{prefix}..",
    ]
    for key in hostile:
        s3.put(bucket, key, good_body)
    listed = {o["Key"] for o in s3.admin.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert set(hostile) <= listed, "moto should store every key verbatim"

    result = run(data_dir, bucket, KEY_2018)
    assert result.success, failure_message(result)
    assert proxy.object_gets() == [prefix + good_name], "only the granule key may be downloaded"
    assert files_by_status(data_dir / "glm.duckdb") == {good_name: ("loaded", None)}
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and data_dir not in p.parents]
    assert [p for p in outside if "staging" not in p.parts] == []
    raw_root = data_dir / "raw" / bucket
    for key in hostile:  # wherever a naive join of the key would have landed, nothing is there
        for variant in (key, key.replace("%2e", "."), key.replace("\\", "/")):
            target = Path(os.path.normpath(raw_root / variant))
            assert not target.is_file() or target == raw_root / prefix / good_name, variant
    assert meta(result, "extract")["granules_listed"] == 1


def test_an_hour_with_no_granules_yet_fails_with_a_clear_message(s3, proxy, tmp_path):
    bucket = "rel-empty-hour"
    s3.create_bucket(bucket)
    s3.put(bucket, hour_prefix(PRODUCT, HOUR_2019) + "index.html", b"not a granule")  # listed, but not a granule
    result = run(tmp_path, bucket, KEY_2019)
    assert not result.success
    message = failure_message(result)
    assert message.startswith("extract: no granules under") and hour_prefix(PRODUCT, HOUR_2019) in message
    assert "not be published yet" in message
    missing = run(tmp_path, "rel-no-such-bucket", KEY_2019)
    assert not missing.success and "NoSuchBucket" in failure_message(missing)
    assert not (tmp_path / "glm.duckdb").exists()


def test_transform_without_a_prior_extract_says_so(s3, tmp_path):
    result = run(tmp_path, "rel-never-extracted", KEY_2019, assets=(transform,))
    assert not result.success
    message = failure_message(result)
    assert "extract" in message, message


# --- configuration -----------------------------------------------------------------------------------------------


ALL_THREE = (extract, transform, load)


@pytest.mark.parametrize(
    "assets, archive, variable",
    [
        (ALL_THREE, {"bucket": "Not_A_Bucket"}, "S3_BUCKET"),
        (ALL_THREE, {"bucket": "noaa-goes16/../x"}, "S3_BUCKET"),
        (ALL_THREE, {"bucket": "ab"}, "S3_BUCKET"),
        (ALL_THREE, {"bucket": "noaa-goes16", "product": "../../etc"}, "PRODUCT"),
        # transform and load alone (as the UI can launch them) name folders after bucket and product too
        ((transform,), {"bucket": "../../escape"}, "S3_BUCKET"),
        ((transform,), {"bucket": "noaa-goes16", "product": "../../etc"}, "PRODUCT"),
        ((load,), {"bucket": "../../escape"}, "S3_BUCKET"),
        ((load,), {"bucket": "noaa-goes16", "product": "../../etc"}, "PRODUCT"),
    ],
    ids=["bucket-case", "bucket-dotdot", "bucket-short", "product", "transform-bucket", "transform-product",
         "load-bucket", "load-product"],
)
def test_malformed_config_fails_before_any_request_or_write(proxy, tmp_path, archive, variable, assets):
    data_dir = tmp_path / "a" / "b" / "data"
    archive = dict(archive)
    bucket = archive.pop("bucket")
    result = run(data_dir, bucket, KEY_2019, assets=assets, **archive)
    assert not result.success
    message = failure_message(result)
    assert variable in message and "Traceback" not in message, message
    assert proxy.requests == 0, [s.path for s in proxy.seen]
    outside = [p for p in tmp_path.rglob("*") if p != data_dir and data_dir not in p.parents]
    assert [p for p in outside if p not in data_dir.parents] == []


# --- credentials -------------------------------------------------------------------------------------------------


def test_credentials_in_the_environment_are_never_sent_or_logged(s3, proxy, tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", DUMMY_TOKEN)
    bucket = "rel-credentials"
    name, body = synthetic(tmp_path / "staging", HOUR_2019)
    s3.put_granule(bucket, body, name=name)
    caplog.set_level("DEBUG", logger="lightning_eda")
    instance = DagsterInstance.ephemeral()
    result = run(tmp_path / "data", bucket, KEY_2019, instance=instance)
    assert result.success, failure_message(result)
    assert proxy.requests >= 2
    secrets = (DUMMY_KEY_ID, DUMMY_SECRET, DUMMY_TOKEN)
    for seen in proxy.seen:
        names = {header.lower() for header, _ in seen.headers}
        assert not names & {"authorization", "x-amz-security-token"}, seen.headers
        assert not any(s in value for _, value in seen.headers for s in secrets), seen.headers
        assert "X-Amz-Credential" not in seen.path and "Signature=" not in seen.path
    out, err = capfd.readouterr()
    logs = "\n".join([out, err, caplog.text, *(m or "" for m in run_messages(instance, result))])
    assert not any(s in logs for s in secrets)


def test_a_missing_aws_profile_does_not_break_anonymous_reads(s3, proxy, tmp_path, monkeypatch):
    bucket = "rel-profile"
    name, body = synthetic(tmp_path / "staging", HOUR_2019)
    s3.put_granule(bucket, body, name=name)
    monkeypatch.setenv("AWS_PROFILE", f"no-such-profile-{uuid.uuid4().hex[:6]}")  # e.g. left over from other work
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    result = run(tmp_path / "data", bucket, KEY_2019)
    assert result.success, failure_message(result)
    assert files_by_status(tmp_path / "data" / "glm.duckdb") == {name: ("loaded", None)}


# --- many hours of faults (reduced soak) -------------------------------------------------------------------------


@pytest.mark.slow
def test_soak_two_hours_through_faults_loads_every_granule_once(s3, tmp_path, glm_dir, monkeypatch):
    spec = importlib.util.spec_from_file_location("soak", PROJECT_DIR / "scripts" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "soak", soak)  # its worker processes look its functions up by module name
    spec.loader.exec_module(soak)
    figures = soak.run_soak(
        s3, workdir=tmp_path, hours=2, fault_every=20, read_timeout=1.0, real_dir=glm_dir, real_every=60
    )
    assert figures["granules"] == 360 and figures["loaded_once"] == 360
    for problem in ("missing", "unexpected", "duplicated", "failed", "wrong_counts", "duplicate_ids", "bad_bytes",
                    "part_files"):
        assert figures[problem] == 0, (problem, figures)
    assert figures["faults"] > 0 and figures["failed_runs"] == 0
    assert figures["orphan_rows"] == 0, figures
    # a load killed mid-hour (at its staging) left nothing; the hour's rerun loaded it once
    assert figures["killed_hours"] == 1, figures["kill_notes"]
    # a reader holding glm.duckdb read-write the whole time: never an error, never a count going down, and its
    # connection, opened after the first hour, saw the second hour and the final totals
    assert figures["reader_queries"] > 0 and figures["reader_errors"] == 0, figures["reader_error_samples"]
    assert figures["reader_exit_code"] == 0 and not figures["reader_saw_decrease"]
    assert figures["reader_final_matches"], (figures["reader_final_counts"], figures["final_counts"])
    assert figures["reader_first_counts"]["glm_hour"] == 1 and figures["reader_final_counts"]["glm_hour"] == 2
