"""Decoding the real granules in ../shared/data/glm: counts, metadata, times, ids and values against an independent
netCDF4 read (the factory-made files with known values are test_glm.py's)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
from granule_checks import COLUMNS, LEVEL, TIME_COLUMNS, assert_dtypes

from lightning_eda.goes.granule import granule_to_csvs
from lightning_eda.goes.layout import parse_granule_name

G16_2018 = (
    "OR_GLM-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231.nc",
    "OR_GLM-L2-LCFA_G16_s20181830433200_e20181830433400_c20181830433424.nc",
    "OR_GLM-L2-LCFA_G16_s20181830433400_e20181830434000_c20181830434029.nc",
)
G16_2021 = "OR_GLM-L2-LCFA_G16_s20210820633400_e20210820634005_c20210820634025.nc"
G17_EMPTY = "OR_GLM-L2-LCFA_G17_s20200160612000_e20200160612110_c20200160612335.nc"
REAL = {  # README table: rows per table, then the *_count scalars as written (they disagree in 2021)
    G16_2018[0]: ((302, 7182, 18361), (302, 7182, 18361)),
    G16_2018[1]: ((277, 6919, 19956), (277, 6919, 19956)),
    G16_2018[2]: ((274, 7478, 21480), (274, 7478, 21480)),
    G16_2021: ((125, 2905, 7258), (133, 2905, 7294)),
    G17_EMPTY: ((0, 0, 0), (0, 0, 0)),
}
SLOT = {"G16": "GOES-East", "G17": "GOES-West"}
NON_EMPTY = (*G16_2018, G16_2021)


def test_all_real_granules_are_covered(real_granules):
    assert [p.name for p in real_granules] == sorted(REAL)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_counts_come_from_dimensions(decoded, name):
    rows, declared = REAL[name]
    granule = decoded(name)
    assert (len(granule.flashes), len(granule.groups), len(granule.events)) == rows
    meta = granule.meta
    assert (meta["n_flashes"], meta["n_groups"], meta["n_events"]) == rows
    assert (meta["declared_flashes"], meta["declared_groups"], meta["declared_events"]) == declared
    assert_dtypes(granule)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_meta(decoded, name):
    meta, parsed = decoded(name).meta, parse_granule_name(name)
    assert meta["platform"] == parsed.platform
    assert meta["orbital_slot"] == SLOT[parsed.platform]
    assert meta["dataset_name"] == name
    assert (meta["time_start"], meta["time_end"]) == (parsed.start, parsed.end)
    assert meta["product_time"] == parsed.start


@pytest.mark.parametrize("name", NON_EMPTY)
def test_real_times_lie_within_the_granule_window(decoded, name):
    """Flashes are written when they end, so they may start ~2 s early; nothing is later than the granule end."""
    parsed = parse_granule_name(name)
    low, high = pd.Timestamp(parsed.start - timedelta(seconds=2.5)), pd.Timestamp(parsed.end + timedelta(seconds=1))
    granule = decoded(name)
    for table, columns in TIME_COLUMNS.items():
        for column in columns:
            times = getattr(granule, table)[column]
            assert times.notna().all() and times.between(low, high).all(), (table, column)
    assert (granule.flashes["time_end"] >= granule.flashes["time_start"]).all()
    assert (granule.flashes["time_start"] < pd.Timestamp(parsed.start)).any()  # README: some begin before the start


@pytest.mark.parametrize("name", NON_EMPTY)
def test_real_flash_times_are_the_first_and_last_event_times(decoded, name):
    """Three time variables decoded independently must agree across the hierarchy (to one packing step)."""
    granule = decoded(name)
    events = granule.events.merge(
        granule.groups[["group_id", "parent_flash_id"]], left_on="parent_group_id", right_on="group_id"
    )
    span = events.groupby("parent_flash_id")["time"].agg(["min", "max"])
    flashes = granule.flashes.set_index("flash_id").join(span, how="inner")
    assert len(flashes) >= 0.9 * len(granule.flashes)
    step = pd.Timedelta(milliseconds=1)
    assert ((flashes["time_start"] - flashes["min"]).abs() <= step).all()
    assert ((flashes["time_end"] - flashes["max"]).abs() <= step).all()


@pytest.mark.parametrize("name", NON_EMPTY)
def test_real_ids_are_unique_per_table(decoded, name):
    granule = decoded(name)
    assert granule.flashes["flash_id"].is_unique
    assert granule.groups["group_id"].is_unique
    assert granule.events["event_id"].is_unique


@pytest.mark.parametrize("name", G16_2018)
def test_real_2018_parent_ids_are_consistent(decoded, name):
    granule = decoded(name)
    flashes, groups, events = granule.flashes, granule.groups, granule.events
    assert groups["parent_flash_id"].isin(flashes["flash_id"]).all()
    assert events["parent_group_id"].isin(groups["group_id"]).all()
    assert flashes["flash_id"].isin(groups["parent_flash_id"]).all()
    assert groups["group_id"].isin(events["parent_group_id"]).all()


def test_real_2021_tree_is_incomplete_exactly_as_its_count_scalars_say(decoded):
    """The 2021 file lost 8 flashes and 36 events (133 and 7294 declared): their children and parents dangle."""
    granule = decoded(G16_2021)
    flashes, groups, events = granule.flashes, granule.groups, granule.events
    orphan_groups = groups[~groups["parent_flash_id"].isin(flashes["flash_id"])]
    assert orphan_groups["parent_flash_id"].nunique() == 133 - 125
    assert len(orphan_groups) == 148
    assert (~groups["group_id"].isin(events["parent_group_id"])).sum() == 30
    assert events["parent_group_id"].isin(groups["group_id"]).all()
    assert flashes["flash_id"].isin(groups["parent_flash_id"]).all()


@pytest.mark.parametrize("name", NON_EMPTY)
def test_real_positions_are_in_range(decoded, name):
    granule = decoded(name)
    for table in COLUMNS:
        frame = getattr(granule, table)
        assert frame["lon"].between(-180, 180, inclusive="left").all(), table
        assert frame["lat"].between(-90, 90).all(), table
        assert (frame["energy"] >= 0).all(), table


def independent_read(path: Path, name: str) -> tuple[np.ndarray, dict]:
    """A plain netCDF4 read with its default mask-and-scale, and the variable's attributes."""
    with netCDF4.Dataset(path) as ds:
        var = ds.variables[name]
        return np.ma.filled(var[:].astype(np.float64), np.nan), {k: var.getncattr(k) for k in var.ncattrs()}


