"""The store's flash, group and event files are GeoParquet: geopandas reads them as points equal to lat/lon, the
files stay small, and the DuckDB views keep their documented columns."""

from __future__ import annotations

import json
import shutil

import geopandas
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import materialize

from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.resources import build_resources
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.store.schemas import DATA_TABLES, GLM_SCHEMAS, conform, empty_table

BUCKET = "noaa-goes16"
KEY = "2018-07-02-04:00"


@pytest.fixture(scope="module")
def stored_hour(real_granules, tmp_path_factory):
    """The real 2018 granules ingested from a local mirror (GOES_SOURCE_DIR) into a fresh data folder."""
    mirror = tmp_path_factory.mktemp("mirror")
    hour_dir = mirror / BUCKET / "GLM-L2-LCFA" / "2018" / "183" / "04"
    hour_dir.mkdir(parents=True)
    granules = [p for p in real_granules if p.name.startswith("OR_GLM-L2-LCFA_G16_s2018183")]
    for path in granules:
        shutil.copy(path, hour_dir / path.name)
    data_dir = tmp_path_factory.mktemp("data")
    resources = build_resources(data_dir, bucket=BUCKET, source_dir=mirror, data_options={"keep_raw": False})
    assert materialize([extract, transform, load], partition_key=KEY, resources=resources).success
    store = ParquetStore(data_dir)
    key = HourKey(BUCKET, "GLM-L2-LCFA", store.hours(BUCKET, "GLM-L2-LCFA")[0])
    return data_dir, store, key, granules


@pytest.mark.parametrize("table", DATA_TABLES)
def test_geopandas_reads_points_equal_to_lat_lon(stored_hour, table):
    _, store, key, _ = stored_hour
    (path,) = [p for p in store.hour_dir(key).glob(f"{table}*.parquet")]
    frame = geopandas.read_parquet(path)
    assert len(frame) > 0 and frame.geometry.name == "geometry"
    assert set(frame.geom_type) == {"Point"}
    assert frame.crs is not None and frame.crs.equals("OGC:CRS84")
    np.testing.assert_array_equal(frame.geometry.x.to_numpy(), frame["lon"].to_numpy())
    np.testing.assert_array_equal(frame.geometry.y.to_numpy(), frame["lat"].to_numpy())
    geo = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["encoding"] == "point"


def test_the_views_keep_their_columns(stored_hour):
    data_dir, store, _, _ = stored_hour
    with catalog.connect_store(data_dir) as con:
        for table in DATA_TABLES:
            columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
            assert columns == [*GLM_SCHEMAS[table].names, "hour"]  # the hour folder's hour, for pruning; no geometry
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0


def test_the_store_stays_below_the_granules_size(stored_hour):
    _, store, key, granules = stored_hour
    granule_bytes = sum(p.stat().st_size for p in granules)
    stored = sum(p.stat().st_size for p in store.hour_dir(key).glob("*.parquet"))
    geometry = sum(
        pq.ParquetFile(p).metadata.row_group(i).column(j).total_compressed_size
        for p in store.hour_dir(key).glob("glm_*.parquet")
        for i in range(pq.ParquetFile(p).metadata.num_row_groups)
        for j in range(pq.ParquetFile(p).metadata.num_columns)
        if pq.ParquetFile(p).metadata.row_group(i).column(j).path_in_schema.startswith("geometry")
    )
    print(f"hour folder {stored:,} B, geometry {geometry:,} B, granules {granule_bytes:,} B")
    assert geometry > 0
    assert stored < granule_bytes  # the data folder's budget besides raw/ is 1.0x the granules


def test_null_coordinates_give_a_null_point_and_empty_tables_are_valid_geoparquet(tmp_path):
    flashes = GLM_SCHEMAS["glm_flash"].empty_table().to_pylist()
    row = {
        "source_file": "a.nc",
        "flash_id": 1,
        "time_start": None,
        "time_end": None,
        "lat": None,
        "lon": -95.0,
        "energy": None,
        "area": None,
        "area_saturated": False,
        "quality_flag": 0,
    }
    table = conform(
        pa.Table.from_pylist([*flashes, row, {**row, "flash_id": 2, "lat": 30.0}]), GLM_SCHEMAS["glm_flash"]
    )
    assert table.column("geometry").to_pylist() == [None, {"x": -95.0, "y": 30.0}]
    pq.write_table(empty_table("glm_event"), tmp_path / "empty.parquet")
    assert len(geopandas.read_parquet(tmp_path / "empty.parquet")) == 0
