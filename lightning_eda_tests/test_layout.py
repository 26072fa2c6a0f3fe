"""The S3 key layout: granule names, hour prefixes, key validation and local paths."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lightning_eda.goes.layout import (
    GRANULE_NAME_RE,
    LCFA_PRODUCT,
    GranuleName,
    format_granule_name,
    hour_prefix,
    is_granule_key,
    local_path_for_key,
    parse_granule_name,
)

NAME_2018 = "OR_GLM-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231.nc"
KEY_2018 = f"GLM-L2-LCFA/2018/183/04/{NAME_2018}"
# 2020 is a leap year: day 366 is December 31st, and the granule ends in 2021.
NAME_NEW_YEAR = "OR_GLM-L2-LCFA_G17_s20203662359400_e20210010000004_c20210010000030.nc"


def test_parse_granule_name_reads_every_part():
    parsed = parse_granule_name(NAME_2018)
    assert parsed == GranuleName(
        name=NAME_2018,
        product="GLM-L2-LCFA",
        platform="G16",
        start=datetime(2018, 7, 2, 4, 33, 0),
        end=datetime(2018, 7, 2, 4, 33, 20),
        created=datetime(2018, 7, 2, 4, 33, 23, 100_000),
    )
    assert parsed.start.tzinfo is None


def test_last_digit_is_tenths_of_a_second():
    parsed = parse_granule_name("OR_GLM-L2-LCFA_G16_s20210820633400_e20210820634005_c20210820634025.nc")
    assert parsed.end == datetime(2021, 3, 23, 6, 34, 0, 500_000)
    assert parsed.created == datetime(2021, 3, 23, 6, 34, 2, 500_000)


def test_granule_can_start_in_one_year_and_end_in_the_next():
    parsed = parse_granule_name(NAME_NEW_YEAR)
    assert parsed.start == datetime(2020, 12, 31, 23, 59, 40)
    assert parsed.end == datetime(2021, 1, 1, 0, 0, 0, 400_000)
    assert parsed.end - parsed.start == timedelta(seconds=20.4)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("OR_GLM-L2-LCFA_G16_s20183660000000_e20183660000200_c20183660000230.nc", "day of year 366"),
        ("OR_GLM-L2-LCFA_G16_s20180000000000_e20180000000200_c20180000000230.nc", "day of year 0"),
        ("OR_GLM-L2-LCFA_G16_s20181832433000_e20181832433200_c20181832433231.nc", "time of day"),
        ("OR_GLM-L2-LCFA_G16_s20181830460000_e20181830433200_c20181830433231.nc", "time of day"),
        ("OR_GLM-L2-LCFA_G16_s20181830433200_e20181830433000_c20181830433231.nc", "before start"),
    ],
)
def test_parse_granule_name_rejects_impossible_times(name, reason):
    with pytest.raises(ValueError, match=reason):
        parse_granule_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "OR_GLM-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231",  # no .nc
        NAME_2018 + ".part",
        NAME_2018 + "\n",
        "x" + NAME_2018,
        "OR_GLM-L2-LCFA_G16_s2018183043300_e20181830433200_c20181830433231.nc",  # 13 digits
        "OR_GLM-L2-LCFA_G6_s20181830433000_e20181830433200_c20181830433231.nc",  # platform Gn
        "OR_GLM-L2-lcfa_G16_s20181830433000_e20181830433200_c20181830433231.nc",  # lower-case product
        "OR_ABI-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231.nc",  # not GLM
        "OR_GLM-L2-LCFA_G16_s2018183043300\u0660_e20181830433200_c20181830433231.nc",  # Arabic-Indic digit
        "GLM-L2-LCFA/2018/183/04/" + NAME_2018,  # a key, not a name
    ],
)
def test_parse_granule_name_rejects_malformed_names_and_says_which(name):
    with pytest.raises(ValueError) as info:
        parse_granule_name(name)
    assert repr(name) in str(info.value)
    assert GRANULE_NAME_RE.fullmatch(name) is None


def test_format_granule_name_inverts_parse():
    parsed = parse_granule_name(NAME_NEW_YEAR)
    assert format_granule_name(parsed.platform, parsed.start, parsed.end, parsed.created) == NAME_NEW_YEAR


@pytest.mark.parametrize(
    "hour, prefix",
    [
        (datetime(2018, 7, 2, 4, 33, 20), "GLM-L2-LCFA/2018/183/04/"),
        (datetime(2019, 1, 1, 0, 0), "GLM-L2-LCFA/2019/001/00/"),
        (datetime(2020, 12, 31, 23, 59, 59), "GLM-L2-LCFA/2020/366/23/"),
        (datetime(2018, 7, 2, 0, 30, tzinfo=timezone(timedelta(hours=-5))), "GLM-L2-LCFA/2018/183/05/"),
    ],
)
def test_hour_prefix(hour, prefix):
    assert hour_prefix(LCFA_PRODUCT, hour) == prefix


@pytest.mark.parametrize("product", ["../GLM-L2-LCFA", "GLM-L2-LCFA/", "", "glm-l2-lcfa"])
def test_hour_prefix_refuses_products_that_are_not_glm_names(product):
    with pytest.raises(ValueError, match="product"):
        hour_prefix(product, datetime(2018, 7, 2, 4))


def test_valid_keys_are_accepted():
    assert is_granule_key(KEY_2018, LCFA_PRODUCT)
    assert is_granule_key(f"GLM-L2-LCFA/2020/366/23/{NAME_NEW_YEAR}", LCFA_PRODUCT)


@pytest.mark.parametrize(
    "key",
    [
        f"/{KEY_2018}",
        f"GLM-L2-LCFA/2018/183/04/../04/{NAME_2018}",
        f"GLM-L2-LCFA/2018/183/../183/04/{NAME_2018}",
        f"../GLM-L2-LCFA/2018/183/04/{NAME_2018}",
        f"GLM-L2-LCFA/2018/183/04/./{NAME_2018}",
        f"GLM-L2-LCFA/2018/183//04/{NAME_2018}",
        f"GLM-L2-LCFA\\2018\\183\\04\\{NAME_2018}",
        f"GLM-L2-LCFA/2018/183/04\\{NAME_2018}",
        f"GLM-L2-LCFA/2018/183/04/extra/{NAME_2018}",
        f"noaa-goes16/GLM-L2-LCFA/2018/183/04/{NAME_2018}",
        f"{KEY_2018}/",
        "GLM-L2-LCFA/2018/183/04/",
        "GLM-L2-LCFA/2018/183/04/notes.txt",
        f"GLM-L2-LCFA/2018/183/05/{NAME_2018}",  # wrong hour
        f"GLM-L2-LCFA/2018/184/04/{NAME_2018}",  # wrong day
        f"GLM-L2-LCFA/2019/183/04/{NAME_2018}",  # wrong year
        f"GLM-L2-LCFA/2018/183/4/{NAME_2018}",  # hour not zero-padded
        f"GLM-L2-LCFA/2021/001/00/{NAME_NEW_YEAR}",  # filed under the end time, not the start
        f"GLM-L2-LCFB/2018/183/04/{NAME_2018.replace('LCFA', 'LCFB')}",  # another product
        f"GLM-L2-LCFA/2018/183/04/{NAME_2018.replace('LCFA', 'LCFB')}",  # name of another product
        f"GLM-L2-LCFA/2018/183/04/{NAME_2018}\n",
    ],
)
def test_unsafe_or_inconsistent_keys_are_rejected(key):
    assert not is_granule_key(key, LCFA_PRODUCT)


def test_non_string_key_is_rejected():
    assert not is_granule_key(None, LCFA_PRODUCT)  # type: ignore[arg-type]


def test_local_path_mirrors_the_key_under_root(tmp_path):
    path = local_path_for_key(tmp_path, KEY_2018)
    assert path == tmp_path / "GLM-L2-LCFA" / "2018" / "183" / "04" / NAME_2018
    assert path.resolve().is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize(
    "key",
    [f"GLM-L2-LCFA/2018/183/04/../../../../../etc/{NAME_2018}", f"/{KEY_2018}", "", "../x"],
)
def test_local_path_refuses_invalid_keys(tmp_path, key):
    with pytest.raises(ValueError, match="not a GLM granule key"):
        local_path_for_key(tmp_path, key)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_local_path_refuses_keys_that_a_symlink_leads_outside_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "GLM-L2-LCFA").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        local_path_for_key(root, KEY_2018)


def test_keys_of_every_real_granule_are_valid(real_granules: list[Path]):
    for path in real_granules:
        start = parse_granule_name(path.name).start
        key = hour_prefix(LCFA_PRODUCT, start) + path.name
        assert is_granule_key(key, LCFA_PRODUCT), key
