"""Decoding LCFA granules: files written by the factory with known values, then the real granules."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
from granule_checks import COLUMNS, LEVEL, TIME_COLUMNS, assert_dtypes

from lightning_eda.goes import granule as glm
from lightning_eda.goes.granule import (
    GranuleError,
    granule_to_csvs,
    read_granule,
)
from lightning_eda.goes.variables import QUALITY_FLAG_MISSING
from lightning_eda.testing.lcfa_factory import (
    AREA_UNITS,
    ERAS,
    area_encoding,
    empty_tables,
    energy_encoding,
    event_lon_encoding,
    lcfa_name,
    sample_tables,
    time_encoding,
    write_empty_lcfa,
    write_lcfa,
)

START = datetime(2019, 6, 1, 12, 0, 0)
FLOAT32_DEGREES = 1e-4  # flash and group lat/lon are stored as float32


def granule_file(tmp_path: Path, platform: str = "G16", **kwargs) -> Path:
    return write_lcfa(tmp_path / lcfa_name(platform, START), platform=platform, start=START, **kwargs)


def half_step(encoding: dict) -> float:
    """The largest error packing can introduce: half a scale step (plus float32 rounding of the result)."""
    return float(encoding["scale_factor"]) / 2 * (1 + 1e-6)


def offsets_s(times: pd.Series) -> np.ndarray:
    """Seconds after the factory granule's start."""
    return (times - pd.Timestamp(START)).dt.total_seconds().to_numpy()


# --- factory granules: decoded values equal the known inputs ------------------------------------------------------


@pytest.mark.parametrize("area_units", AREA_UNITS)
@pytest.mark.parametrize("era", ERAS)
def test_decoded_values_equal_inputs_within_packing_precision(tmp_path, era, area_units):
    granule = read_granule(granule_file(tmp_path, era=era, area_units=area_units))
    expected = sample_tables()
    time_tol = half_step(time_encoding(era, START)) / (1000 if era == "2018-ms" else 1)
    area_tol = half_step(area_encoding(area_units)) * (1e6 if area_units == "km2" else 1)
    for table in ("flashes", "groups", "events"):
        frame, known = getattr(granule, table), expected[table]
        id_columns = [name for name in COLUMNS[table] if name.endswith("_id")]
        for name in id_columns:
            assert frame[name].tolist() == known[name], (table, name)
        for name in TIME_COLUMNS[table]:
            np.testing.assert_allclose(offsets_s(frame[name]), known[name], rtol=0, atol=time_tol + 1e-9)
        position_tol = half_step(event_lon_encoding("G16")) if table == "events" else FLOAT32_DEGREES
        np.testing.assert_allclose(frame["lat"], known["lat"], rtol=0, atol=position_tol)
        np.testing.assert_allclose(frame["lon"], known["lon"], rtol=0, atol=position_tol)
        energy_tol = half_step(energy_encoding(era, LEVEL[table]))
        np.testing.assert_allclose(frame["energy"], known["energy"], rtol=0, atol=energy_tol)
        if table != "events":
            np.testing.assert_allclose(frame["area"], known["area"], rtol=0, atol=area_tol)
            assert frame["quality_flag"].tolist() == known["quality_flag"]
    assert_dtypes(granule)


def test_fill_values_become_nan_and_flag_the_area(tmp_path):
    flashes = granule_file(tmp_path)
    granule = read_granule(flashes)
    second = granule.flashes.iloc[1]  # sample flash 65000: energy and area written as the fill value
    assert np.isnan(second["energy"]) and np.isnan(second["area"]) and second["area_saturated"]
    assert not granule.flashes.iloc[0]["area_saturated"]
    assert not granule.groups["area_saturated"].any()


def test_quality_flag_fill_is_reported_as_missing(tmp_path):
    granule = read_granule(granule_file(tmp_path, raw={"flash_quality_flag": [-1, 5]}))
    assert granule.flashes["quality_flag"].tolist() == [QUALITY_FLAG_MISSING, 5]


def test_ids_above_the_signed_range_decode_through_unsigned(tmp_path):
    granule = read_granule(granule_file(tmp_path))
    assert granule.flashes["flash_id"].max() == 65_000 > np.iinfo(np.int16).max
    assert granule.groups["group_id"].min() > np.iinfo(np.int32).max
    assert set(granule.groups["parent_flash_id"]) == set(granule.flashes["flash_id"])
    assert set(granule.events["parent_group_id"]) == set(granule.groups["group_id"])


