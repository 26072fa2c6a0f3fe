"""A resumed backfill lists each complete hour again: a granule published after the first backfill reaches the
second, and an unchanged hour costs one listing and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lightning_eda.ingest.archive import RemoteGranule
from lightning_eda.ingest.decoding import GranuleRecord
from lightning_eda.ingest.hourly import files_table, resume_reasons
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.testing.real_minute import FIRST_THREE, HOUR_2018

BUCKET = "lightning-relist"  # this module's own bucket on the session's server: the late granule is put here
HOUR = ("--start", "2018-07-02T04", "--end", "2018-07-02T04", "--no-cluster")


def backfill(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOES_", "S3_", "LIGHTNING_EDA_"))}
    base.pop("DAGSTER_HOME", None)
    base.pop("BACKFILL_NO_RELIST", None)
    command = [sys.executable, "-m", "lightning_eda.cli", "backfill", *args]
    return subprocess.run(command, env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=300)


def flashes(data_dir: Path) -> int:
    store = ParquetStore(data_dir)
    return store.read(HourKey(BUCKET, "GLM-L2-LCFA", HOUR_2018), "glm_flash").num_rows


def test_a_granule_published_after_the_first_backfill_reaches_the_second(s3, real_granules, tmp_path):
    first_two, late = sorted(FIRST_THREE)[:2], sorted(FIRST_THREE)[2]
    by_name = {path.name: path for path in real_granules}
    for name in first_two:
        s3.put_granule(BUCKET, by_name[name])
    data_dir = tmp_path / "data"
    env = {"S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL_S3": s3.url, "LIGHTNING_EDA_DATA_DIR": str(data_dir)}

    first = backfill(env, tmp_path, *HOUR)
    assert first.returncode == 0, first.stderr
    assert "[1/1] 2018-07-02 04:00 2 granules (0 failed), 579 flashes" in first.stdout
    assert flashes(data_dir) == 579

    raw_dir = data_dir / "raw" / BUCKET
    inodes = {path.name: path.stat().st_ino for path in raw_dir.rglob("*.nc")}
    s3.put_granule(BUCKET, by_name[late])  # NOAA publishes the hour's third granule late
    second = backfill(env, tmp_path, *HOUR)
    assert second.returncode == 0, second.stderr
    assert f"loaded before, running again: 1 granule new ({late})" in second.stdout
    assert "[1/1] 2018-07-02 04:00 3 granules (0 failed), 853 flashes" in second.stdout
    assert flashes(data_dir) == 853
    # only the late granule was fetched: the first two were not downloaded again (their raw files are the same)
    after = {path.name: path.stat().st_ino for path in raw_dir.rglob("*.nc")}
    assert sorted(after) == sorted(FIRST_THREE) and all(after[name] == inodes[name] for name in first_two)

    store = ParquetStore(data_dir)
    key = HourKey(BUCKET, "GLM-L2-LCFA", HOUR_2018)
    version = store.current(key).version
    third = backfill(env, tmp_path, *HOUR)
    assert third.returncode == 0, third.stderr
    assert "[1/1] 2018-07-02 04:00 already loaded, unchanged in the archive, skipped" in third.stdout
    assert store.current(key).version == version  # an unchanged hour writes nothing

    s3.admin.delete_object(Bucket=BUCKET, Key=f"GLM-L2-LCFA/2018/183/04/{late}")  # withdrawn
    frozen = backfill({**env, "BACKFILL_NO_RELIST": "1"}, tmp_path, *HOUR)
    assert frozen.returncode == 0, frozen.stderr
    assert "[1/1] 2018-07-02 04:00 already loaded, skipped" in frozen.stdout  # not listed: not seen
    assert flashes(data_dir) == 853
    relisted = backfill(env, tmp_path, *HOUR)
    assert relisted.returncode == 0, relisted.stderr
    assert f"1 granule no longer listed ({late})" in relisted.stdout
    assert flashes(data_dir) == 579


def test_a_bad_no_relist_value_exits_2(tmp_path):
    result = backfill({"BACKFILL_NO_RELIST": "maybe"}, tmp_path, *HOUR)
    assert result.returncode == 2
    assert "BACKFILL_NO_RELIST" in result.stderr and "Traceback" not in result.stderr


def test_resume_reasons_name_what_changed(tmp_path):
    """The plain decision behind the backfill's lines, on a store holding one hour of two granules."""
    store = ParquetStore(tmp_path)
    key = HourKey(BUCKET, "GLM-L2-LCFA", HOUR_2018)
    assert resume_reasons(store, key, None) == ["not loaded yet"]
    records = [
        GranuleRecord(name, 1000 + i, "loaded", time_start="2018-07-02T04:33:00", time_end="2018-07-02T04:33:20")
        for i, name in enumerate(sorted(FIRST_THREE)[:2])
    ]
    store.commit(key, store.stage({"glm_file": files_table(records)}))
    same = [RemoteGranule(f"p/{r.source_file}", r.size_bytes) for r in records]
    assert resume_reasons(store, key, None) == []  # frozen: not listed
    assert resume_reasons(store, key, same) == []
    assert resume_reasons(store, key, [same[0], RemoteGranule(same[1].key, 5)]) == [
        f"1 granule republished with another size ({records[1].source_file})"
    ]
    assert resume_reasons(store, key, same[:1]) == [f"1 granule no longer listed ({records[1].source_file})"]
