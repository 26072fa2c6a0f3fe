"""`lightning-eda run` as a user runs it: a subprocess, configured only by environment variables."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from lightning_eda.store import database

BUCKET = "noaa-goes16"
HOUR_ENV = {"GOES_YEAR": "2018", "GOES_DOY": "183", "GOES_HOUR": "04"}


def lightning_eda(env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """Run the installed console script (falling back to the module) with a clean, explicit environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOES_", "S3_", "LIGHTNING_EDA_"))}
    base.pop("PRODUCT", None)
    base.pop("DAGSTER_HOME", None)
    script = shutil.which("lightning-eda", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "lightning_eda.cli"]
    return subprocess.run(command + ["run"], env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_run_loads_the_hour_and_a_second_run_changes_nothing(served_hour, tmp_path):
    env = {**HOUR_ENV, "S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL_S3": served_hour.url, "LIGHTNING_EDA_DATA_DIR": "data"}
    first = lightning_eda(env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "flashes: 853" in first.stdout and "groups: 21579" in first.stdout and "events: 59797" in first.stdout
    assert "files: 3 (3 loaded, 0 failed)" in first.stdout
    db = tmp_path / "data" / "glm.duckdb"
    assert str(db.resolve()) in first.stdout
    # without DAGSTER_HOME the run is recorded in ./.dagster_home, the instance `make dev` opens: the UI shows it
    with DagsterInstance.from_config(str(tmp_path / ".dagster_home")) as instance:
        event = instance.get_latest_materialization_event(AssetKey("load"))
        assert event is not None and event.dagster_event.partition == "2018-07-02-04:00"

    def contents():
        with database.connect(db, read_only=True) as con:
            return {
                t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("glm_flash", "glm_group", "glm_event")
            } | {"glm_file": con.execute("SELECT * EXCLUDE (loaded_at) FROM glm_file ORDER BY ALL").fetchall()}

    before = contents()
    second = lightning_eda(env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert contents() == before


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"GOES_YEAR": "2018", "GOES_DOY": "400", "GOES_HOUR": "04"}, "GOES_DOY"),
        ({"GOES_YEAR": "2018", "GOES_DOY": "183", "GOES_HOUR": "24"}, "GOES_HOUR"),
        ({"GOES_YEAR": "2019", "GOES_DOY": "366", "GOES_HOUR": "04"}, "GOES_DOY"),  # 2019 is not a leap year
        ({"GOES_YEAR": "2018", "GOES_DOY": "183"}, "GOES_HOUR"),
        ({**HOUR_ENV, "S3_BUCKET": "Not_A_Bucket"}, "S3_BUCKET"),
        ({**HOUR_ENV, "PRODUCT": "../etc"}, "PRODUCT"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(env, variable, tmp_path):
    # an endpoint nobody listens on: validation must fail before any network access is attempted
    result = lightning_eda({**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_unreachable_endpoint_fails_with_one_clear_line(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**HOUR_ENV, "S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}
    result = lightning_eda(env, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "could not reach" in last and f"127.0.0.1:{port}" in last and "AWS_ENDPOINT_URL_S3" in last
    assert "Traceback" not in result.stderr


def _backfill(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOES_", "S3_", "LIGHTNING_EDA_"))}
    base.pop("DAGSTER_HOME", None)
    command = [sys.executable, "-m", "lightning_eda.cli", "backfill", *args]
    return subprocess.run(command, env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_backfill_loads_each_hour_once_and_resumes(s3, tmp_path):
    """Three hours of factory-made granules (the suite's own files, no shared data needed); hour 2 starts empty."""
    from datetime import datetime, timedelta

    from lightning_eda.testing.lcfa_factory import lcfa_name, sample_tables, write_lcfa

    bucket = "noaa-goes16"
    made = tmp_path / "made"
    made.mkdir()
    for hour in (0, 2):
        for slot in range(3):
            start = datetime(2023, 6, 1, hour, 10) + timedelta(seconds=20 * slot)
            name = lcfa_name("G16", start)
            s3.put_granule(bucket, write_lcfa(made / name, platform="G16", start=start, **sample_tables()))
    env = {"S3_BUCKET": bucket, "AWS_ENDPOINT_URL_S3": s3.url, "LIGHTNING_EDA_DATA_DIR": str(tmp_path / "data")}
    first = _backfill(env, tmp_path, "--start", "2023-06-01T00", "--end", "2023-06-01T02", "--no-cluster")
    assert first.returncode == 1  # hour 01 has no granules: reported, the others still load
    lines = first.stdout.splitlines()
    assert any(line.startswith("[1/3] 2023-06-01 00:00 3 granules (0 failed), 6 flashes") for line in lines), (
        first.stdout
    )
    assert any(line.startswith("[2/3] 2023-06-01 01:00 FAILED") and "no granules" in line for line in lines), (
        first.stdout
    )
    assert any(line.startswith("[3/3] 2023-06-01 02:00 3 granules") for line in lines), first.stdout
    assert "run the same command again" in first.stderr

    for slot in range(2):  # hour 01 gets published late
        start = datetime(2023, 6, 1, 1, 30) + timedelta(seconds=20 * slot)
        s3.put_granule(
            bucket, write_lcfa(made / lcfa_name("G16", start), platform="G16", start=start, **sample_tables())
        )
    second = _backfill(env, tmp_path, "--start", "2023-06-01T00", "--end", "2023-06-01T02", "--no-cluster")
    assert second.returncode == 0, second.stderr
    assert "[1/3] 2023-06-01 00:00 already loaded, unchanged in the archive, skipped" in second.stdout
    assert "[2/3] 2023-06-01 01:00 2 granules" in second.stdout
    assert "[3/3] 2023-06-01 02:00 already loaded, unchanged in the archive, skipped" in second.stdout
    with database.connect(tmp_path / "data" / "glm.duckdb", read_only=True) as con:
        per_hour = con.execute("SELECT hour, count(*) FROM glm_file GROUP BY 1 ORDER BY 1").fetchall()
        flashes = con.execute("SELECT count(*), count(DISTINCT (source_file, flash_id)) FROM glm_flash").fetchone()
    assert [n for _, n in per_hour] == [3, 2, 3]
    assert flashes == (16, 16)  # 8 granules × 2 flashes, each once


def test_backfill_rejects_a_reversed_range(tmp_path):
    result = _backfill({}, tmp_path, "--start", "2023-06-01T05", "--end", "2023-06-01T02")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lightning-eda: error: --end 2023-06-01 02:00 is before --start 2023-06-01 05:00"
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--force"], "--force runs here only: a deployment's runs skip complete hours"),
        ([], "not a webserver address: 'http://' (e.g. http://localhost:3000)"),
    ],
)
def test_backfill_on_a_deployment_rejects_what_it_cannot_do(extra, message, tmp_path):
    url = "http://" if not extra else "http://localhost:1"
    result = _backfill({}, tmp_path, "--start", "2023-06-01T02", "--end", "2023-06-01T05", "--deployment", url, *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [f"lightning-eda: error: {message}"]


def test_backfill_on_an_unreachable_deployment_fails_with_one_clear_line(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = _backfill({}, tmp_path, "--start", "2023-06-01T02", "--end", "2023-06-01T05", "--deployment", url)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"lightning-eda: error: could not launch on the deployment at {url}: ")
