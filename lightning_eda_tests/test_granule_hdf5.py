"""The decoder reads granules through HDF5 (h5py), not netCDF4: the NetCDF conventions it relies on hold.

Each decoding function declares the attributes it reads and the reader fetches only those; text attributes come as
``str`` whether stored fixed-length (NC_CHAR) or variable-length (NC_STRING); an unlimited dimension's length is its
variables' (the real product's record dimensions are unlimited, the factory's fixed), and variables of unequal length
along one are refused; the ingest's Arrow tables equal the DataFrames' columns.
"""

from __future__ import annotations

from datetime import datetime

import netCDF4
import numpy as np
import pandas as pd
import pytest

from lightning_eda.goes import variables
from lightning_eda.goes.granule import GranuleError, read_granule, read_granule_arrays
from lightning_eda.ingest.decoding import transform_granule
from lightning_eda.testing.lcfa_factory import ERAS, lcfa_name, write_lcfa

START = datetime(2019, 6, 1, 12, 0, 0)
RECORD_DIMENSIONS = ("number_of_flashes", "number_of_groups", "number_of_events")
DECODERS = [
    variables.unpack,
    variables.decode_ids,
    variables.decode_quality_flag,
    variables.time_offset_seconds,
    variables.energy_in_joules,
    variables.area_in_m2,
]


class RecordingAttributes(dict):
    """Attributes that remember which names were looked up."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.looked_up: set[str] = set()

    def get(self, key, default=None):
        self.looked_up.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.looked_up.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.looked_up.add(key)
        return super().__contains__(key)


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.__name__)
def test_each_decoder_reads_only_the_attributes_it_declares(decoder):
    """The reader fetches ``decoder.attributes`` and no others: a decoder reading an undeclared one would see it
    missing and decode silently wrong."""
    attrs = RecordingAttributes(
        _FillValue=np.int16(-1),
        _Unsigned="true",
        scale_factor=np.float32(0.5),
        add_offset=np.float32(1.0),
        units="seconds since 2019-06-01 12:00:00.000" if decoder is variables.time_offset_seconds else "m2",
    )
    if decoder is variables.energy_in_joules:
        attrs["units"] = "J"
    decoder(np.array([1, 2, -1], dtype=np.int16), attrs)
    assert attrs.looked_up <= set(decoder.attributes)


@pytest.mark.parametrize("era", ERAS)
def test_variable_length_text_attributes_decode_like_fixed_length_ones(tmp_path, era):
    """NC_STRING units (h5py reads them as variable-length strings) give the same times as NC_CHAR units."""
    for folder in ("char", "string"):
        (tmp_path / folder).mkdir()
    path = write_lcfa(tmp_path / "char" / lcfa_name("G16", START), start=START, era=era)
    strings = write_lcfa(tmp_path / "string" / lcfa_name("G16", START), start=START, era=era)
    with netCDF4.Dataset(strings, "a") as ds:
        for name in ("event_time_offset", "group_time_offset", "flash_energy"):
            var = ds.variables[name]
            var.setncattr_string("units", var.getncattr("units"))
    expected, got = read_granule(path), read_granule(strings)
    for table in ("flashes", "groups", "events"):
        pd.testing.assert_frame_equal(getattr(got, table), getattr(expected, table))


def _unlimited_granule(path, lengths: dict[str, int]):
    """A minimal granule whose record dimensions are unlimited, as the real product's are: event variables of the
    given lengths, copied from a factory granule."""
    (path.parent / "fixed").mkdir(exist_ok=True)
    source = write_lcfa(path.parent / "fixed" / path.name, start=START)
    with netCDF4.Dataset(source) as src, netCDF4.Dataset(path, "w") as dst:
        for name, dim in src.dimensions.items():
            dst.createDimension(name, None if name in RECORD_DIMENSIONS else len(dim))
        for name, var in src.variables.items():
            var.set_auto_maskandscale(False)
            fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
            out = dst.createVariable(name, var.dtype, var.dimensions, fill_value=fill)
            out.set_auto_maskandscale(False)
            out.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
            values = var[...]
            out[...] = values[: lengths.get(name, len(values))] if var.dimensions else values
        dst.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
    return path


def test_an_unlimited_dimension_is_as_long_as_its_variables(tmp_path):
    path = _unlimited_granule(tmp_path / lcfa_name("G16", START), {})
    granule = read_granule(path)
    fixed = read_granule(tmp_path / "fixed" / path.name)
    assert granule.meta["n_events"] == len(granule.events) == len(fixed.events) > 0
    for table in ("flashes", "groups", "events"):
        pd.testing.assert_frame_equal(getattr(granule, table), getattr(fixed, table))


def test_variables_of_unequal_length_along_an_unlimited_dimension_are_refused(tmp_path):
    path = _unlimited_granule(tmp_path / lcfa_name("G16", START), {"event_lat": 2})
    with pytest.raises(GranuleError, match=f"{path.name}: variable 'event_lat' holds 2 values, 'event_id'"):
        read_granule(path)


def test_the_ingests_arrow_tables_hold_the_dataframes_columns(real_granules):
    """transform_granule builds Arrow from the NumPy columns, not from the DataFrames: same values either way."""
    for path in real_granules:
        arrays, frames = read_granule_arrays(path), read_granule(path)
        _, tables = transform_granule(path)
        for kind, table in (("flashes", "glm_flash"), ("groups", "glm_group"), ("events", "glm_event")):
            frame = getattr(frames, kind)
            assert list(getattr(arrays, kind)) == list(frame.columns)
            arrow = tables[table].drop_columns(["source_file", "geometry"]).to_pandas()
            times = [column for column in frame if frame[column].dtype.kind == "M"]
            expected = frame.assign(**{column: frame[column].astype("datetime64[us]") for column in times})
            pd.testing.assert_frame_equal(arrow, expected, check_dtype=False)