def test_km2_and_m2_files_decode_to_the_same_areas_in_m2(tmp_path):
    km2 = read_granule(write_lcfa(tmp_path / "km2.nc", area_units="km2", start=START))
    m2 = read_granule(write_lcfa(tmp_path / "m2.nc", area_units="m2", start=START))
    tol = half_step(area_encoding("km2")) * 1e6 + half_step(area_encoding("m2"))
    np.testing.assert_allclose(km2.groups["area"], m2.groups["area"], rtol=0, atol=tol)
    np.testing.assert_allclose(km2.flashes["area"], m2.flashes["area"], rtol=0, atol=tol)


# --- the time trap (docs/glm_format.md) -------------------------------------------------------------------------------


def default_decoding(path: Path, name: str) -> np.ndarray:
    """netCDF4's own mask-and-scale, the way most readers see the file."""
    with netCDF4.Dataset(path) as ds:
        return np.ma.filled(ds.variables[name][:].astype(np.float64), np.nan)


def test_missing_unsigned_seconds_era_is_read_as_unsigned(tmp_path):
    """Late 2018: seconds, scale ~0.00038, offset -5, no _Unsigned; default decoding folds 7.5 s+ down by 25 s."""
    path = granule_file(tmp_path, era="2018-missing-unsigned")
    granule = read_granule(path)
    known_end = sample_tables()["flashes"]["time_end"]  # [0.5, 19.75]
    tol = half_step(time_encoding("2019+", START))
    np.testing.assert_allclose(offsets_s(granule.flashes["time_end"]), known_end, atol=tol)
    wrapped = 65536 * float(time_encoding("2019+", START)["scale_factor"])
    default = default_decoding(path, "flash_time_offset_of_last_event")
    np.testing.assert_allclose(default, [0.5, 19.75 - wrapped], atol=1e-3)
    assert default[1] < -5.0
    assert "flash_time_offset_of_last_event: read as unsigned although _Unsigned is missing" in granule.meta["repairs"]


def test_stray_unsigned_on_millisecond_times_is_ignored(tmp_path):
    """Mid 2018: signed milliseconds with a stray _Unsigned; default decoding turns -1.5 s into about +129.6 s."""
    path = granule_file(tmp_path, era="2018-ms", stray_unsigned_time=True)
    granule = read_granule(path)
    np.testing.assert_allclose(offsets_s(granule.flashes["time_start"]), [-1.5, 3.25], atol=1e-9)
    default_ms = default_decoding(path, "flash_time_offset_of_first_event")
    np.testing.assert_allclose(default_ms / 1000, [-1.5 + 131.072, 3.25], atol=1e-9)
    assert (
        "flash_time_offset_of_first_event: ignored stray _Unsigned: millisecond offsets are signed"
        in (granule.meta["repairs"])
    )


@pytest.mark.parametrize("era", ["2018-ms", "2019+"])
def test_eras_that_default_decoding_gets_right_need_no_repair(tmp_path, era):
    assert read_granule(granule_file(tmp_path, era=era)).meta["repairs"] == []


def test_each_time_variable_uses_its_own_epoch(tmp_path):
    later = "seconds since 2019-06-01 12:00:10.000"
    granule = read_granule(granule_file(tmp_path, attrs={"event_time_offset": {"units": later}}))
    np.testing.assert_allclose(
        offsets_s(granule.events["time"]), np.array(sample_tables()["events"]["time"]) + 10, atol=1e-3
    )
    np.testing.assert_allclose(offsets_s(granule.groups["time"]), sample_tables()["groups"]["time"], atol=1e-3)


@pytest.mark.parametrize(
    "units",
    [
        "hours since 2019-06-01 12:00:00",
        "microseconds since 2019-06-01 12:00:00",
        "seconds since yesterday",
        "seconds",
        None,
    ],
)
def test_unknown_time_units_raise_naming_file_and_variable(tmp_path, units):
    path = granule_file(tmp_path, attrs={"group_time_offset": {"units": units}})
    with pytest.raises(GranuleError) as info:
        read_granule(path)
    assert path.name in str(info.value) and "group_time_offset" in str(info.value)
    assert re.search("time units|UTC date", str(info.value))


# --- longitudes, areas and saturation -----------------------------------------------------------------------------