@pytest.mark.parametrize("name", NON_EMPTY)
def test_real_values_equal_an_independent_netcdf4_read(decoded, glm_dir, name):
    """lat, lon, energy and area, where netCDF4's default decoding is right (only the units need converting)."""
    granule = decoded(name)
    for table, level in LEVEL.items():
        frame = getattr(granule, table)
        variables = ["lat", "lon", "energy"] + (["area"] if table != "events" else [])
        for variable in variables:
            expected, attrs = independent_read(glm_dir / name, f"{level}_{variable}")
            if variable == "lon":
                expected = (expected + 180.0) % 360.0 - 180.0
            if variable == "area":
                expected = expected * {"km2": 1e6, "m2": 1.0}[attrs["units"]]
            # netCDF4 unpacks in float32: about 1e-5 degree (1 m) of rounding on positions, 1e-6 relative on the rest
            atol = 1e-5 if variable in ("lat", "lon") else 0.0
            np.testing.assert_allclose(frame[variable], expected, rtol=1e-6, atol=atol, err_msg=f"{table}.{variable}")


TIME_VARIABLES = {
    "flashes": {"time_start": "flash_time_offset_of_first_event", "time_end": "flash_time_offset_of_last_event"},
    "groups": {"time": "group_time_offset"},
    "events": {"time": "event_time_offset"},
}


@pytest.mark.parametrize(
    "name, unit, unsigned",
    [(G16_2018[0], "milliseconds", False), (G16_2018[2], "milliseconds", False), (G16_2021, "seconds", True)],
)
def test_real_times_follow_the_glm_md_rule(decoded, glm_dir, name, unit, unsigned):
    """2018 files: signed milliseconds, default decoding gives ms; 2021: unsigned seconds, default is right."""
    granule = decoded(name)
    for table, columns in TIME_VARIABLES.items():
        for column, variable in columns.items():
            default, attrs = independent_read(glm_dir / name, variable)
            assert attrs["units"].startswith(f"{unit} since ")
            assert (str(attrs.get("_Unsigned", "")).lower() == "true") == unsigned
            epoch = pd.Timestamp(attrs["units"].split(" since ", 1)[1])
            assert epoch == pd.Timestamp(parse_granule_name(name).start)
            seconds = (getattr(granule, table)[column] - epoch).dt.total_seconds().to_numpy()
            default_s = default / 1000.0 if unit == "milliseconds" else default
            np.testing.assert_allclose(seconds, default_s, rtol=0, atol=1e-5, err_msg=f"{table}.{column}")
            assert seconds.min() > -2.5 and seconds.max() < 21


def test_real_empty_granule(decoded):
    granule = decoded(G17_EMPTY)
    assert_dtypes(granule)
    assert all(len(getattr(granule, table)) == 0 for table in COLUMNS)


@pytest.mark.parametrize("name", (G16_2021, G17_EMPTY))
def test_real_csv_row_counts(decoded, tmp_path, name):
    granule = decoded(name)
    for table, path in granule_to_csvs(granule, tmp_path).items():
        assert len(pd.read_csv(path)) == len(getattr(granule, table))
