"""Several hour partitions materialized at once, in separate processes, against one data folder and one instance.

Each hour is written into its own folder of the Parquet store, so partitions need no pool and no lock: the load
steps of four runs commit at the same moment (a barrier holds each until all four are there) and every hour lands
exactly once. Under a pool with limit 1, or any single writer, the barrier would never open.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance

from lightning_eda.store import database
from lightning_eda.testing.lcfa_factory import lcfa_name, sample_tables, write_lcfa

PROJECT = Path(__file__).resolve().parents[1]
BUCKET = "noaa-goes16"
HOURS = [datetime(2024, 3, 5, h) for h in (1, 2, 3, 4)]

RUN_ONE_PARTITION = """
import sys, time
from pathlib import Path
from dagster import DagsterInstance, materialize
from lightning_eda.definitions import ingest_assets
from lightning_eda.ingest import hourly
from lightning_eda.orchestration.resources import resources_from_env

key, barrier, parties = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
commit = hourly.load_hour

def load_together(*args, **kwargs):
    (barrier / key.replace(":", "")).touch()
    deadline = time.monotonic() + 300
    while len(list(barrier.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise SystemExit("the loads never ran at the same time: something serialised them")
        time.sleep(0.05)
    return commit(*args, **kwargs)

hourly.load_hour = load_together
with DagsterInstance.get() as instance:
    result = materialize(ingest_assets, partition_key=sys.argv[1], instance=instance, resources=resources_from_env(),
                         raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


@pytest.mark.slow
def test_partitions_launched_together_load_at_the_same_time_and_each_hour_lands_once(s3, tmp_path):
    from lightning_eda.definitions import defs

    job = defs.resolve_job_def("ingest_hour")
    assert all(node.definition.pool is None for node in job.graph.node_dict.values()), "hour writes need no pool"
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
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_ONE_PARTITION, hour.strftime("%Y-%m-%d-%H:%M"), str(barrier), str(len(HOURS))],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for hour in HOURS
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * len(HOURS), "\n".join(o[-3000:] for o in outputs)

    with database.connect(tmp_path / "data" / "glm.duckdb", read_only=True) as con:
        per_hour = dict(
            con.execute("SELECT hour, count(*) FROM glm_file WHERE status = 'loaded' GROUP BY 1").fetchall()
        )
        flashes = con.execute("SELECT count(*), count(DISTINCT (source_file, flash_id)) FROM glm_flash").fetchone()
    assert per_hour == {hour: 4 for hour in HOURS}
    assert flashes == (2 * 4 * len(HOURS),) * 2
    assert sorted(p.name for p in barrier.iterdir()) == sorted(h.strftime("%Y-%m-%d-%H00") for h in HOURS)
