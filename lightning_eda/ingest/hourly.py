"""The hour-level steps behind the ``ingestor`` assets: where an hour's files live, transform and load.

Folders under the data directory (``$LIGHTNING_EDA_DATA_DIR``):
- ``raw/<bucket>/<product>/YYYY/DDD/HH/*.nc``: granules as published (same layout as the bucket),
- ``csv/<bucket>/<product>/YYYY/DDD/HH/``: per-granule flash, group and event CSVs and ``manifest.json``,
- ``glm.duckdb``: the database.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

import pandas as pd

from lightning_eda.files import atomic_write
from lightning_eda.goes.granule import granule_to_csvs, read_granule
from lightning_eda.goes.layout import hour_prefix, is_granule_key
from lightning_eda.ingest.archive import ExtractReport
from lightning_eda.store import database
from lightning_eda.utc import utc_now

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
EXTRACT_REPORT_NAME = "extract.json"
TABLE_OF_KIND = {"flashes": "glm_flash", "groups": "glm_group", "events": "glm_event"}


@dataclass(frozen=True)
class HourPaths:
    """Where one (bucket, product, hour) lives on disk."""

    data_dir: Path
    bucket: str
    product: str
    hour: datetime

    @property
    def raw_root(self) -> Path:
        return self.data_dir / "raw" / self.bucket

    @property
    def raw_dir(self) -> Path:
        return self.raw_root / hour_prefix(self.product, self.hour)

    @property
    def csv_dir(self) -> Path:
        return self.data_dir / "csv" / self.bucket / hour_prefix(self.product, self.hour)

    @property
    def manifest(self) -> Path:
        return self.csv_dir / MANIFEST_NAME

    @property
    def extract_report(self) -> Path:
        return self.csv_dir / EXTRACT_REPORT_NAME


@dataclass
class GranuleRecord:
    """What the transform learned about one granule: its facts, or why it failed."""

    source_file: str
    size_bytes: int
    status: str  # "loaded" once transformed; "failed" when it could not be decoded
    error: Optional[str] = None
    platform: Optional[str] = None
    orbital_slot: Optional[str] = None
    time_start: Optional[str] = None
    time_end: Optional[str] = None
    n_flashes: int = 0
    n_groups: int = 0
    n_events: int = 0
    csv: dict[str, str] = field(default_factory=dict)


def _iso(value) -> Optional[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return pd.Timestamp(value).isoformat()


def transform_granule(path: Path, csv_dir: Path) -> GranuleRecord:
    """Decode one granule into CSVs; any failure is recorded, never raised, so one bad file cannot stop an hour."""
    size = path.stat().st_size if path.exists() else 0
    try:
        granule = read_granule(path)
        written = granule_to_csvs(granule, csv_dir)
    except Exception as exc:  # noqa: BLE001 - a corrupt file can fail in netCDF4, HDF5 or numpy; all mean "skip it"
        log.warning("granule %s failed: %s", path.name, exc)
        return GranuleRecord(path.name, size, "failed", error=f"{type(exc).__name__}: {exc}")
    meta = granule.meta
    return GranuleRecord(
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


def default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


def transform_granules(files: list[Path], csv_dir: Path, workers: Optional[int] = None) -> list[GranuleRecord]:
    """Decode granules on every core (decoding and CSV writing hold the GIL, so processes, not threads).

    A worker that dies (a crash inside HDF5 on a corrupt file, say) takes the pool with it: the granules not yet done
    are then retried one per process, so only the culprit is recorded as failed.
    """
    workers = default_workers() if workers is None else workers
    if workers < 2 or len(files) < 2 * workers:
        return [transform_granule(path, csv_dir) for path in files]
    spawn = multiprocessing.get_context("spawn")  # never fork a process that runs threads (Dagster's do)
    done: dict[Path, GranuleRecord] = {}
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            futures = {pool.submit(transform_granule, path, csv_dir): path for path in files}
            for future in as_completed(futures):
                done[futures[future]] = future.result()
    except BrokenProcessPool:
        for path in (p for p in files if p not in done):
            done[path] = _transform_isolated(path, csv_dir, spawn)
    return [done[path] for path in files]


def _transform_isolated(path: Path, csv_dir: Path, context) -> GranuleRecord:
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(transform_granule, path, csv_dir).result()
    except BrokenProcessPool:
        size = path.stat().st_size if path.exists() else 0
        return GranuleRecord(path.name, size, "failed", error="the decoder crashed on this file")


def write_extract_report(paths: HourPaths, report: ExtractReport) -> None:
    """Record what the hour's extract listed and failed to fetch, for the transform that follows."""
    listed = sorted([*report.downloaded, *report.already_present, *report.failed])
    text = json.dumps({"listed": listed, "failed": report.failed})
    atomic_write(paths.extract_report, lambda handle: handle.write(text.encode()))


