"""The ``storm_tracks`` asset through the store: the planted moving storms written as two GLM hours, tracked by one
two-hour run and by two one-hour runs; the hour folders, the views in glm.duckdb, the plots and the CLI's lines."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster import materialize
from moving_storms import CENTRE, NOISE_CELL, moving_storms
from sklearn.metrics import adjusted_rand_score

from lightning_eda import cli
from lightning_eda.analysis import track_runs
from lightning_eda.analysis.analysis_store import PLOT_FILES
from lightning_eda.analysis.features import LatLonBox
from lightning_eda.analysis.jumps import ERDMANN_POELMAN_2023, SCHULTZ_2009
from lightning_eda.analysis.track_frames import SUB_SATELLITE_LON, projection_centre, storm_frames
from lightning_eda.orchestration.assets.preprocessor import preprocessor
from lightning_eda.orchestration.assets.tracking import StormTracksConfig, storm_tracks
from lightning_eda.orchestration.resources import build_resources
from lightning_eda.plots.output import PNG_SIGNATURE
from lightning_eda.settings import DEFAULT_BUCKET, DEFAULT_PRODUCT, Settings
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.store.track_hours import TRACK_TABLES, TrackHours

T0 = pd.Timestamp("2024-06-01 18:00")
#: GOES-East's bucket in 2024: where the default S3_BUCKET=east reads (and the tracks keep) T0's hours.
BUCKET = "noaa-goes16"
HOUR = pd.Timedelta(hours=1)
#: A region around the planted scene: the tracks' plane is centred on it, as on the scene's own CENTRE.
REGION = {"lat_min": 27.0, "lat_max": 43.0, "lon_min": -107.0, "lon_max": -83.0}
ORDERED = {
    "storm_track": ["track_id", "frame_start"],
    "flash_track": ["time_start", "source_file", "flash_id"],
    "track_event": ["frame_start", "event", "track_id"],
    "track_summary": ["track_id"],
    "track_rate": ["track_id", "period_start"],
    "track_jump": ["track_id", "period_start"],
}


@pytest.fixture(scope="module")
def scene():
    return moving_storms(T0, seed=0)


def load_planted_hours(data_dir, scene) -> None:
    """The scene's flashes committed into the store as two loaded GLM hours, one granule per 20 s, as ingest would."""
    store = ParquetStore(data_dir)
    store.ensure()
    flashes = scene.flashes.assign(area_saturated=False, quality_flag=np.int16(0))
    for hour in (T0, T0 + HOUR):
        rows = flashes[(flashes["time_start"] >= hour) & (flashes["time_start"] < hour + HOUR)]
        files = rows.groupby("source_file", sort=True).agg(
            time_start=("time_start", "min"), time_end=("time_end", "max"), n_flashes=("flash_id", "size")
        )
        glm_file = files.reset_index().assign(
            platform="G16",
            orbital_slot="GOES-East",
            n_groups=0,
            n_events=0,
            size_bytes=0,
            status="loaded",
            error=None,
            loaded_at=pd.Timestamp("2024-06-02"),
        )
        tables = {
            "glm_file": pa.Table.from_pandas(glm_file),
            "glm_flash": pa.Table.from_pandas(rows.drop(columns="cell")),
        }
        store.commit(HourKey(BUCKET, DEFAULT_PRODUCT, hour.to_pydatetime()), store.stage(tables))


def track(data_dir, start: pd.Timestamp, hours: int):
    run_config = {
        "ops": {
            "preprocessor": {"config": {"window_start": f"{start:%Y-%m-%d %H:%M}", "window_hours": hours, **REGION}},
        }
    }
    result = materialize([preprocessor, storm_tracks], resources=build_resources(data_dir), run_config=run_config)
    assert result.success
    return result


def tables(data_dir) -> dict[str, pd.DataFrame]:
    with catalog.connect_store(data_dir) as con:
        return {
            name: con.execute(f"SELECT * FROM {name} ORDER BY {', '.join(order)}").df()
            for name, order in ORDERED.items()
        }


