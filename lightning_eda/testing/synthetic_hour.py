"""An hour of 180 real-looking granules: copies of the real ones, re-stamped into each 20 s slot of the hour.

Re-stamping rewrites what carries the time — the file name, `time_coverage_start/_end`, `product_time` and the epoch
in every `units = "... since <epoch>"` — and leaves the packed data alone, so the decoder's work is exactly that of
the real granules and the loaded times land in the new hour.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

import netCDF4

from lightning_eda.goes.layout import format_granule_name, parse_granule_name

SLOT = timedelta(seconds=20)
_EPOCH_RE = re.compile(r"(since )(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?)")
PRODUCT_EPOCH = datetime(2000, 1, 1, 12)


def _coverage(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 100000}Z"


def restamp(source: Path, folder: Path, start: datetime) -> Path:
    """Copy ``source`` into ``folder`` as the granule starting at ``start`` (same length as the original)."""
    original = parse_granule_name(source.name)
    end = start + (original.end - original.start)
    dest = folder / format_granule_name(original.platform, start, end, end + timedelta(seconds=2))
    shutil.copyfile(source, dest)
    shift = start - original.start
    with netCDF4.Dataset(dest, "r+") as ds:
        for variable in ds.variables.values():
            units = getattr(variable, "units", "")
            match = _EPOCH_RE.search(units) if isinstance(units, str) else None
            if match and variable.name != "product_time":
                epoch = datetime.fromisoformat(match.group(2).replace(" ", "T")) + shift
                text = epoch.strftime("%Y-%m-%d %H:%M:%S.") + f"{epoch.microsecond // 1000:03d}"
                variable.setncattr("units", units[: match.start(2)] + text + units[match.end(2) :])
        if "time_coverage_start" in ds.ncattrs():
            ds.setncattr("time_coverage_start", _coverage(start))
            ds.setncattr("time_coverage_end", _coverage(end))
        if "product_time" in ds.variables:
            ds.variables["product_time"].set_auto_maskandscale(False)
            ds.variables["product_time"][...] = (end - PRODUCT_EPOCH).total_seconds()
    return dest


def make_hour(real_granules: list[Path], folder: Path, hour: datetime, count: int = 180) -> list[Path]:
    """``count`` granules for the 20 s slots of ``hour``, cycling through the non-empty real granules."""
    folder.mkdir(parents=True, exist_ok=True)
    busy = [p for p in real_granules if p.stat().st_size > 100_000]
    return [restamp(busy[i % len(busy)], folder, hour + i * SLOT) for i in range(count)]


def bare_decode(paths: list[Path]) -> float:
    """The baseline: what a user's own loop costs, opening each file and reading every variable with netCDF4's
    default decoding. Returns seconds."""
    start = time.perf_counter()
    for path in paths:
        with netCDF4.Dataset(path) as ds:
            for variable in ds.variables.values():
                variable[...]
    return time.perf_counter() - start
