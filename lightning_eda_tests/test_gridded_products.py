"""Gridded products on the ABI fixed grid against an independent count, on planted flashes and the real minute."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest

from lightning_eda.analysis.grid_runs import GridRequest
from lightning_eda.goes.granule import read_granule
from lightning_eda.grids.fixed_grid import FixedGrid, GeosProjection
from lightning_eda.grids.netcdf import write_hour
from lightning_eda.grids.products import grid_hour
from lightning_eda.testing.lcfa_factory import lcfa_name, write_lcfa
from lightning_eda.testing.real_minute import FIRST_THREE, HOUR_2018

README = Path(__file__).resolve().parents[1] / "README.md"
HOUR = datetime(2019, 6, 1, 12)
#: The geostationary projection written out by hand, independent of GeosProjection (GOES-East, GRS80).
ORPHAN_GROUP = 123_456_789
HEIGHT_M = 35786023.0
EAST = f"+proj=geos +sweep=x +lon_0=-75 +h={HEIGHT_M:.0f} +ellps=GRS80 +units=m +no_defs"


def hour_tables(paths) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Events, groups and flashes of granules, keyed by file name as the store keys them."""
    tables = {"events": [], "groups": [], "flashes": []}
    for path in paths:
        granule = read_granule(path)
        for name, frames in tables.items():
            frames.append(getattr(granule, name).assign(source_file=Path(path).name))
    return tuple(pd.concat(tables[name], ignore_index=True) for name in ("events", "groups", "flashes"))


