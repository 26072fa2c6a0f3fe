"""Several hour partitions materialized at once, in separate processes, against one DuckDB file and one instance.

DuckDB takes one writing process per file; the `duckdb` concurrency pool (limit 1, from the project's dagster.yaml)
must make the load steps take turns, so no run fails on the file lock and no hour is lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance

from lcfa_factory import lcfa_name, sample_tables, write_lcfa
from lightning_eda.store import database

PROJECT = Path(__file__).resolve().parents[1]
BUCKET = "noaa-goes16"
HOURS = [datetime(2024, 3, 5, h) for h in (1, 2, 3, 4)]

RUN_ONE_PARTITION = """
import sys
from dagster import DagsterInstance, materialize
from lightning_eda.definitions import ingest_assets
from lightning_eda.orchestration.resources import resources_from_env
with DagsterInstance.get() as instance:
    result = materialize(ingest_assets, partition_key=sys.argv[1], instance=instance, resources=resources_from_env(),
                         raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


@pytest.mark.slow
def test_partitions_launched_together_all_load_and_take_turns_on_duckdb(s3, tmp_path):
    made = tmp_path / "made"
    made.mkdir()
    for hour in HOURS:
        for slot in range(4):
            start = hour + timedelta(minutes=5, seconds=20 * slot)
            s3.put_granule(BUCKET, write_lcfa(made / lcfa_name("G16", start), start=start, **sample_tables()))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    DagsterInstance.from_config(str(home)).dispose()  # create the storage once, before four processes race to
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOES_", "S3_", "LIGHTNING_EDA_"))},
        "DAGSTER_HOME": str(home),
        "S3_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_S3": s3.url,
        "LIGHTNING_EDA_DATA_DIR": str(tmp_path / "data"),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_ONE_PARTITION, hour.strftime("%Y-%m-%d-%H:%M")],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for hour in HOURS
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * len(HOURS), "\n".join(o[-3000:] for o in outputs)

    with database.connect(tmp_path / "data" / "glm.duckdb", read_only=True) as con:
        per_hour = dict(con.execute("SELECT hour, count(*) FROM glm_file WHERE status = 'loaded' GROUP BY 1").fetchall())
        flashes = con.execute("SELECT count(*), count(DISTINCT (source_file, flash_id)) FROM glm_flash").fetchone()
    assert per_hour == {hour: 4 for hour in HOURS}
    assert flashes == (2 * 4 * len(HOURS),) * 2

    # The load steps of the four runs never overlapped: the pool let one at a time open the database.
    intervals = []
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.event_log_storage.supports_global_concurrency_limits
        for run in instance.get_runs():
            events = instance.all_logs(run.run_id)
            times = {
                e.dagster_event.event_type: e.timestamp
                for e in events
                if e.dagster_event and e.dagster_event.step_key == "load"
                and e.dagster_event.event_type in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS)
            }
            intervals.append((times[DagsterEventType.STEP_START], times[DagsterEventType.STEP_SUCCESS]))
    intervals.sort()
    assert len(intervals) == len(HOURS)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(intervals, intervals[1:])), intervals