def test_longitudes_are_wrapped_into_minus_180_to_180(tmp_path):
    tables = sample_tables()
    tables["events"]["lon"] = [175.0, -179.99, -200.0, -120.0, -180.0]  # 175 E is stored as -185
    tables["groups"]["lon"] = [180.0, 359.5, -181.0]
    tables["flashes"]["lon"] = [-540.0, 179.5]
    path = granule_file(tmp_path, platform="G17", **tables)
    granule = read_granule(path)
    tol = half_step(event_lon_encoding("G17"))
    np.testing.assert_allclose(granule.events["lon"], [175.0, -179.99, 160.0, -120.0, -180.0], atol=tol)
    np.testing.assert_allclose(granule.groups["lon"], [-180.0, -0.5, 179.0], atol=FLOAT32_DEGREES)
    np.testing.assert_allclose(granule.flashes["lon"], [-180.0, 179.5], atol=FLOAT32_DEGREES)
    for table in ("flashes", "groups", "events"):
        lon = getattr(granule, table)["lon"]
        assert ((lon >= -180) & (lon < 180)).all()
    assert default_decoding(path, "event_lon").min() < -180  # what the file itself holds
    assert (granule.meta["platform"], granule.meta["orbital_slot"]) == ("G17", "GOES-West")


def hierarchy(flash_areas, group_areas, events_per_group) -> dict:
    """One group per flash, ``events_per_group[i]`` events in group i; areas in m² (NaN for fill)."""
    n = len(flash_areas)
    flash_ids = list(range(1, n + 1))
    group_ids = list(range(101, 101 + n))
    event_parents = [gid for gid, count in zip(group_ids, events_per_group, strict=True) for _ in range(count)]
    return {
        "flashes": {
            "flash_id": flash_ids,
            "time_start": [1.0] * n,
            "time_end": [2.0] * n,
            "lat": [10.0] * n,
            "lon": [-80.0] * n,
            "energy": [1e-13] * n,
            "area": flash_areas,
            "quality_flag": [0] * n,
        },
        "groups": {
            "group_id": group_ids,
            "parent_flash_id": flash_ids,
            "time": [1.0] * n,
            "lat": [10.0] * n,
            "lon": [-80.0] * n,
            "energy": [1e-14] * n,
            "area": group_areas,
            "quality_flag": [0] * n,
        },
        "events": {
            "event_id": list(range(1001, 1001 + len(event_parents))),
            "parent_group_id": event_parents,
            "time": [1.0] * len(event_parents),
            "lat": [10.0] * len(event_parents),
            "lon": [-80.0] * len(event_parents),
            "energy": [1e-15] * len(event_parents),
        },
    }


