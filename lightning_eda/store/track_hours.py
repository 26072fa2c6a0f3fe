"""The storm tracks' store: one folder per hour, swapped in whole, as the GLM hours are.

Layout under the data folder::

    store/tracks/bucket=<bucket>/hour=YYYY-MM-DDTHH/
        storm_track.parquet  flash_track.parquet  track_event.parquet  track_summary.parquet  track_rate.parquet
        track_state.parquet  (the tracks open at the hour's end: what the next hour continues)
        settings.json        (what the hour was tracked with: the next hour continues it only under the same)

An hour is tracked from the state the hour before left, so tracking hour by hour or many hours in one run writes the
same folders. Re-tracking an hour writes its next version complete under ``store/.staging/`` and exchanges it with
the hour's folder in one rename (:func:`~lightning_eda.store.parquet_store.exchange`): readers see the old hour or
the new one, other hours are not touched, and :meth:`ParquetStore.sweep` deletes the replaced version later. An
empty sentinel hour (``bucket=_/hour=_``) keeps every glob matching, so the views work before any hour is tracked.
No Dagster here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from lightning_eda.store.parquet_store import ParquetStore, exchange, write_parquet
from lightning_eda.store.schemas import TRACK_SCHEMAS, conform

log = logging.getLogger(__name__)

TRACKS_DIR = "tracks"
STATE_TABLE = "track_state"
#: The tables users query (``glm.duckdb``'s views); ``track_state`` is the pipeline's own.
TRACK_TABLES = tuple(table for table in TRACK_SCHEMAS if table != STATE_TABLE)
SETTINGS_FILE = "settings.json"
_HOUR_FORMAT = "%Y-%m-%dT%H"
_SENTINEL = ("bucket=_", "hour=_")


class TrackHours:
    """The tracks' hour folders under ``<data_dir>/store/tracks``."""

    def __init__(self, store: ParquetStore):
        self.store = store
        self.root = store.root / TRACKS_DIR

    def hour_dir(self, bucket: str, hour: datetime) -> Path:
        if not bucket or "/" in bucket or bucket.startswith("."):
            raise ValueError(f"not a bucket name: {bucket!r}")
        return self.root / f"bucket={bucket}" / f"hour={hour:{_HOUR_FORMAT}}"

    def glob(self, table: str) -> str:
        """The pattern of ``table``'s file in every hour (the sentinel's included), for ``read_parquet``."""
        if table not in TRACK_SCHEMAS:
            raise ValueError(f"not a track table: {table!r}")
        return str(self.root.resolve() / "bucket=*" / "hour=*" / f"{table}.parquet")

    def ensure(self) -> None:
        """The empty sentinel hour: every glob then matches a file with the table's columns."""
        sentinel = self.root.joinpath(*_SENTINEL)
        for table, schema in TRACK_SCHEMAS.items():
            if not (sentinel / f"{table}.parquet").exists():
                write_parquet(schema.empty_table(), sentinel / f"{table}.parquet")

    def state_before(self, bucket: str, hour: datetime, settings: dict) -> pd.DataFrame | None:
        """The tracks the hour before ``hour`` left open, or None to start afresh: that hour was not tracked, or was
        tracked with other settings (its positions would not be in this plane, its frames not on this grid).

        Ids come back as the tracking made them: ``parent_id`` nullable (``Int64``), the others plain int64.
        """
        previous = hour - timedelta(hours=1)
        folder = self.hour_dir(bucket, previous)
        try:
            made_with = json.loads((folder / SETTINGS_FILE).read_text())
        except FileNotFoundError:
            return None
        if made_with != settings:
            log.info("tracks of %s were made with %s, not %s: %s starts afresh", previous, made_with, settings, hour)
            return None
        data = pq.read_table(folder / f"{STATE_TABLE}.parquet", schema=TRACK_SCHEMAS[STATE_TABLE])
        state = data.to_pandas()
        state["parent_id"] = pd.array(data.column("parent_id").to_pylist(), dtype="Int64")
        return state

    def write_hour(self, bucket: str, hour: datetime, tables: dict[str, pd.DataFrame], settings: dict) -> Path:
        """Replace the hour's folder with these tables (every one of :data:`TRACK_SCHEMAS`) in one rename."""
        missing = [table for table in TRACK_SCHEMAS if table not in tables]
        if missing:
            raise ValueError(f"an hour of tracks needs every table; missing {missing}")
        staged = self.store.new_staging()
        try:
            for table, schema in TRACK_SCHEMAS.items():
                pq.write_table(conform(tables[table], schema), staged / f"{table}.parquet", compression="zstd")
            (staged / SETTINGS_FILE).write_text(json.dumps(settings, sort_keys=True))
            return self._swap_in(staged, self.hour_dir(bucket, hour))
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise

    def _swap_in(self, staged: Path, folder: Path) -> Path:
        folder.parent.mkdir(parents=True, exist_ok=True)
        superseded = self.store.staging_root / f"superseded-{time.time_ns()}-{uuid.uuid4().hex}"
        if folder.exists():
            if exchange(staged, folder):
                os.rename(staged, superseded)
                return folder
            os.rename(folder, superseded)  # no atomic exchange here: the hour is absent for a moment
        os.rename(staged, folder)
        return folder