@pytest.fixture(scope="module")
def one_run(scene, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("one_run")
    load_planted_hours(data_dir, scene)
    result = track(data_dir, T0, 2)
    return data_dir, result


@pytest.fixture(scope="module")
def hour_by_hour(scene, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("hour_by_hour")
    load_planted_hours(data_dir, scene)
    track(data_dir, T0, 1)
    second = track(data_dir, T0 + HOUR, 1)
    return data_dir, second


def test_two_one_hour_runs_give_the_tables_of_one_two_hour_run(one_run, hour_by_hour):
    whole, parts = tables(one_run[0]), tables(hour_by_hour[0])
    for name in ORDERED:
        pd.testing.assert_frame_equal(parts[name], whole[name], check_exact=True, obj=name)
    assert len(whole["storm_track"]) and len(whole["track_event"]) and len(whole["track_jump"])
    meta = hour_by_hour[1].asset_materializations_for_node("storm_tracks")[0].metadata
    assert meta["continued_from"].value == "2024-06-01 18:00"


def test_re_running_the_first_hour_changes_nothing(scene, tmp_path):
    load_planted_hours(tmp_path, scene)
    track(tmp_path, T0, 2)
    before = tables(tmp_path)
    later_hour = TrackHours(ParquetStore(tmp_path)).hour_dir(BUCKET, (T0 + HOUR).to_pydatetime())
    later_files = {path.name: path.stat().st_mtime_ns for path in later_hour.iterdir()}
    track(tmp_path, T0, 1)
    after = tables(tmp_path)
    for name in ORDERED:
        pd.testing.assert_frame_equal(after[name], before[name], check_exact=True, obj=name)
    assert {path.name: path.stat().st_mtime_ns for path in later_hour.iterdir()} == later_files


def planted_cells(scene, flash_track: pd.DataFrame) -> np.ndarray:
    cells = scene.flashes.set_index(["source_file", "flash_id"])["cell"]
    return cells.loc[list(zip(flash_track["source_file"], flash_track["flash_id"], strict=True))].to_numpy()


def majority(flash_track, cells, cell) -> int:
    return int(flash_track.loc[cells == cell, "track_id"].mode().iloc[0])


def test_planted_cells_are_tracks_with_their_split_merge_and_jump(scene, one_run):
    found = tables(one_run[0])
    flash_track = found["flash_track"]
    cells = planted_cells(scene, flash_track)
    planted = cells != NOISE_CELL
    assert adjusted_rand_score(cells[planted], flash_track["track_id"].fillna(-1).to_numpy()[planted]) >= 0.9
    track_of = {cell: majority(flash_track, cells, cell) for cell in np.unique(cells[planted])}
    assert len(set(track_of.values())) == len(track_of)
    events = found["track_event"]
    parent, child, _ = scene.split
    assert events[(events["event"] == "split")][["track_id", "other_track_id"]].values.tolist() == [
        [track_of[child], track_of[parent]]
    ]
    ending, continuing, _ = scene.merge
    assert events[(events["event"] == "merge")][["track_id", "other_track_id"]].values.tolist() == [
        [track_of[ending], track_of[continuing]]
    ]
    summary = found["track_summary"].set_index("track_id")
    assert summary.index.is_unique, "one summary row per track, across hours"
    assert summary.loc[track_of[ending], "merged_into"] == track_of[continuing]
    jump_cell, jump_at = scene.jump
    jumps = found["track_jump"]
    flagged = jumps.loc[jumps["track_id"] == track_of[jump_cell], "period_start"]
    assert len(flagged) == 1 and abs(flagged.iloc[0] - jump_at) <= pd.Timedelta(minutes=2)
    assert not jumps["track_id"].isin([track_of[c] for c in scene.steady_cells]).any()
    assert summary.loc[track_of[jump_cell], "n_jumps"] == 1


def test_the_plots_are_in_the_metadata_and_on_disk(one_run):
    data_dir, result = one_run
    meta = result.asset_materializations_for_node("storm_tracks")[0].metadata
    for key, plot in (("map", "storm_tracks"), ("flash_rate", "track_flash_rate")):
        assert "data:image/png;base64," in meta[key].value
        path = data_dir / "plots" / PLOT_FILES[plot]
        assert meta[f"{key}_path"].value == str(path) and path.read_bytes().startswith(PNG_SIGNATURE)
    assert meta["tracks"].value >= 15 and meta["lightning_jumps"].value >= 1


def test_the_views_answer_in_glm_duckdb_and_on_an_empty_store(one_run, tmp_path):
    data_dir = one_run[0]
    catalog.refresh_database(data_dir)
    with duckdb.connect(str(catalog.database_path(data_dir)), read_only=True) as con:
        n_tracks = con.execute("SELECT count(*), count(DISTINCT track_id) FROM track_summary").fetchone()
        assert n_tracks[0] == n_tracks[1] >= 15
        assert con.execute("SELECT count(*) FROM track_jump").fetchone()[0] >= 1
    with catalog.connect_store(tmp_path) as con:
        for table in (*TRACK_TABLES, "track_jump"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_the_cli_lists_the_strongest_tracks(one_run, capsys):
    data_dir, result = one_run
    cli._print_track_summary(
        result, Settings(bucket=DEFAULT_BUCKET, product=DEFAULT_PRODUCT, data_dir=data_dir, source_dir=None)
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("storm tracks: ") and "1 splits, 1 merges" in lines[0] and "(started afresh)" in lines[0]
    assert len(lines) == 6 and all(line.startswith("  track 2024060118") for line in lines[1:])
    assert "flashes/min" in lines[1] and " km, peak " in lines[1]


def test_the_plane_is_the_region_or_the_satellite():
    box = LatLonBox(lat_min=30.0, lat_max=40.0, lon_min=-101.0, lon_max=-89.0)
    assert projection_centre(box, "noaa-goes16") == CENTRE
    assert projection_centre(None, "noaa-goes18") == (0.0, SUB_SATELLITE_LON[18])
    across = LatLonBox(lat_min=-10.0, lat_max=10.0, lon_min=170.0, lon_max=-170.0)
    assert projection_centre(across, "x") == (0.0, -180.0)
    assert projection_centre(None, "my-mirror", "OR_GLM-L2-LCFA_G17_s20200160612000.nc") == (0.0, -137.2)
    with pytest.raises(ValueError, match="region"):
        projection_centre(None, "my-mirror")


def test_storm_frames_keeps_two_expected_cells_apart_in_one_segment():
    rng = np.random.default_rng(3)
    a = rng.normal([0.0, 0.0], 4.0, (200, 2))
    b = rng.normal([18.0, 0.0], 4.0, (200, 2))
    points = np.vstack([a, b])
    alone = storm_frames(points[:, 0], points[:, 1], None)
    assert len(np.unique(alone[alone >= 0])) == 1, "the density does not separate them: one storm by itself"
    seeded = storm_frames(points[:, 0], points[:, 1], np.array([[0.0, 0.0], [18.0, 0.0]]))
    assert adjusted_rand_score(np.repeat([0, 1], 200), seeded) >= 0.9
    assert (storm_frames(np.array([]), np.array([]), None) == np.array([])).all()


def test_the_jump_criteria_are_a_preset_with_overrides():
    assert track_runs.jump_criteria("schultz2009") == SCHULTZ_2009
    tuned = track_runs.jump_criteria("erdmann_poelman2023", sigma_level=1.0)
    assert (tuned.sigma_level, tuned.rate_threshold) == (1.0, ERDMANN_POELMAN_2023.rate_threshold)
    assert track_runs.jump_criteria("schultz2009", rate_threshold=5.0).rate_threshold == 5.0
    with pytest.raises(ValueError, match="schultz2009, erdmann_poelman2023"):
        track_runs.jump_criteria("schultz")
    with pytest.raises(ValueError, match="sigma_level"):
        StormTracksConfig(sigma_level=-1.0).settings()
