"""Windows as goes2go users ask for them: ``lightning-eda run --recent 30min`` and ``--start``/``--end`` to the
minute, ingesting the hours the window touches and clustering exactly the window (local S3 server, planted granules
whose flashes straddle the minute edges)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from cli_runs import lightning_eda, plant_granule

from lightning_eda.settings import (
    ConfigError,
    TimeWindow,
    hour_in_progress,
    parse_duration,
    parse_minute,
    recent_window,
    time_window,
)
from lightning_eda.store import catalog, database

BUCKET = "noaa-goes16"
HOUR = datetime(2019, 6, 1, 12)
NOW = datetime(2019, 6, 1, 13, 25)  # LIGHTNING_EDA_NOW: the latest complete hour is 12:00-13:00
GRANULE_MINUTES = range(0, 60, 2)  # one 20 s granule every 2 minutes
FLASH_OFFSETS = np.array([-1.5, 0.5, 4.0, 9.0, 13.0, 17.5])  # seconds after each granule's start
CENTRES = [(35.0, -97.0), (31.0, -88.0)]  # two storms


# --- parsing and validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"), [("30min", 30), ("90min", 90), ("2h", 120), ("1h30min", 90), ("45m", 45), (" 2 H ", 120)]
)
def test_durations_as_goes2go_spells_them(text, minutes):
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["30", "min", "-5min", "0min", "1.5h", "30s", ""])
def test_a_bad_duration_names_the_flag(text):
    with pytest.raises(ConfigError, match="--recent"):
        parse_duration(text)


def test_recent_ends_now_and_touches_only_its_hours():
    window = recent_window(timedelta(minutes=50), now=NOW + timedelta(seconds=41))
    assert (window.start, window.end) == (NOW - timedelta(minutes=50), NOW)  # 12:35-13:25: into the hour in progress
    assert window.hours == [HOUR, HOUR + timedelta(hours=1)]
    assert recent_window(timedelta(minutes=20), now=NOW).hours == [HOUR + timedelta(hours=1)]
    assert hour_in_progress(HOUR + timedelta(hours=1), NOW) and not hour_in_progress(HOUR, NOW)


def test_a_window_to_the_minute_touches_the_hours_it_overlaps():
    window = time_window(
        parse_minute("2019-06-01T11:50"), parse_minute("2019-06-01T13:10"), now=NOW + timedelta(hours=1)
    )
    assert window.hours == [HOUR - timedelta(hours=1), HOUR, HOUR + timedelta(hours=1)]
    assert TimeWindow(HOUR, HOUR + timedelta(hours=1)).whole_hours and not window.whole_hours


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (HOUR + timedelta(minutes=40), HOUR + timedelta(minutes=10), "must come after the start"),
        (HOUR, HOUR, "must come after the start"),
        (HOUR, NOW + timedelta(minutes=1), "in the future"),
        (datetime(2016, 12, 31, 23), datetime(2017, 1, 1, 1), "before GLM data exist"),
    ],
)
def test_a_bad_window_is_refused_with_the_flags(start, end, message):
    with pytest.raises(ConfigError, match=message):
        time_window(start, end, now=NOW)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--start", "2019-06-01T12:1O", "--end", "2019-06-01T12:40"], "--start"),
        (["--start", "2019-06-01T12:10", "--end", "June 1st"], "--end"),
        (["--start", "2019-06-01T12:40", "--end", "2019-06-01T12:10"], "--start/--end"),
        (["--start", "2019-06-01T12:10"], "--end"),
        (["--start", "2019-06-01T13:10", "--end", "2019-06-01T13:40"], "in the future"),
        (["--recent", "30"], "--recent"),
        (["--recent", "30min", "--start", "2019-06-01T12:10"], "--recent"),
    ],
)
def test_the_cli_refuses_a_bad_window_with_exit_2_before_any_download(args, flag, tmp_path):
    env = {"LIGHTNING_EDA_NOW": f"{NOW:%Y-%m-%dT%H:%M}", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}
    result = lightning_eda(["run", *args], env, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()


def test_a_bad_clock_names_its_variable(tmp_path):
    result = lightning_eda(["run", "--recent", "30min"], {"LIGHTNING_EDA_NOW": "soon"}, tmp_path)
    assert result.returncode == 2 and "LIGHTNING_EDA_NOW" in result.stderr


# --- through the CLI, against the local S3 server -------------------------------------------------------------------


def storm_tables(rng: np.random.Generator) -> dict:
    """Twelve flashes (one group, one event each) around the two storms, at :data:`FLASH_OFFSETS`."""
    n = 2 * len(FLASH_OFFSETS)
    centre = np.array([CENTRES[i % 2] for i in range(n)])
    lat = centre[:, 0] + rng.normal(0.0, 0.15, n)
    lon = centre[:, 1] + rng.normal(0.0, 0.15, n)
    times = np.repeat(FLASH_OFFSETS, 2)
    ids = np.arange(1, n + 1)
    return {
        "flashes": {
            "flash_id": ids,
            "time_start": times,
            "time_end": times + 0.3,
            "lat": lat,
            "lon": lon,
            "energy": np.full(n, 1e-13),
            "area": np.full(n, 2e8),
            "quality_flag": np.zeros(n, int),
        },
        "groups": {
            "group_id": ids,
            "parent_flash_id": ids,
            "time": times,
            "lat": lat,
            "lon": lon,
            "energy": np.full(n, 5e-15),
            "area": np.full(n, 1.5e8),
            "quality_flag": np.zeros(n, int),
        },
        "events": {
            "event_id": ids,
            "parent_group_id": ids,
            "time": times,
            "lat": lat,
            "lon": lon,
            "energy": np.full(n, 2e-15),
        },
    }


@pytest.fixture(scope="module")
def planted_hour(s3, tmp_path_factory):
    """An hour of granules in ``noaa-goes16``; returns every planted flash's start time."""
    folder = tmp_path_factory.mktemp("granules")
    rng = np.random.default_rng(0)
    starts = []
    for minute in GRANULE_MINUTES:
        granule = HOUR + timedelta(minutes=minute)
        plant_granule(s3, folder, BUCKET, "G16", granule, **storm_tables(rng))
        starts += [granule + timedelta(seconds=float(s)) for s in np.repeat(FLASH_OFFSETS, 2)]
    return s3, starts


