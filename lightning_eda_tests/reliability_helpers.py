"""What the reliability tests share: runs of the ingest assets that may fail, the store read back as users see it,
synthetic granules and hours, and child processes to kill.

The fixtures these tests use (the faulty proxy, the bad, flaky and crash-test hours) are in ``fixtures_faults.py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from dagster import materialize
from ingest_runs import resources_for

from lightning_eda.goes.layout import hour_prefix
from lightning_eda.ingest import decoding, hourly
from lightning_eda.ingest.archive import ExtractReport
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import ParquetStore
from lightning_eda.store.schemas import DATA_TABLES
from lightning_eda.testing import lcfa_factory

PRODUCT = "GLM-L2-LCFA"
TESTS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = TESTS_DIR.parent
HOUR_2019 = datetime(2019, 6, 1, 12)  # lcfa_factory's default granule start
KEY_2019 = "2019-06-01-12:00"
SAMPLE_COUNTS = (2, 3, 5)  # lcfa_factory.sample_tables()


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
            "flash_id": flash_id,
            "time_start": start,
            "time_end": start + 0.3,
            "lat": lat,
            "lon": lon,
            "energy": rng.uniform(1e-14, 1e-12, n_flashes),
            "area": rng.uniform(1e9, 5e9, n_flashes),
            "quality_flag": np.zeros(n_flashes, dtype=int),
        },
        "groups": {
            "group_id": group_id,
            "parent_flash_id": flash_id[g_flash],
            "time": g_time,
            "lat": g_lat,
            "lon": g_lon,
            "energy": rng.uniform(1e-15, 1e-13, n_groups),
            "area": rng.uniform(3e8, 9e8, n_groups),
            "quality_flag": np.zeros(n_groups, dtype=int),
        },
        "events": {
            "event_id": event_id,
            "parent_group_id": group_id[e_group],
            "time": g_time[e_group],
            "lat": g_lat[e_group] + rng.normal(0, 0.01, n_events),
            "lon": g_lon[e_group] + rng.normal(0, 0.01, n_events),
            "energy": rng.uniform(3e-16, 1e-14, n_events),
        },
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def start_child(script: str, *args: str) -> subprocess.Popen:
    """``python -c script args`` in this test's environment (its S3 endpoint too), able to import this module."""
    path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=PROJECT_DIR,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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


def decoded_state(granules: dict[str, bytes], folder: Path) -> dict:
    """The four tables of an hour holding ``granules``, decoded in this process."""
    folder.mkdir(parents=True, exist_ok=True)
    decoded = []
    for name, body in sorted(granules.items()):
        (folder / name).write_bytes(body)
        decoded.append(decoding.transform_granule(folder / name))
    tables = {table: pa.concat_tables([data[table] for _, data in decoded]) for table in DATA_TABLES}
    return {"glm_file": hourly.files_table([record for record, _ in decoded]), **tables}