def test_saturated_wrapped_and_zero_areas_are_flagged(tmp_path):
    cases = {  # flash area, group area, events in the group -> flash flagged, group flagged
        "normal": (3.0e8, 1.0e8, 1, False, False),
        "fill": (np.nan, 1.0e8, 1, True, False),
        "zero": (0.0, 1.0e8, 1, True, False),
        "at the 10,000 km2 ceiling": (9.95e9, 1.0e8, 1, True, False),
        "flash smaller than its group": (1.0e8, 2.0e8, 2, True, False),
        "group smaller than its pixels": (3.0e8, 6.0e7, 3, True, True),
        "group at the ceiling": (9.0e9, 9.95e9, 1, True, True),
    }
    rows = list(cases.values())
    tables = hierarchy([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    granule = read_granule(granule_file(tmp_path, era="2019+", area_units="m2", **tables))
    assert dict(zip(cases, granule.flashes["area_saturated"], strict=True)) == {k: r[3] for k, r in cases.items()}
    assert dict(zip(cases, granule.groups["area_saturated"], strict=True)) == {k: r[4] for k, r in cases.items()}
    assert granule.flashes["area"].iloc[2] == 0.0  # flagged, but the value is kept


def test_km2_area_at_the_top_of_the_packed_range_is_flagged(tmp_path):
    tables = hierarchy([3.0e8, 3.0e8], [1.0e8, 1.0e8], [1, 1])
    path = granule_file(tmp_path, era="2018-ms", area_units="km2", raw={"flash_area": [-2, 20_000]}, **tables)
    granule = read_granule(path)
    assert granule.flashes["area"].iloc[0] == pytest.approx((65534 * 0.15163901 + 63.095734) * 1e6, rel=1e-6)
    assert granule.flashes["area_saturated"].tolist() == [True, False]


@pytest.mark.parametrize(
    "variable, units, message",
    [
        ("flash_energy", "erg", "energy units"),
        ("event_energy", None, "energy units"),
        ("group_area", "ha", "area units"),
        ("flash_area", None, "area units"),
    ],
)
def test_unknown_energy_or_area_units_raise(tmp_path, variable, units, message):
    path = granule_file(tmp_path, attrs={variable: {"units": units}})
    with pytest.raises(GranuleError, match=f"{re.escape(path.name)}.*{variable}.*{message}"):
        read_granule(path)


def test_area_units_are_read_case_insensitively(tmp_path):
    granule = read_granule(granule_file(tmp_path, area_units="km2", attrs={"group_area": {"units": "KM2"}}))
    np.testing.assert_allclose(granule.groups["area"], sample_tables()["groups"]["area"], rtol=1e-3)


# --- metadata ---------------------------------------------------------------------------------------------------


def test_meta_comes_from_attributes_and_dimensions(tmp_path):
    path = granule_file(tmp_path, platform="G19", seconds=20.5, declared_counts={"flashes": 9, "events": None})
    meta = read_granule(path).meta
    assert meta == {
        "source_file": path.name,
        "platform": "G19",
        "orbital_slot": "GOES-East",
        "dataset_name": path.name,
        "time_start": START,
        "time_end": START + timedelta(seconds=20.5),
        "product_time": START,
        "n_flashes": 2,
        "n_groups": 3,
        "n_events": 5,
        "declared_flashes": 9,
        "declared_groups": 3,
        "declared_events": None,
        "repairs": [],
    }


def test_coverage_attributes_win_over_the_file_name(tmp_path):
    path = granule_file(
        tmp_path, global_attributes={"time_coverage_start": "2019-06-01T11:59:59.7Z", "platform_ID": "G19"}
    )
    meta = read_granule(path).meta
    assert meta["time_start"] == datetime(2019, 6, 1, 11, 59, 59, 700_000)
    assert meta["platform"] == "G19"


def test_empty_granule_without_global_attributes(tmp_path):
    path = write_empty_lcfa(tmp_path / lcfa_name("G17", START, seconds=11), platform="G17", start=START, seconds=11)
    granule = read_granule(path)
    assert_dtypes(granule)
    assert all(len(getattr(granule, table)) == 0 for table in COLUMNS)
    meta = granule.meta
    assert (meta["n_flashes"], meta["n_groups"], meta["n_events"]) == (0, 0, 0)
    assert meta["platform"] == "G17"  # from the file name
    assert (meta["time_start"], meta["time_end"]) == (START, START + timedelta(seconds=11))
    assert meta["orbital_slot"] is None and meta["dataset_name"] is None


def test_granule_without_count_scalars_or_product_time(tmp_path):
    omit = ("flash_count", "group_count", "event_count", "product_time")
    meta = read_granule(granule_file(tmp_path, omit=omit)).meta
    assert (meta["declared_flashes"], meta["declared_groups"], meta["declared_events"]) == (None, None, None)
    assert meta["product_time"] is None
    assert meta["n_flashes"] == 2


def test_meta_times_are_none_without_attributes_or_a_valid_name(tmp_path):
    meta = read_granule(write_empty_lcfa(tmp_path / "renamed.nc", start=START)).meta
    assert meta["time_start"] is None and meta["time_end"] is None and meta["platform"] is None


# --- faults --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable", ["flash_energy", "event_time_offset", "group_parent_flash_id", "event_lon", "flash_quality_flag"]
)
def test_missing_required_variable_raises_naming_it(tmp_path, variable):
    path = granule_file(tmp_path, omit=[variable])
    with pytest.raises(GranuleError, match=f"{re.escape(path.name)}: missing required variable '{variable}'"):
        read_granule(path)


def test_a_flash_id_wider_than_the_products_uint16_is_refused_not_wrapped(tmp_path):
    """The table's flash_id is int32 (the product's uint16 fits): a file holding a larger id must not wrap into it."""
    path = granule_file(tmp_path, omit=["flash_id"])
    with netCDF4.Dataset(path, "a") as ds:
        ds.createVariable("flash_id", "i8", ("number_of_flashes",))[:] = [40_000, 2**31 + 7]
    with pytest.raises(GranuleError, match=f"{re.escape(path.name)}: flash_id holds values outside int32"):
        read_granule(path)


def test_missing_variable_in_an_empty_granule_still_raises(tmp_path):
    path = write_empty_lcfa(tmp_path / lcfa_name(), omit=["event_energy"])
    with pytest.raises(GranuleError, match="event_energy"):
        read_granule(path)


def test_garbage_file_raises_granule_error(tmp_path):
    path = tmp_path / lcfa_name()
    path.write_bytes(b"<html>503 Service Unavailable</html>")
    with pytest.raises(GranuleError, match=re.escape(path.name)) as info:
        read_granule(path)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, OSError)