@pytest.fixture(scope="module")
def runs(planted_hour, tmp_path_factory):
    """``run --start 12:10 --end 12:40``, then ``run --recent 50min`` at 13:25, in one data folder."""
    s3, _ = planted_hour
    cwd = tmp_path_factory.mktemp("windows")
    env = {
        "S3_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_S3": s3.url,
        "LIGHTNING_EDA_DATA_DIR": "data",
        "LIGHTNING_EDA_NOW": f"{NOW:%Y-%m-%dT%H:%M}",
    }
    results = {}
    for name, args in {
        "start_end": ["--start", "2019-06-01T12:10", "--end", "2019-06-01T12:40"],
        "recent": ["--recent", "50min"],
    }.items():
        result = lightning_eda(["run", *args], env, cwd)
        with catalog.connect_store(cwd / "data") as con:
            results[name] = result, database.read_window_row(con), con.execute("SELECT hour FROM glm_file").fetchall()
    return results


@pytest.mark.slow  # lightning-eda as a subprocess
@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        ("start_end", HOUR + timedelta(minutes=10), HOUR + timedelta(minutes=40)),
        ("recent", NOW - timedelta(minutes=50), NOW),  # 12:35-13:25: the hour in progress has nothing published
    ],
)
def test_the_window_is_clustered_to_the_minute(runs, planted_hour, name, start, end):
    _, starts = planted_hour
    result, window, hours = runs[name]
    assert result.returncode == 0, result.stdout + result.stderr
    assert (window["window_start"], window["window_end"]) == (start, end)
    # the flashes that started in the window, counted from what was planted: a granule of 12:10:00 holds one that
    # started at 12:09:58.5 (left out), the granule of 12:40:00 one of 12:39:58.5 (kept by --end 12:40)
    expected = sum(start <= t < end for t in starts)
    assert window["n_input"] == expected and expected < len(starts)
    assert {hour for (hour,) in hours} == {HOUR}  # only the hours the window touches were ingested
    assert f"window {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC" in result.stdout
    assert "clusters: k=" in result.stdout
    if name == "recent":
        assert "hour 2019-06-01 13:00 UTC (in progress" in result.stdout and "nothing published yet" in result.stdout


IN_PROGRESS = datetime(2019, 6, 1, 15)


@pytest.mark.slow  # lightning-eda as a subprocess
def test_the_hour_in_progress_is_loaded_so_far_then_completed_by_its_partition_run(s3, tmp_path):
    """``--recent`` at 15:31 loads the hour's granules ended by then, outside Dagster (no partition yet), also when
    replaying that moment with the archive already holding a later one; the later one is fetched by the hour's
    partition run after it ends, alone, and no row is loaded twice."""
    folder = tmp_path / "granules"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for minute in (5, 20, 40):  # the 15:40 granule is in the archive, but 15:31 is replayed: not published yet
        plant_granule(s3, folder, BUCKET, "G16", IN_PROGRESS + timedelta(minutes=minute), **storm_tables(rng))
    env = {"S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL_S3": s3.url, "LIGHTNING_EDA_DATA_DIR": "data"}
    early = lightning_eda(["run", "--recent", "30min"], {**env, "LIGHTNING_EDA_NOW": "2019-06-01T15:31"}, tmp_path)
    assert early.returncode == 0, early.stdout + early.stderr
    assert "hour 2019-06-01 15:00 UTC (in progress" in early.stdout and "files: 2 (2 loaded" in early.stdout
    with catalog.connect_store(tmp_path / "data") as con:
        window = database.read_window_row(con)
        assert (window["window_start"], window["window_end"]) == (
            datetime(2019, 6, 1, 15, 1),
            datetime(2019, 6, 1, 15, 31),
        )
        assert window["n_input"] == 2 * 2 * len(FLASH_OFFSETS)  # both granules' flashes lie in 15:01-15:31
    # after the hour, its partition run
    later = lightning_eda(
        ["run", "--start", "2019-06-01T15:00", "--end", "2019-06-01T16:00"],
        {**env, "LIGHTNING_EDA_NOW": "2019-06-01T16:25"},
        tmp_path,
    )
    assert later.returncode == 0, later.stdout + later.stderr
    assert "(partition 2019-06-01-15:00)" in later.stdout and "files: 3 (3 loaded" in later.stdout
    with catalog.connect_store(tmp_path / "data") as con:
        names = [
            name for (name,) in con.execute("SELECT source_file FROM glm_file WHERE hour = ?", [IN_PROGRESS]).fetchall()
        ]
        flashes = con.execute("SELECT count(*), count(DISTINCT (source_file, flash_id)) FROM glm_flash").fetchone()
    assert len(names) == len(set(names)) == 3
    assert flashes[0] == flashes[1] == 3 * 2 * len(FLASH_OFFSETS)