def independent_products(events, groups, flashes, resolution_km, hour, proj4=EAST):
    """The definitions, literally, one event at a time: each event's K × K block of cells (K = 8 km / cell, at least
    1; the block whose centre is nearest the event), a flash's cells the union of its events' blocks, its frame the
    minute of its start. Returns {(frame, ix, iy): FED}, {…: MFA km²}, {…: TOE J} and {…: FCD}."""
    crs = pyproj.CRS.from_proj4(proj4)
    forward = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    h = HEIGHT_M
    step = 28e-6 * resolution_km
    k = max(1, round(8 / resolution_km))
    flash_of_group = {(f, g): p for f, g, p in groups[["source_file", "group_id", "parent_flash_id"]].to_numpy()}
    flash_rows = {(row.source_file, row.flash_id): row for row in flashes.itertuples()}

    def frame_of(row) -> int:
        return min(59, max(0, int((pd.Timestamp(row.time_start) - pd.Timestamp(hour)) // pd.Timedelta(minutes=1))))

    cells_of_flash = defaultdict(set)
    toe = defaultdict(float)
    for e in events.itertuples():
        flash = (e.source_file, flash_of_group.get((e.source_file, e.parent_group_id)))
        if flash not in flash_rows:
            continue
        x, y = forward.transform(e.lon, e.lat)
        u, v = x / h / step, y / h / step
        x0, y0 = int(np.floor(u - k / 2 + 0.5)), int(np.floor(v - k / 2 + 0.5))
        frame = frame_of(flash_rows[flash])
        for ix in range(x0, x0 + k):
            for iy in range(y0, y0 + k):
                cells_of_flash[flash].add((frame, ix, iy))
                toe[(frame, ix, iy)] += (0.0 if np.isnan(e.energy) else e.energy) / k**2
    fed, mfa = defaultdict(int), {}
    for flash, cells in cells_of_flash.items():
        area = flash_rows[flash].area / 1e6
        for cell in cells:
            fed[cell] += 1
            if np.isfinite(area):
                mfa[cell] = min(mfa.get(cell, np.inf), area)
    fcd = defaultdict(int)
    for row in flashes.itertuples():
        x, y = forward.transform(row.lon, row.lat)
        fcd[(frame_of(row), int(np.floor(x / h / step)), int(np.floor(y / h / step)))] += 1
    return dict(fed), mfa, dict(toe), dict(fcd)


def as_dicts(frames: pd.DataFrame):
    key = list(zip(frames["frame"], frames["ix"], frames["iy"], strict=True))
    fed = {c: int(n) for c, n in zip(key, frames["flash_extent_density"], strict=True) if n}
    mfa = {c: a for c, a in zip(key, frames["minimum_flash_area"], strict=True) if np.isfinite(a)}
    toe = {c: t for c, t in zip(key, frames["total_optical_energy"], strict=True) if t}
    fcd = {c: int(n) for c, n in zip(key, frames["flash_centroid_density"], strict=True) if n}
    return fed, mfa, toe, fcd


def assert_same(got, expected):
    fed, mfa, toe, fcd = got
    efed, emfa, etoe, efcd = expected
    assert fed == efed and fcd == efcd
    assert mfa.keys() == emfa.keys() and toe.keys() == etoe.keys()
    np.testing.assert_allclose([mfa[c] for c in emfa], list(emfa.values()), rtol=1e-12)
    np.testing.assert_allclose([toe[c] for c in etoe], list(etoe.values()), rtol=1e-9)


def planted_granules(tmp_path) -> list[Path]:
    """Two granules over Texas and the Gulf: flashes of several events (a spread one, one of repeated pixels, one
    straddling a minute, one starting before the hour, one of unknown area) and an orphan event."""
    rng = np.random.default_rng(7)
    paths = []
    for n, start in enumerate((HOUR, datetime(2019, 6, 1, 12, 0, 50))):
        flashes = {"flash_id": [], "time_start": [], "time_end": [], "lat": [], "lon": []}
        flashes |= {"energy": [], "area": [], "quality_flag": []}
        groups = {k: [] for k in ("group_id", "parent_flash_id", "time", "lat", "lon", "energy", "area")}
        groups["quality_flag"] = []
        events = {k: [] for k in ("event_id", "parent_group_id", "time", "lat", "lon", "energy")}
        for f in range(12):
            centre = (29.0 + rng.uniform(-1, 1), -95.0 + rng.uniform(-1, 1))
            t0 = -1.0 if (n, f) == (0, 0) else rng.uniform(0, 19)
            area = np.nan if f == 3 else rng.uniform(1e8, 2e9)
            flashes["flash_id"].append(100 + f)
            flashes["time_start"].append(t0)
            flashes["time_end"].append(t0 + 0.3)
            flashes["lat"].append(centre[0])
            flashes["lon"].append(centre[1])
            flashes["energy"].append(1e-13)
            flashes["area"].append(area)
            flashes["quality_flag"].append(0)
            for g in range(3):
                gid = 1000 * f + g
                groups["group_id"].append(gid)
                groups["parent_flash_id"].append(100 + f)
                groups["time"].append(t0 + 0.1 * g)
                groups["lat"].append(centre[0])
                groups["lon"].append(centre[1])
                groups["energy"].append(1e-14)
                groups["area"].append(1e8)
                groups["quality_flag"].append(0)
                spread = 0.0 if f == 5 else 0.15  # flash 5: every event on the same pixel
                for _ in range(4):
                    events["event_id"].append(len(events["event_id"]) + 1)
                    events["parent_group_id"].append(gid)
                    events["time"].append(t0 + 0.1 * g)
                    events["lat"].append(centre[0] + rng.normal(0, spread))
                    events["lon"].append(centre[1] + rng.normal(0, spread))
                    events["energy"].append(rng.uniform(1e-15, 5e-14))
        for column, value in (("event_id", 999_999), ("parent_group_id", ORPHAN_GROUP), ("time", 1.0)):
            events[column].append(value)
        events["lat"].append(29.0)
        events["lon"].append(-95.0)
        events["energy"].append(1e-14)
        path = tmp_path / lcfa_name(start=start)
        paths.append(write_lcfa(path, flashes=flashes, groups=groups, events=events, start=start))
    return paths


@pytest.mark.parametrize("resolution_km", [2.0, 4.0, 10.0])
def test_planted_flashes_match_the_independent_count_and_toe_is_conserved(tmp_path, resolution_km):
    paths = planted_granules(tmp_path)
    events, groups, flashes = hour_tables(paths)
    projection = GeosProjection.from_granule(paths[0])  # the factory's granules carry no projection: the slot's
    assert projection == GeosProjection.for_slot("GOES-East")
    gridded = grid_hour(events, groups, flashes, FixedGrid(projection, resolution_km), HOUR)
    frames = gridded.frames(1)
    assert_same(as_dicts(frames), independent_products(events, groups, flashes, resolution_km, HOUR))
    assert gridded.counts["orphan_events"] == 2  # one a granule: their energy is in no cell
    with_flash = events.loc[events["parent_group_id"] != ORPHAN_GROUP, "energy"]
    np.testing.assert_allclose(frames["total_optical_energy"].sum(), with_flash.sum(), rtol=1e-12)
    assert frames["flash_extent_density"].max() >= 2 and frames["frame"].nunique() >= 2
    assert frames["flash_centroid_density"].sum() == 24  # every flash's centroid, the early one in frame 0


def test_accumulations_add_the_minutes_and_keep_the_smallest_area(tmp_path):
    events, groups, flashes = hour_tables(planted_granules(tmp_path))
    gridded = grid_hour(events, groups, flashes, FixedGrid(GeosProjection.for_slot("GOES-East")), HOUR)
    minutes, five = gridded.frames(1), gridded.frames(5)
    minutes = minutes.assign(frame=minutes["frame"] // 5)
    expected = minutes.groupby(["frame", "ix", "iy"]).agg(
        fed=("flash_extent_density", "sum"), toe=("total_optical_energy", "sum"), mfa=("minimum_flash_area", "min")
    )
    got = five.set_index(["frame", "ix", "iy"]).loc[expected.index]
    np.testing.assert_array_equal(got["flash_extent_density"], expected["fed"])
    np.testing.assert_allclose(got["total_optical_energy"], expected["toe"], rtol=1e-12)
    np.testing.assert_allclose(got["minimum_flash_area"], expected["mfa"])
    assert len(five) == len(expected)
    with pytest.raises(ValueError, match="accumulation_minutes=7"):
        gridded.frames(7)
    with pytest.raises(ValueError, match="resolution_km=3"):
        FixedGrid(GeosProjection.for_slot("GOES-East"), 3.0)
    with pytest.raises(ValueError, match="accumulation_minutes=7 must divide an hour"):
        GridRequest(accumulation_minutes=7)  # the asset's settings, checked before anything is read
    with pytest.raises(ValueError, match="resolution_km=3"):
        GridRequest(resolution_km=3)


def test_a_box_keeps_its_events_and_their_energy(tmp_path):
    from lightning_eda.analysis.features import LatLonBox

    events, groups, flashes = hour_tables(planted_granules(tmp_path))
    grid = FixedGrid(GeosProjection.for_slot("GOES-East"))
    box = LatLonBox(28.5, 30.0, -95.5, -94.0)
    extent = grid.box_extent(box.lat_min, box.lat_max, box.lon_min, box.lon_max)
    gridded = grid_hour(events, groups, flashes, grid, HOUR, extent=extent, box=box)
    inside = box.contains(events["lat"], events["lon"])
    kept = events[inside & (events["parent_group_id"] != ORPHAN_GROUP).to_numpy()]
    frames = gridded.frames(1)
    assert gridded.counts["events_outside_extent"] == 0 and 0 < len(kept) < len(events) - 2
    np.testing.assert_allclose(frames["total_optical_energy"].sum(), kept["energy"].sum(), rtol=1e-12)
    assert extent.contains(frames["ix"], frames["iy"]).all()


@pytest.fixture(scope="module")
def real_minute(real_granules):
    paths = [p for p in real_granules if p.name in FIRST_THREE]
    return paths, *hour_tables(paths)


def test_the_real_minute_matches_the_independent_count(real_minute):
    paths, events, groups, flashes = real_minute
    projection = GeosProjection.from_granule(paths[0])
    assert projection.longitude_of_projection_origin == -75.0 and projection.perspective_point_height == 35786023
    frames = grid_hour(events, groups, flashes, FixedGrid(projection, 2.0), HOUR_2018).frames(1)
    assert_same(as_dicts(frames), independent_products(events, groups, flashes, 2.0, HOUR_2018))
    np.testing.assert_allclose(frames["total_optical_energy"].sum(), events["energy"].sum(), rtol=1e-12)
    centre_only = grid_hour(events, groups, flashes, FixedGrid(projection, 2.0), HOUR_2018, footprint=False)
    assert frames["flash_extent_density"].sum() > 10 * centre_only.cells["flash_extent_density"].sum()


@pytest.fixture(scope="module")
def real_minute_file(real_minute, tmp_path_factory):
    paths, events, groups, flashes = real_minute
    grid = FixedGrid(GeosProjection.from_granule(paths[0]), 2.0)
    gridded = grid_hour(events, groups, flashes, grid, HOUR_2018)
    path = tmp_path_factory.mktemp("grids") / "glm_grid_5min_20180702T04.nc"
    write_hour(path, grid, gridded.extent, HOUR_2018, 5, gridded.frames(5), {"platform_ID": "G16"})
    return path, gridded, grid


def test_the_netcdf_opens_in_xarray_and_its_cells_land_on_their_events(real_minute, real_minute_file):
    import xarray as xr
    from scipy.spatial import cKDTree

    _, events, _, _ = real_minute
    path, gridded, _ = real_minute_file
    with xr.open_dataset(path) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.sizes["time"] == 12
        assert ds.x.attrs["standard_name"] == "projection_x_coordinate" and ds.x.attrs["units"] == "rad"
        assert ds.y.attrs["standard_name"] == "projection_y_coordinate" and ds.y.attrs["units"] == "rad"
        bounds = ds.time_bounds.values
        assert bounds[6, 0] == np.datetime64("2018-07-02T04:30") and bounds[6, 1] == np.datetime64("2018-07-02T04:35")
        assert ds.total_optical_energy.attrs["units"] == "J" and ds.minimum_flash_area.attrs["units"] == "km2"
        fed = ds.flash_extent_density.isel(time=6).values
        toe = ds.total_optical_energy.isel(time=6).values
        assert np.isnan(ds.flash_extent_density.isel(time=0).values).all()  # no flash in 04:00–04:05
        crs = pyproj.CRS.from_cf(ds.goes_imager_projection.attrs)
        h = ds.goes_imager_projection.attrs["perspective_point_height"]
        rows, cols = np.nonzero(np.nan_to_num(fed) > 0)
        cell_x, cell_y = ds.x.values[cols], ds.y.values[rows]
    five = gridded.frames(5)
    assert np.nansum(fed) == five["flash_extent_density"].sum() == gridded.cells["flash_extent_density"].sum()
    np.testing.assert_allclose(np.nansum(toe, dtype=np.float64), events["energy"].sum(), rtol=1e-6)
    # the cells' centres, placed by the file's own projection, lie within the footprint of one of the events
    to_lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_lonlat.transform(cell_x * h, cell_y * h)
    forward = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    ex, ey = forward.transform(events["lon"].to_numpy(), events["lat"].to_numpy())
    cx, cy = forward.transform(lon, lat)
    distance, _ = cKDTree(np.column_stack([ex, ey]) / h).query(np.column_stack([cx, cy]) / h)
    step = 56e-6
    assert distance.max() <= 2.5 * step * np.sqrt(2)  # a 4 × 4 block's farthest centre from its event
    assert np.median(distance) < 2 * step
    assert len(rows) == (five["frame"] == 6).sum()


def readme_snippet() -> str:
    text = README.read_text()
    found = re.search(r"<!-- grid-snippet:start -->\s*```python\n(.*?)```\s*<!-- grid-snippet:end -->", text, re.S)
    assert found, "README.md lacks the gridded products' xarray snippet between its markers"
    return found.group(1)


def test_the_readme_snippet_opens_the_netcdf(real_minute_file, capsys):
    path, gridded, grid = real_minute_file
    snippet = readme_snippet()
    documented = re.search(r'"(data/grids/[^"]+\.nc)"', snippet).group(1)
    assert Path(documented).name == path.name  # the README names the file as the asset writes it
    namespace: dict = {}
    exec(compile(snippet.replace(documented, str(path)), "README.md", "exec"), namespace)
    five = gridded.frames(5)
    busiest = five[five["frame"] == 6].nlargest(1, "flash_extent_density").iloc[0]
    assert float(namespace["fed"].max()) == busiest["flash_extent_density"]
    assert f"{int(busiest['flash_extent_density'])} flashes" in capsys.readouterr().out
    lat, lon = grid.projection.to_latlon(np.array([namespace["x"]]), np.array([namespace["y"]]))
    np.testing.assert_allclose([namespace["lat"], namespace["lon"]], [lat[0], lon[0]], atol=1e-9)


def test_the_asset_writes_the_files_the_table_and_the_map(s3, real_granules, tmp_path):
    """The real minute through the ingest, the preprocessor and ``gridded_products`` (5-minute accumulations)."""
    import duckdb
    import matplotlib.image
    import xarray as xr
    from dagster import materialize
    from ingest_runs import resources_for, run_hour

    from lightning_eda.orchestration.assets.gridded import gridded_products
    from lightning_eda.orchestration.assets.preprocessor import preprocessor
    from lightning_eda.testing.real_minute import KEY_2018, serve_2018_minute

    serve_2018_minute(s3, real_granules)
    assert run_hour(tmp_path).success
    result = materialize(
        [preprocessor, gridded_products],
        resources=resources_for(tmp_path),
        run_config={"ops": {"preprocessor": {"config": {"window_start": KEY_2018}}}},
    )
    assert result.success
    meta = result.asset_materializations_for_node("gridded_products")[0].metadata
    assert meta["netcdf_files"].value == 2 and meta["hours"].value == 1 and meta["flashes"].value == 853
    assert meta["frames_accumulated"].value == 12 and meta["footprint_cells"].value == 4
    grids = tmp_path / "grids" / "noaa-goes16" / "2km" / "2018-07-02"
    assert sorted(p.name for p in grids.iterdir()) == ["glm_grid_1min_20180702T04.nc", "glm_grid_5min_20180702T04.nc"]
    with xr.open_dataset(grids / "glm_grid_1min_20180702T04.nc") as ds:
        assert ds.sizes["time"] == 60
        minute_fed = float(ds.flash_extent_density.isel(time=slice(32, 35)).sum())  # flashes from 04:32:58
        assert ds.attrs["platform_ID"] == "G16" and ds.attrs["orbital_slot"] == "GOES-East"
    with duckdb.connect(str(tmp_path / "glm.duckdb"), read_only=True) as con:
        table = con.execute("SELECT * FROM grid_cell").df()
        energy = con.execute("SELECT sum(energy) FROM glm_event").fetchone()[0]
    assert set(table["minutes"]) == {5} and set(table["time"]) == {pd.Timestamp("2018-07-02 04:30")}
    assert table["flash_extent_density"].sum() == minute_fed and meta["grid_cells"].value == len(table)
    np.testing.assert_allclose(table["total_optical_energy"].sum(), energy, rtol=1e-12)
    assert table["lat"].between(-60, 60).all() and meta["projection_source"].value.startswith("OR_GLM-L2-LCFA_G16")
    image = matplotlib.image.imread(meta["map_path"].value)
    assert image.shape[:2] == (910, 1300) and Path(meta["map_path"].value).name == "gridded_fed_map.png"


@pytest.mark.parametrize(("resolution_km", "cells", "footprint"), [(2.0, 5424, 4), (4.0, 2712, 2), (10.0, 1086, 1)])
def test_the_full_disk_is_abis_fixed_grid(resolution_km, cells, footprint):
    """NOAA's 2 km full disk: 5424 × 5424 cells of 56 µrad, centres from -0.151844 to +0.151844 rad."""
    grid = FixedGrid(GeosProjection.for_slot("GOES-East"), resolution_km)
    disk = grid.full_disk()
    x, y = grid.centres(disk)
    assert disk.nx == disk.ny == cells and grid.footprint_cells == footprint
    assert x[0] == -x[-1] and y[0] == -y[-1] > 0  # symmetric, y north to south
    if resolution_km == 2.0:
        np.testing.assert_allclose([x[0], x[-1], x[1] - x[0]], [-0.151844, 0.151844, 56e-6], atol=1e-12)
        np.testing.assert_allclose(x[2711:2713], [-28e-6, 28e-6], atol=1e-15)
    lat, lon = grid.projection.to_latlon(np.array([0.0]), np.array([0.0]))
    np.testing.assert_allclose([lat[0], lon[0]], [0.0, -75.0], atol=1e-9)


def test_hours_gridded_in_worker_processes_equal_hours_gridded_here(real_granules, tmp_path):
    """A window of three committed hours gridded on a pool of two processes writes what one process writes: the same
    netCDF variables, the same ``grid_cell`` rows in hour order, the same totals and busiest accumulation."""
    import h5py

    from lightning_eda import process_pool
    from lightning_eda.analysis.analysis_store import AnalysisStore
    from lightning_eda.analysis.features import FeatureTransform
    from lightning_eda.analysis.grid_runs import GRID_CELL_TABLE, grid_window
    from lightning_eda.analysis.window import AnalysisWindow
    from lightning_eda.grids.products import VARIABLES
    from lightning_eda.ingest.decoding import transform_granule
    from lightning_eda.ingest.hourly import files_table
    from lightning_eda.store.parquet_store import HourKey, ParquetStore

    busy = [path for path in real_granules if "_s2018183" in path.name]  # three of one satellite's minute
    first = read_granule(busy[0]).meta["time_start"]
    start = pd.Timestamp(first).floor("h").to_pydatetime().replace(tzinfo=None)
    hours = [start + pd.Timedelta(hours=h) for h in range(3)]
    transform = FeatureTransform(0.0, -75.0, 0.0, 0.0, 1.0, 1.0)
    outputs = {}
    for workers in (1, 2):
        store = ParquetStore(tmp_path / f"workers{workers}")
        store.ensure()
        for i, hour in enumerate(hours):
            record, tables = transform_granule(busy[i % len(busy)])
            tables["glm_file"] = files_table([record])
            store.commit(HourKey("noaa-goes16", "GLM-L2-LCFA", hour), store.stage(tables))
        window = AnalysisWindow("noaa-goes16", hours[0], hours[-1] + pd.Timedelta(hours=1), transform)
        process_pool.discard_pool()  # an earlier test's decoder pool: what follows starts its own or none
        output, grid, _ = grid_window(
            AnalysisStore(store), window, product="GLM-L2-LCFA", request=GridRequest(), workers=workers
        )
        assert (process_pool._pool is not None) == (workers == 2)  # the pool ran the hours
        outputs[workers] = (store, output)
        process_pool.discard_pool()
    (store1, one), (store2, two) = outputs[1], outputs[2]
    assert one.totals == two.totals and one.totals["hours"] == 3 and one.totals["cells"] > 0
    assert one.busiest.total == two.busiest.total > 0 and one.busiest.start == two.busiest.start
    assert [p.relative_to(store1.data_dir) for p in one.files] == [p.relative_to(store2.data_dir) for p in two.files]
    assert len(one.files) == 6
    for a, b in zip(one.files, two.files, strict=True):
        with h5py.File(a, "r") as x, h5py.File(b, "r") as y:  # the same chunks, byte for byte
            for name in VARIABLES:
                chunks_x = [x[name].id.get_chunk_info(i) for i in range(x[name].id.get_num_chunks())]
                chunks_y = [y[name].id.get_chunk_info(i) for i in range(y[name].id.get_num_chunks())]
                assert [c.chunk_offset for c in chunks_x] == [c.chunk_offset for c in chunks_y], name
                assert chunks_x or name == "flash_centroid_density", name  # hours gone missing would pass too
                assert all(
                    x[name].id.read_direct_chunk(c.chunk_offset) == y[name].id.read_direct_chunk(c.chunk_offset)
                    for c in chunks_x
                ), name
            for name in ("x", "y", "time", "time_bounds"):
                assert np.array_equal(x[name][...], y[name][...]), name
    cells1 = pd.read_parquet(store1.analysis_file(GRID_CELL_TABLE))
    pd.testing.assert_frame_equal(cells1, pd.read_parquet(store2.analysis_file(GRID_CELL_TABLE)))
    assert list(cells1["time"].dt.floor("h").drop_duplicates()) == [pd.Timestamp(h) for h in hours]
    assert not list(store2.analysis_file(GRID_CELL_TABLE).parent.glob(".*.part"))