def read_extract_report(paths: HourPaths) -> dict:
    """What the hour's last extract listed and failed to fetch (empty before any extract ran)."""
    return json.loads(paths.extract_report.read_text()) if paths.extract_report.is_file() else {}


def granules_to_transform(paths: HourPaths, extracted: dict) -> list[Path]:
    """The hour's raw granules that the last extract listed (all granule files when no extract was recorded).

    A granule withdrawn from the archive since an earlier run is not reloaded; files that are not granules of
    this hour and product are never decoded.
    """
    listed = set(extracted["listed"]) if "listed" in extracted else None
    prefix = hour_prefix(paths.product, paths.hour)
    return [
        path
        for path in sorted(paths.raw_dir.glob("*.nc"))
        if is_granule_key(prefix + path.name, paths.product) and (listed is None or path.name in listed)
    ]


def transform_hour(
    raw_files: list[Path], paths: HourPaths, failed_downloads: Optional[dict[str, str]] = None
) -> list[GranuleRecord]:
    """Transform every granule of the hour and write the manifest that ``load`` reads.

    Granules that could not be downloaded are recorded as failed too, so ``glm_file`` names every gap of the hour.
    """
    paths.csv_dir.mkdir(parents=True, exist_ok=True)
    records = transform_granules(sorted(raw_files), paths.csv_dir)
    known = {r.source_file for r in records}
    for name, error in sorted((failed_downloads or {}).items()):
        if name not in known:
            records.append(GranuleRecord(name, 0, "failed", error=f"download failed: {error}"))
    write_manifest(paths.manifest, records)
    return records


def write_manifest(path: Path, records: list[GranuleRecord]) -> None:
    text = json.dumps([asdict(r) for r in records], indent=1)
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_manifest(path: Path) -> list[GranuleRecord]:
    if not path.is_file():
        raise FileNotFoundError(f"no transform output at {path}: materialize `transform` for this hour first")
    return [GranuleRecord(**item) for item in json.loads(path.read_text())]


def files_frame(records: list[GranuleRecord], *, bucket: str, product: str, hour: datetime) -> pd.DataFrame:
    loaded_at = utc_now()
    frame = pd.DataFrame(
        {
            "source_file": [r.source_file for r in records],
            "bucket": bucket,
            "product": product,
            "hour": pd.Timestamp(hour),
            "platform": [r.platform for r in records],
            "orbital_slot": [r.orbital_slot for r in records],
            # ISO8601 per element: an hour mixes whole-second times with fractional ones (e.g. ``06:34:00.5``)
            "time_start": pd.to_datetime([r.time_start for r in records], format="ISO8601"),
            "time_end": pd.to_datetime([r.time_end for r in records], format="ISO8601"),
            "n_flashes": pd.array([r.n_flashes for r in records], dtype="int64"),
            "n_groups": pd.array([r.n_groups for r in records], dtype="int64"),
            "n_events": pd.array([r.n_events for r in records], dtype="int64"),
            "size_bytes": pd.array([r.size_bytes for r in records], dtype="int64"),
            "status": [r.status for r in records],
            "error": [r.error for r in records],
            "loaded_at": pd.Timestamp(loaded_at),
        },
        columns=database.FILE_COLUMNS,
    )
    return frame


def load_hour(con, records: list[GranuleRecord], *, bucket: str, product: str, hour: datetime) -> dict[str, int]:
    """Replace the hour in DuckDB with the transformed granules (failed ones are recorded, their rows not loaded)."""
    csvs: dict[str, list[Path]] = {table: [] for table in TABLE_OF_KIND.values()}
    for record in records:
        if record.status == "loaded":
            for kind, table in TABLE_OF_KIND.items():
                csvs[table].append(Path(record.csv[kind]))
    frame = files_frame(records, bucket=bucket, product=product, hour=hour)
    return database.replace_hour(con, bucket=bucket, hour=hour, files=frame, csvs=csvs)
