"""Decoding an hour's granules into the store's part files, on a pool of processes kept between hours.

Each granule becomes typed Arrow tables (:func:`transform_granule`); a decoder process writes its chunk's rows as
``<table>-<part>.parquet`` into the version folder being staged, and hands back only a :class:`GranuleRecord` per
granule. A granule that cannot be decoded is recorded as ``failed``, never raised, so one bad file cannot stop an hour.
No Dagster here.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lightning_eda.goes.granule import Columns, granule_to_csvs, read_granule_arrays
from lightning_eda.process_pool import SPAWN, default_workers, discard_pool, may_start_processes, shared_pool
from lightning_eda.store.parquet_store import write_part
from lightning_eda.store.schemas import DATA_TABLES, GLM_SCHEMAS, conform

log = logging.getLogger(__name__)

TABLE_OF_KIND = {"flashes": "glm_flash", "groups": "glm_group", "events": "glm_event"}


@dataclass
class GranuleRecord:
    """What the transform learned about one granule: its facts, or why it is not (yet) in the store."""

    source_file: str
    size_bytes: int
    status: str  # "loaded", "failed" (cannot be decoded: permanent) or "missing" (not fetched yet: retried)
    error: str | None = None
    platform: str | None = None
    orbital_slot: str | None = None
    time_start: str | None = None
    time_end: str | None = None
    n_flashes: int = 0
    n_groups: int = 0
    n_events: int = 0
    csv: dict[str, str] = field(default_factory=dict)


def _iso(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat()


def transform_granule(path: Path, csv_dir: Path | None = None) -> tuple[GranuleRecord, dict[str, pa.Table] | None]:
    """Decode one granule into typed Arrow tables (and CSVs when ``csv_dir`` is given).

    Any failure is recorded, never raised, so one bad file cannot stop an hour.
    """
    size = path.stat().st_size if path.exists() else 0
    try:
        granule = read_granule_arrays(path)
        written = granule_to_csvs(granule.frames(), csv_dir) if csv_dir is not None else {}
        tables = {
            TABLE_OF_KIND[kind]: _typed(columns, path.name, TABLE_OF_KIND[kind])
            for kind, columns in (("flashes", granule.flashes), ("groups", granule.groups), ("events", granule.events))
        }
    except Exception as exc:  # noqa: BLE001 - a corrupt file can fail in netCDF4, HDF5 or numpy; all mean "skip it"
        log.warning("granule %s failed: %s", path.name, exc)
        return GranuleRecord(path.name, size, "failed", error=f"{type(exc).__name__}: {exc}"), None
    meta = granule.meta
    record = GranuleRecord(
        source_file=path.name,
        size_bytes=size,
        status="loaded",
        platform=meta.get("platform"),
        orbital_slot=meta.get("orbital_slot"),
        time_start=_iso(meta.get("time_start")),
        time_end=_iso(meta.get("time_end")),
        n_flashes=int(meta["n_flashes"]),
        n_groups=int(meta["n_groups"]),
        n_events=int(meta["n_events"]),
        csv={kind: str(p) for kind, p in written.items()},
    )
    return record, tables


def _typed(columns: Columns, source_file: str, table: str) -> pa.Table:
    """A decoded table as the store types it: Arrow column by column from NumPy (8× faster than via ``from_pandas``;
    no DataFrame is built), then :func:`conform`'s cast (ns times to µs; an id too wide for its column raises).

    ``source_file`` (first in every data table) is a one-entry dictionary, with no per-row copies of the name; NaN
    and NaT become nulls, as SQL expects of missing values.
    """
    schema = GLM_SCHEMAS[table]
    names = pa.array([source_file], type=pa.string())
    rows = len(columns[schema.names[1]])
    arrays = [pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), names)]
    arrays += [pa.array(columns[name], from_pandas=True) for name in schema.names[1:]]
    return conform(pa.Table.from_arrays(arrays, names=schema.names), schema)


def decode_chunk(files: list[Path], folder: Path, part: str, csv_dir: Path | None = None) -> list[GranuleRecord]:
    """Decode granules and write their rows as ``<table>-<part>.parquet`` in ``folder`` (in a decoder process).

    Rows go straight to disk from the process that decoded them: nothing but the small records crosses a pipe.
    """
    records = []
    parts: dict[str, list[pa.Table]] = {table: [] for table in DATA_TABLES}
    for path in files:
        record, tables = transform_granule(path, csv_dir)
        records.append(record)
        for table, data in (tables or {}).items():
            parts[table].append(data)
    for table, data in parts.items():
        write_part(folder, table, data, part)
    return records


def transform_granules(
    files: list[Path], folder: Path, csv_dir: Path | None = None, workers: int | None = None
) -> list[GranuleRecord]:
    """Decode granules on every core into part files of ``folder``; records in ``files`` order.

    Decoding holds the GIL, so processes, not threads. A worker that dies (a crash inside HDF5 on a corrupt file, say)
    takes the pool with it: the unfinished chunks' files are removed and their granules decoded one per process, so
    only the culprit is recorded as failed.
    """
    workers = default_workers() if workers is None else workers
    if workers < 2 or len(files) < 2 * workers or not may_start_processes():
        return decode_chunk(files, folder, "000", csv_dir)
    size = -(-len(files) // (2 * workers))  # two chunks per worker: one slow chunk does not hold the others up
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    done: dict[int, list[GranuleRecord]] = {}
    try:
        pool = shared_pool(workers)
        futures = {pool.submit(decode_chunk, chunk, folder, f"{i:03d}", csv_dir): i for i, chunk in enumerate(chunks)}
        for future in as_completed(futures):
            done[futures[future]] = future.result()
    except BrokenProcessPool:
        discard_pool()
        for i, chunk in enumerate(chunks):
            if i in done:
                continue
            for table in DATA_TABLES:
                (folder / f"{table}-{i:03d}.parquet").unlink(missing_ok=True)
            done[i] = [_transform_isolated(path, folder, f"{i:03d}x{j:03d}", csv_dir) for j, path in enumerate(chunk)]
    return [record for i in range(len(chunks)) for record in done[i]]


def _transform_isolated(path: Path, folder: Path, part: str, csv_dir: Path | None) -> GranuleRecord:
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=SPAWN) as pool:
            return pool.submit(decode_chunk, [path], folder, part, csv_dir).result()[0]
    except BrokenProcessPool:
        size = path.stat().st_size if path.exists() else 0
        return GranuleRecord(path.name, size, "failed", error="the decoder crashed on this file")
