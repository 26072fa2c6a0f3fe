"""Unit tests for lightning_eda.settings: validation of the environment, in process, with a fixed ``now``.

Every ConfigError is checked for the name of the variable it is about, since that one line is all the user sees.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from import_probe import packages_loaded_by

from lightning_eda.settings import (
    DEFAULT_BUCKET,
    DEFAULT_PRODUCT,
    MAX_BACKFILL_HOURS,
    ConfigError,
    Settings,
    env_flags,
    hour_from_env,
    hour_from_parts,
    hour_range,
    parse_hour,
    validate_bucket,
    validate_product,
)
from lightning_eda.store.catalog import database_path

# A fixed "now": 2024-03-10 12:30 UTC, day of year 070 of a leap year (31 + 29 + 10).
NOW = datetime(2024, 3, 10, 12, 30)


# --- hour_from_env ---------------------------------------------------------------------------------------------


def test_hour_from_env_with_all_three_parts():
    env = {"GOES_YEAR": "2018", "GOES_DOY": "183", "GOES_HOUR": "04"}
    # Day 183 of 2018 (not leap) is 2 July.
    assert hour_from_env(env, now=NOW) == datetime(2018, 7, 2, 4)


def test_hour_from_env_strips_whitespace():
    env = {"GOES_YEAR": " 2018 ", "GOES_DOY": "183\n", "GOES_HOUR": "\t4"}
    assert hour_from_env(env, now=NOW) == datetime(2018, 7, 2, 4)


@pytest.mark.parametrize("env", [{}, {"GOES_YEAR": "", "GOES_DOY": "  ", "GOES_HOUR": ""}, {"S3_BUCKET": "x"}])
def test_hour_from_env_with_none_set_is_the_latest_complete_hour(env):
    # At 12:30 the hour 11:00-12:00 is the last one that has ended; blank values count as unset.
    assert hour_from_env(env, now=NOW) == datetime(2024, 3, 10, 11)


def test_latest_complete_hour_on_the_hour():
    # At exactly 12:00 the hour 11:00-12:00 has just ended.
    assert hour_from_env({}, now=datetime(2024, 3, 10, 12, 0)) == datetime(2024, 3, 10, 11)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"GOES_YEAR": "2018"}, "GOES_DOY, GOES_HOUR"),
        ({"GOES_DOY": "183"}, "GOES_YEAR, GOES_HOUR"),
        ({"GOES_HOUR": "4"}, "GOES_YEAR, GOES_DOY"),
        ({"GOES_YEAR": "2018", "GOES_DOY": "183"}, "GOES_HOUR"),
        ({"GOES_YEAR": "2018", "GOES_DOY": "183", "GOES_HOUR": "  "}, "GOES_HOUR"),
        ({"GOES_DOY": "183", "GOES_HOUR": "4"}, "GOES_YEAR"),
    ],
)
def test_hour_from_env_with_only_some_parts_names_the_missing_ones(env, missing):
    with pytest.raises(ConfigError) as info:
        hour_from_env(env, now=NOW)
    assert f"(missing: {missing})" in str(info.value)


def test_hour_from_env_passes_errors_of_the_parts_through():
    with pytest.raises(ConfigError, match="GOES_HOUR"):
        hour_from_env({"GOES_YEAR": "2018", "GOES_DOY": "183", "GOES_HOUR": "24"}, now=NOW)


# --- hour_from_parts -------------------------------------------------------------------------------------------


def test_doy_366_in_a_leap_year_is_31_december():
    assert hour_from_parts("2020", "366", "23", now=NOW) == datetime(2020, 12, 31, 23)


def test_doy_366_in_a_common_year_is_rejected():
    with pytest.raises(ConfigError) as info:
        hour_from_parts("2021", "366", "00", now=NOW)
    message = str(info.value)
    assert message.startswith("GOES_DOY='366'")
    assert "001..365 for 2021" in message  # the range allowed for that year


def test_doy_with_leading_zeros():
    assert hour_from_parts("2019", "001", "00", now=NOW) == datetime(2019, 1, 1, 0)


@pytest.mark.parametrize("doy", ["0", "000", "367"])
def test_doy_out_of_range(doy):
    with pytest.raises(ConfigError, match=r"^GOES_DOY=.*out of range"):
        hour_from_parts("2020", doy, "00", now=NOW)


@pytest.mark.parametrize("hour", ["24", "99"])
def test_hour_out_of_range(hour):
    with pytest.raises(ConfigError, match=r"^GOES_HOUR=.*out of range: allowed 00\.\.23"):
        hour_from_parts("2020", "100", hour, now=NOW)


@pytest.mark.parametrize(
    ("year", "doy", "hour", "variable"),
    [
        ("20x8", "100", "00", "GOES_YEAR"),
        ("", "100", "00", "GOES_YEAR"),
        ("2018", "1.5", "00", "GOES_DOY"),
        ("2018", "-1", "00", "GOES_DOY"),
        ("2018", "100", "four", "GOES_HOUR"),
        ("2018", "100", "+4", "GOES_HOUR"),
        ("2018", "100", "4 5", "GOES_HOUR"),
    ],
)
def test_non_digits_are_rejected_naming_the_variable(year, doy, hour, variable):
    with pytest.raises(ConfigError) as info:
        hour_from_parts(year, doy, hour, now=NOW)
    assert str(info.value).startswith(f"{variable}=")
    assert "is not a whole number" in str(info.value)


def test_unicode_digit_like_characters_raise_config_error():
    with pytest.raises(ConfigError, match="^GOES_HOUR="):
        hour_from_parts("2018", "100", "²", now=NOW)


@pytest.mark.parametrize("year", ["2016", "2025"])
def test_year_outside_the_glm_era_up_to_now(year):
    # GLM data begin in 2017; with now in 2024, 2025 is in the future.
    with pytest.raises(ConfigError) as info:
        hour_from_parts(year, "001", "00", now=NOW)
    assert str(info.value) == f"GOES_YEAR={year!r} is out of range: allowed 2017..2024"


def test_first_and_current_year_are_accepted():
    assert hour_from_parts("2017", "001", "00", now=NOW) == datetime(2017, 1, 1)
    assert hour_from_parts("2024", "070", "11", now=NOW) == datetime(2024, 3, 10, 11)


@pytest.mark.parametrize(("doy", "hour"), [("070", "12"), ("070", "23"), ("071", "00"), ("366", "00")])
def test_hour_not_complete_yet_is_rejected(doy, hour):
    # At 12:30 on day 070 the 12:00 hour is still running, and anything later has not begun.
    with pytest.raises(ConfigError) as info:
        hour_from_parts("2024", doy, hour, now=NOW)
    message = str(info.value)
    assert message.startswith("GOES_YEAR/GOES_DOY/GOES_HOUR")
    assert "not a complete hour yet" in message


def test_hour_ending_exactly_now_is_complete():
    # The 11:00 hour ends at 12:00; at exactly 12:00 it is complete.
    assert hour_from_parts("2024", "070", "11", now=datetime(2024, 3, 10, 12)) == datetime(2024, 3, 10, 11)


# --- hour_range ------------------------------------------------------------------------------------------------


def test_hour_range_includes_both_ends():
    start, end = datetime(2018, 7, 2, 0), datetime(2018, 7, 2, 3)
    assert hour_range(start, end, now=NOW) == [datetime(2018, 7, 2, h) for h in range(4)]


def test_hour_range_of_one_hour():
    hour = datetime(2018, 7, 2, 5)
    assert hour_range(hour, hour, now=NOW) == [hour]


def test_hour_range_across_midnight_and_year_end():
    hours = hour_range(datetime(2019, 12, 31, 22), datetime(2020, 1, 1, 1), now=NOW)
    assert hours == [
        datetime(2019, 12, 31, 22),
        datetime(2019, 12, 31, 23),
        datetime(2020, 1, 1, 0),
        datetime(2020, 1, 1, 1),
    ]


def test_hour_range_end_before_start():
    with pytest.raises(ConfigError) as info:
        hour_range(datetime(2018, 7, 2, 4), datetime(2018, 7, 2, 3), now=NOW)
    assert str(info.value) == "--end 2018-07-02 03:00 is before --start 2018-07-02 04:00"


def test_hour_range_start_before_glm():
    with pytest.raises(ConfigError, match=r"^--start 2016-12-31 23:00 is before GLM data exist \(2017\)"):
        hour_range(datetime(2016, 12, 31, 23), datetime(2017, 1, 1, 1), now=NOW)


def test_hour_range_end_not_complete_yet():
    with pytest.raises(ConfigError, match=r"^--end 2024-03-10 12:00 UTC is not a complete hour yet"):
        hour_range(datetime(2024, 3, 10, 10), datetime(2024, 3, 10, 12), now=NOW)
    # One hour earlier it is complete.
    assert len(hour_range(datetime(2024, 3, 10, 10), datetime(2024, 3, 10, 11), now=NOW)) == 2


def test_hour_range_at_most_max_backfill_hours():
    assert MAX_BACKFILL_HOURS == 24 * 366
    start = datetime(2020, 1, 1)
    # Exactly the limit is allowed (both ends count, hence the - 1)...
    hours = hour_range(start, start + timedelta(hours=MAX_BACKFILL_HOURS - 1), now=NOW)
    assert len(hours) == MAX_BACKFILL_HOURS
    assert hours[-1] == datetime(2020, 12, 31, 23)  # 2020 is a leap year: 366 days
    # ...one more hour is not.
    with pytest.raises(ConfigError) as info:
        hour_range(start, start + timedelta(hours=MAX_BACKFILL_HOURS), now=NOW)
    expected = f"the range holds {MAX_BACKFILL_HOURS + 1} hours; at most {MAX_BACKFILL_HOURS} per backfill"
    assert str(info.value) == expected


# --- parse_hour ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2018-07-02-04:00",  # partition key
        "2018-07-02 04:00",
        "2018-07-02T04:00",
        "2018-07-02 04",
        "2018-07-02T04",
        "  2018-07-02 04:00\n",  # surrounding whitespace is ignored
    ],
)
def test_parse_hour_accepted_formats(text):
    assert parse_hour(text) == datetime(2018, 7, 2, 4)


def test_parse_hour_date_only_is_midnight():
    assert parse_hour("2018-07-02") == datetime(2018, 7, 2, 0)


@pytest.mark.parametrize("text", ["2018-07-02 04:30", "2018-07-02-04:01", "2018-07-02T04:59"])
def test_parse_hour_rejects_a_non_whole_hour(text):
    with pytest.raises(ConfigError) as info:
        parse_hour(text, "window_end")
    assert str(info.value) == f"window_end={text!r} must fall on a whole hour"


@pytest.mark.parametrize("text", ["", "yesterday", "2018-13-01 00:00", "2018-07-02 25:00", "02/07/2018"])
def test_parse_hour_rejects_other_text_naming_the_variable(text):
    with pytest.raises(ConfigError) as info:
        parse_hour(text)
    assert str(info.value).startswith(f"window_start={text!r} is not an hour")


# --- validate_bucket / validate_product -------------------------------------------------------------------------


@pytest.mark.parametrize("bucket", ["noaa-goes19", "noaa-goes16", "abc", "my.bucket-1", "a" * 63])
def test_valid_buckets(bucket):
    assert validate_bucket(bucket) == bucket


@pytest.mark.parametrize(
    "bucket",
    [
        "../x",  # path traversal
        "noaa/../etc",
        "Noaa-goes19",  # upper case
        "NOAA-GOES19",
        "a..b",  # '..' inside
        "ab",  # too short
        "a" * 64,  # too long
        "-noaa",  # must begin with a letter or digit
        "noaa-",  # and end with one
        "noaa goes",
        "",
    ],
)
def test_invalid_buckets_name_the_variable(bucket):
    with pytest.raises(ConfigError) as info:
        validate_bucket(bucket)
    assert str(info.value).startswith(f"S3_BUCKET={bucket!r} is not a valid S3 bucket name")


def test_invalid_bucket_names_the_given_variable():
    with pytest.raises(ConfigError, match=r"^bucket='\.\./x'"):
        validate_bucket("../x", variable="bucket")


@pytest.mark.parametrize("call", [lambda: validate_bucket("noaa-goes19\n"), lambda: validate_product("GLM-L2-LCFA\n")])
def test_trailing_newline_is_rejected(call):
    with pytest.raises(ConfigError):
        call()


@pytest.mark.parametrize("product", ["GLM-L2-LCFA", "ABI-L1B-RADF", "X"])
def test_valid_products(product):
    assert validate_product(product) == product


@pytest.mark.parametrize("product", ["../x", "..", "GLM/../x", "glm-l2-lcfa", "GLM L2", "-GLM", "GLM_L2", ""])
def test_invalid_products_name_the_variable(product):
    with pytest.raises(ConfigError) as info:
        validate_product(product)
    assert str(info.value).startswith(f"PRODUCT={product!r} is not a valid product name")


# --- Settings.from_env -----------------------------------------------------------------------------------------


def test_settings_defaults():
    s = Settings.from_env({})
    assert s == Settings(bucket=DEFAULT_BUCKET, product=DEFAULT_PRODUCT, data_dir=Path("data"), source_dir=None)
    assert (DEFAULT_BUCKET, DEFAULT_PRODUCT) == ("east", "GLM-L2-LCFA")  # GOES-East, whichever satellite it was
    assert database_path(s.data_dir) == Path("data") / "glm.duckdb"


def test_settings_blank_values_fall_back_to_defaults():
    env = {"S3_BUCKET": "  ", "PRODUCT": "", "LIGHTNING_EDA_DATA_DIR": " ", "GOES_SOURCE_DIR": ""}
    assert Settings.from_env(env) == Settings.from_env({})


def test_settings_from_env_values(tmp_path):
    env = {
        "S3_BUCKET": " noaa-goes16 ",
        "PRODUCT": "GLM-L2-LCFA",
        "LIGHTNING_EDA_DATA_DIR": str(tmp_path / "out"),
        "GOES_SOURCE_DIR": str(tmp_path),
    }
    s = Settings.from_env(env)
    assert s.bucket == "noaa-goes16"  # stripped
    assert s.data_dir == tmp_path / "out"
    assert s.source_dir == tmp_path
    assert database_path(s.data_dir) == tmp_path / "out" / "glm.duckdb"


def test_a_bad_flag_is_refused_or_reported_and_left_out():
    values = {"write_csv": "maybe", "keep_raw": "0"}
    with pytest.raises(ConfigError, match="LIGHTNING_EDA_CSV='maybe'"):
        env_flags(values)
    reported = []
    assert env_flags(values, on_error=reported.append) == {"keep_raw": False}
    assert [str(e) for e in reported] == [
        str(
            ConfigError("LIGHTNING_EDA_CSV='maybe' is not a yes/no value: use 1 or 0 (also true/false, yes/no, on/off)")
        )
    ]


def test_reading_the_settings_loads_no_store_and_no_duckdb():
    assert packages_loaded_by(["lightning_eda.settings"], ["duckdb", "pyarrow"]) == []


def test_settings_missing_source_dir(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"GOES_SOURCE_DIR": str(missing)})
    assert str(info.value) == f"GOES_SOURCE_DIR={str(missing)!r} is not a directory"


def test_settings_source_dir_that_is_a_file(tmp_path):
    file = tmp_path / "granule.nc"
    file.write_bytes(b"")
    with pytest.raises(ConfigError, match="^GOES_SOURCE_DIR="):
        Settings.from_env({"GOES_SOURCE_DIR": str(file)})


@pytest.mark.parametrize(("key", "value"), [("S3_BUCKET", "../x"), ("PRODUCT", "glm")])
def test_settings_bad_names_name_the_variable(key, value):
    with pytest.raises(ConfigError, match=f"^{key}="):
        Settings.from_env({key: value})