def test_truncated_download_raises_granule_error(tmp_path):
    whole = granule_file(tmp_path)
    truncated = tmp_path / "part" / whole.name
    truncated.parent.mkdir()
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(GranuleError, match=re.escape(whole.name)):
        read_granule(truncated)


def test_missing_file_raises_granule_error(tmp_path):
    with pytest.raises(GranuleError, match="nothing.nc"):
        read_granule(tmp_path / "nothing.nc")


# --- CSV output ----------------------------------------------------------------------------------------------------


def test_csvs_hold_the_tables_with_source_file_and_iso_times(tmp_path):
    granule = read_granule(granule_file(tmp_path, era="2018-ms"))
    paths = granule_to_csvs(granule, tmp_path / "csv")
    stem = Path(granule.meta["source_file"]).stem
    assert paths == {table: tmp_path / "csv" / f"{stem}_{table}.csv" for table in COLUMNS}
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == sorted(p.name for p in paths.values())
    for table, path in paths.items():
        frame = getattr(granule, table)
        back = pd.read_csv(path)
        assert list(back.columns) == ["source_file", *COLUMNS[table]]
        assert (back["source_file"] == granule.meta["source_file"]).all()
        for name in TIME_COLUMNS[table]:
            assert back[name].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}").all()
            pd.testing.assert_series_equal(pd.to_datetime(back[name]).astype("datetime64[ns]"), frame[name])
        pd.testing.assert_series_equal(back[f"{LEVEL[table]}_id"], frame[f"{LEVEL[table]}_id"], check_dtype=False)
        np.testing.assert_allclose(back["energy"], frame["energy"], rtol=1e-15)
    assert paths["flashes"].read_text().splitlines()[2].split(",")[1] == "65000"


def test_csvs_of_an_empty_granule_have_only_headers(tmp_path):
    granule = read_granule(write_empty_lcfa(tmp_path / lcfa_name(), start=START))
    for table, path in granule_to_csvs(granule, tmp_path).items():
        assert path.read_text().strip() == ",".join(["source_file", *COLUMNS[table]])


def test_csvs_overwrite_and_leave_nothing_half_written(tmp_path, monkeypatch):
    granule = read_granule(granule_file(tmp_path))
    out = tmp_path / "csv"
    first = granule_to_csvs(granule, out)
    before = {p: p.read_bytes() for p in first.values()}

    def failing_write_csv(table, handle, *args, **kwargs):
        handle.write(b"half a row,")
        raise OSError("disk full")

    monkeypatch.setattr(glm.pacsv, "write_csv", failing_write_csv)
    with pytest.raises(OSError, match="disk full"):
        granule_to_csvs(granule, out)
    assert {p: p.read_bytes() for p in out.iterdir()} == before  # old files intact, no temporary left


def test_decoding_is_vectorised(tmp_path):
    """A busy hour holds ~1M events; 200k rows must decode in well under a second per table on any laptop."""
    n = 200_000
    rng = np.random.default_rng(0)
    tables = hierarchy([3.0e8], [1.0e8], [1])
    tables["events"] = {
        "event_id": np.arange(n),
        "parent_group_id": np.full(n, 101),
        "time": rng.uniform(-2, 19.5, n),
        "lat": rng.uniform(-50, 50, n),
        "lon": rng.uniform(-140, -10, n),
        "energy": rng.uniform(1e-15, 1e-13, n),
    }
    path = granule_file(tmp_path, **tables)
    start = pd.Timestamp.now()
    granule = read_granule(path)
    assert (pd.Timestamp.now() - start).total_seconds() < 5
    assert len(granule.events) == n


def test_empty_tables_helper_matches_the_decoder_columns():
    assert {table: list(columns) for table, columns in empty_tables().items()} == {
        table: [c for c in COLUMNS[table] if c != "area_saturated"] for table in COLUMNS
    }
