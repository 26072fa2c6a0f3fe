"""S3_BUCKET=east / west: each hour from the bucket of the satellite operational in the slot then, the store keeping
the real bucket, and clustering windows over the alias reading each hour's satellite (local S3 server, granules on
both sides of the GOES-West handover of 2023-01-04 18:00 UTC, and decoys that the other satellite published)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cli_runs import lightning_eda, plant_granule

from lightning_eda.analysis import runs
from lightning_eda.analysis.analysis_store import AnalysisStore
from lightning_eda.analysis.window import WindowRequest
from lightning_eda.goes import satellites
from lightning_eda.settings import ConfigError, bucket_at
from lightning_eda.store import catalog, database
from lightning_eda.store.parquet_store import ParquetStore
from lightning_eda.testing.lcfa_factory import sample_tables

HANDOVER = datetime(2023, 1, 4, 18)  # GOES-18 became GOES-West (NOAA OSPO)
BEFORE, AFTER = HANDOVER - timedelta(hours=1), HANDOVER


# --- the slot table ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "hour", "bucket"),
    [
        ("west", datetime(2023, 1, 4, 17), "noaa-goes17"),
        ("west", datetime(2023, 1, 4, 18), "noaa-goes18"),
        ("west", datetime(2019, 2, 12, 18), "noaa-goes17"),
        ("east", datetime(2017, 12, 18, 0), "noaa-goes16"),
        ("east", datetime(2025, 4, 7, 14), "noaa-goes16"),
        ("EAST", datetime(2025, 4, 7, 15), "noaa-goes19"),
        ("noaa-goes16", datetime(2025, 6, 1, 0), "noaa-goes16"),  # a bucket pins its satellite
    ],
)
def test_an_alias_resolves_to_the_slots_satellite_at_each_handover(alias, hour, bucket):
    assert bucket_at(alias, hour) == bucket


@pytest.mark.parametrize(("alias", "hour"), [("west", datetime(2019, 2, 12, 17)), ("east", datetime(2017, 12, 17, 23))])
def test_an_alias_before_its_first_satellite_is_a_config_error_naming_it(alias, hour):
    with pytest.raises(ConfigError, match=f"S3_BUCKET={alias}.*became GOES-"):
        bucket_at(alias, hour)


def test_a_window_is_cut_at_the_handover():
    spans = satellites.bucket_spans("west", BEFORE + timedelta(minutes=10), AFTER + timedelta(minutes=30))
    assert [(s.bucket, s.start, s.end, s.hours()) for s in spans] == [
        ("noaa-goes17", BEFORE + timedelta(minutes=10), HANDOVER, [BEFORE]),
        ("noaa-goes18", HANDOVER, AFTER + timedelta(minutes=30), [AFTER]),
    ]
    assert satellites.bucket_spans("noaa-goes17", BEFORE, AFTER + timedelta(hours=1))[0].hours() == [BEFORE, AFTER]


# --- against the local S3 server --------------------------------------------------------------------------------


def west_tables() -> dict:
    """The factory's sample flashes moved 40 degrees west, into GOES-West's view (and its event longitude packing)."""
    return {
        name: {column: [v - 40.0 for v in values] if column == "lon" else values for column, values in table.items()}
        for name, table in sample_tables().items()
    }


@pytest.fixture(scope="module")
def handover(s3, tmp_path_factory):
    """Two granules an hour on each side of the handover in the operational satellite's bucket, and one decoy an
    hour from the other satellite (both publish around a handover)."""
    folder = tmp_path_factory.mktemp("granules")
    operational, decoys = set(), set()
    for hour, (bucket, platform), (other, other_platform) in [
        (BEFORE, ("noaa-goes17", "G17"), ("noaa-goes18", "G18")),
        (AFTER, ("noaa-goes18", "G18"), ("noaa-goes17", "G17")),
    ]:
        for minute in (20, 40):
            start = hour + timedelta(minutes=minute)
            operational.add(plant_granule(s3, folder, bucket, platform, start, **west_tables()))
        decoys.add(plant_granule(s3, folder, other, other_platform, hour + timedelta(minutes=30), **west_tables()))
    return s3, operational, decoys


@pytest.fixture(scope="module")
def backfilled(handover, tmp_path_factory):
    s3, operational, decoys = handover
    cwd = tmp_path_factory.mktemp("west")
    env = {"S3_BUCKET": "west", "AWS_ENDPOINT_URL_S3": s3.url, "LIGHTNING_EDA_DATA_DIR": "data"}
    args = ["backfill", "--start", f"{BEFORE:%Y-%m-%dT%H}", "--end", f"{AFTER:%Y-%m-%dT%H}", "--no-cluster"]
    first = lightning_eda(args, env, cwd)
    second = lightning_eda(args, env, cwd)
    return cwd / "data", operational, decoys, first, second


@pytest.mark.slow  # lightning-eda as a subprocess
def test_a_backfill_across_the_handover_reads_each_hour_from_its_satellite(backfilled):
    data_dir, operational, decoys, first, second = backfilled
    assert first.returncode == 0, first.stderr
    with catalog.connect_store(data_dir) as con:
        files = con.execute("SELECT bucket, hour, source_file, status FROM glm_file ORDER BY ALL").fetchall()
    by_hour = {
        (bucket, hour): sorted(f for b, h, f, _ in files if (b, h) == (bucket, hour)) for bucket, hour, *_ in files
    }
    assert set(by_hour) == {("noaa-goes17", BEFORE), ("noaa-goes18", AFTER)}  # the store keeps the real bucket
    assert {f for _, _, f, _ in files} == operational and not decoys & {f for _, _, f, _ in files}
    assert all("_G17_" in f for f in by_hour["noaa-goes17", BEFORE])
    assert all("_G18_" in f for f in by_hour["noaa-goes18", AFTER])
    assert {status for *_, status in files} == {"loaded"}
    # a rerun finds both hours complete in their own buckets and downloads nothing
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already loaded, unchanged in the archive, skipped") == 2, second.stdout


@pytest.mark.slow  # lightning-eda as a subprocess
def test_a_window_over_the_alias_reads_each_hours_satellite(backfilled):
    data_dir, operational, _, *_ = backfilled
    analyses = AnalysisStore(ParquetStore(data_dir))
    runs.preprocess_window(analyses, bucket="west", request=WindowRequest(start=BEFORE, hours=2))
    with analyses.connect() as con:  # the analysis tables (a step's connection holds no GLM hour)
        window = analyses.read_window(con)
        features = database.read_features(con)
    with catalog.connect_store(data_dir) as con:  # the whole store
        loaded = con.execute("SELECT sum(n_flashes) FROM glm_file WHERE status = 'loaded'").fetchone()[0]
    assert window.bucket == "west" and (window.start, window.end) == (BEFORE, AFTER + timedelta(hours=1))
    assert window.n_input == loaded == 2 * len(operational)  # two flashes in each planted granule
    assert set(features["source_file"].astype(str)) <= operational
    assert {"_G17_", "_G18_"} <= {p for p in ("_G17_", "_G18_") for f in features["source_file"].astype(str) if p in f}
    # pinned to one satellite, the same window reads that bucket's hour only
    runs.preprocess_window(analyses, bucket="noaa-goes18", request=WindowRequest(start=BEFORE, hours=2))
    with analyses.connect() as con:
        assert analyses.read_window(con).n_input == 4


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["run"], {"GOES_YEAR": "2018", "GOES_DOY": "183", "GOES_HOUR": "04"}),  # GOES-West was GOES-15 then
        (["backfill", "--start", "2019-02-12T17", "--end", "2019-02-12T18", "--no-cluster"], {}),
    ],
)
def test_an_alias_with_no_satellite_exits_2_before_any_download(args, env, tmp_path):
    result = lightning_eda(args, {**env, "S3_BUCKET": "west", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "S3_BUCKET=west" in lines[0] and "GOES-17" in lines[0], result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.slow  # lightning-eda as a subprocess (the backfill)
def test_the_products_read_each_hour_from_its_satellite_and_cut_to_the_minute(backfilled):
    data_dir, operational, _, *_ = backfilled
    store = ParquetStore(data_dir)
    product = "GLM-L2-LCFA"
    spans = satellites.bucket_spans("west", BEFORE, AFTER + timedelta(hours=1))
    hours = list(database.loaded_granule_rows(store, spans=spans, product=product, tables=("glm_event",)))
    sources = [set(rows["glm_event"]["source_file"].astype(str)) for rows in hours]
    assert len(sources) == 2 and all("_G17_" in f for f in sources[0]) and all("_G18_" in f for f in sources[1])
    assert sources[0] | sources[1] == operational
    # 17:20-18:30: the 17:20 granule's events of 17:19:58.5 are cut, those of 18:20 kept; 18:40's granule is out
    spans = satellites.bucket_spans("west", BEFORE + timedelta(minutes=20), AFTER + timedelta(minutes=30))
    (first, second) = database.loaded_granule_rows(store, spans=spans, product=product, tables=("glm_event",))
    planted = sample_tables()["events"]["time"]  # seconds after each granule's start
    kept_per_granule = sum(t >= 0 for t in planted)
    assert len(first["glm_event"]) == kept_per_granule + len(planted)  # 17:20 cut at its start, 17:40 whole
    assert len(second["glm_event"]) == len(planted)  # 18:20 whole, 18:40 after the end
