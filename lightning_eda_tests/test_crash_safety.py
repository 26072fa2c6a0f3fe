"""Loads killed at any moment (child processes SIGKILLed at or around the store's commit) and overlapping loads of
one hour: the hour is always absent or one whole version, and a reader never sees a mix."""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from reliability_helpers import (
    HOUR_2019,
    KEY_2019,
    PRODUCT,
    SAMPLE_COUNTS,
    decoded_state,
    rows,
    rows_per_file,
    run,
    snapshot,
    stage_and_load,
    start_child,
    synthetic,
    wait_for_line,
)

from lightning_eda.cli import failure_message
from lightning_eda.ingest import hourly
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import ParquetStore

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

CHILD_LOOP = (
    CHILD_LOAD
    + """
from reliability_helpers import crash_states, stage_and_load
mode, data_dir, bucket, folder = sys.argv[1:]
install_hang(mode)
states = crash_states(Path(folder))
i = 0
while True:
    stage_and_load(Path(data_dir), bucket, states["AB"[i % 2]])
    print("COMMITTED", i, flush=True)
    i += 1
"""
)


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
        assert rows(tmp_path / "glm.duckdb", "SELECT hour, loaded FROM glm_hour WHERE hour = ?", [later]) == [
            (later, 1)
        ]
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


CHILD_RUN = (
    CHILD_LOAD
    + """
from dagster import materialize
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.resources import build_resources

bucket, data_dir, key = sys.argv[1:4]
install_hang("hang-before")
materialize([extract, transform, load], partition_key=key, resources=build_resources(data_dir, bucket=bucket))
"""
)


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
    tables = decoded_state(crash_granules["B"], tmp_path / "decoded")  # netCDF4 decodes in one thread at a time

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
    tables = {state: decoded_state(crash_granules[state], tmp_path / state) for state in ("A", "B")}
    store = ParquetStore(tmp_path)
    key = hourly.HourPaths(tmp_path, bucket, PRODUCT, HOUR_2019).key
    store.commit(key, store.stage(tables["A"]))
    whole = {"A": (2, 4, 6, 10), "B": (3, 3004, 9006, 36010)}  # files, flashes, groups, events
    seen, stop = set(), threading.Event()

    def read():
        with catalog.connect_store(tmp_path) as con:
            while not stop.is_set():
                seen.add(
                    con.execute(
                        "SELECT (SELECT count(*) FROM glm_file), (SELECT count(*) FROM glm_flash), "
                        "(SELECT count(*) FROM glm_group), (SELECT count(*) FROM glm_event)"
                    ).fetchall()[0]
                )

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
