"""The store of record: typed Parquet (zstd), one folder per hour partition, swapped in whole.

Layout under the data folder (``$LIGHTNING_EDA_DATA_DIR``)::

    store/glm/bucket=<bucket>/product=<product>/hour=YYYY-MM-DDTHH/
        glm_file.parquet  glm_flash.parquet  glm_group.parquet  glm_event.parquet
    store/analysis/<table>.parquet        the clustering tables, one file each
    store/.staging/                        hours being written, and replaced ones until they are deleted

Why this shape:

- **Readers never wait.** Nothing here takes a lock. DuckDB (``glm.duckdb``'s views, or any ``read_parquet``) reads
  the files while they are replaced, because nothing is modified in place: an hour's next version is written
  complete under ``.staging/``, then exchanged with the hour's folder in one ``renameat2(RENAME_EXCHANGE)``, so the
  folder's path names the old four files or the new four at every instant, never none and never both. (Where the
  kernel or file system lacks the exchange, two renames are used and the hour is absent for that moment.)
- **An hour is old or new, never mixed**, and a process killed at any point leaves either. The replaced version is
  kept under ``.staging/`` for :data:`SUPERSEDED_GRACE_SECONDS`, so a query that opened its files can finish.
- **Partitions are independent.** Writers of different hours touch different folders; two writers of one hour each
  swap in a whole version and the later one wins. No pool, no lock, no single writer: any number of processes or
  machines sharing the folder can load hours at once.

``bucket``, ``product`` and ``hour`` of ``glm_file`` are the folder's partition keys, not columns of its file. The
tables' columns and types are :mod:`lightning_eda.store.schemas`'. No Dagster here.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import sys
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lightning_eda.files import atomic_write
from lightning_eda.store.schemas import ANALYSIS_SCHEMAS, GLM_SCHEMAS, GLM_TABLES, conform, empty_table

log = logging.getLogger(__name__)

STORE_DIR = "store"
FORMAT_VERSION = 1
"""Bumped when the layout or a schema changes incompatibly; ``glm.duckdb`` records the one its views were made for."""

SUPERSEDED_GRACE_SECONDS = 600.0
"""How long a replaced version of an hour stays on disk, so that queries already reading it can finish."""

STALE_STAGING_SECONDS = 6 * 3600.0
"""A staging folder this old was left by a killed writer (a live one finishes an hour in seconds to minutes)."""

_HOUR_FORMAT = "%Y-%m-%dT%H"

_WRITE_OPTIONS = {"compression": "zstd", "compression_level": 3}
_SENTINEL = {"bucket": "_", "product": "_", "hour": "_"}  # an always-present empty partition: globs never match nothing


@dataclass(frozen=True)
class HourKey:
    """One hour partition of one product of one bucket."""

    bucket: str
    product: str
    hour: datetime

    @property
    def parts(self) -> tuple[str, str, str]:
        return f"bucket={self.bucket}", f"product={self.product}", f"hour={self.hour:{_HOUR_FORMAT}}"


@dataclass(frozen=True)
class HourVersion:
    """The hour's current folder and the id its writer gave it (the staging time in ns)."""

    key: HourKey
    version: int
    path: Path

    def files(self, table: str) -> list[Path]:
        return table_files(self.path, table)

    def manifest(self) -> dict | None:
        """What the version's writer recorded it must contain (see :func:`write_manifest`); None for versions
        committed before manifests were written. Raises ``ValueError`` when the manifest itself is damaged."""
        try:
            text = (self.path / MANIFEST_FILE).read_text()
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(text)
            if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
                raise ValueError("no file list")
        except ValueError as exc:
            raise ValueError(f"{MANIFEST_FILE} cannot be read ({exc})") from None
        return manifest


def table_files(folder: Path, table: str) -> list[Path]:
    """A table's files in a version folder: ``<table>.parquet`` and the decoder processes'
    ``<table>-<part>.parquet``."""
    return sorted(folder.glob(f"{table}.parquet")) + sorted(folder.glob(f"{table}-*.parquet"))


def read_files(files: list[Path], table: str) -> pa.Table:
    """A table's files read as one table; a file that cannot be read raises :class:`DamagedFile` naming it."""
    schema = GLM_SCHEMAS[table]
    parts = []
    for path in files:
        try:
            parts.append(pq.read_table(path, schema=schema))
        except (pa.ArrowException, OSError) as exc:
            raise DamagedFile(path, str(exc)) from exc
    return pa.concat_tables(parts) if parts else schema.empty_table()


class DamagedFile(OSError):
    """A file of the store cannot be read (truncated, overwritten, gone); the message names its path."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path


MANIFEST_FILE = "manifest.json"
"""Beside an hour's Parquet files: each file's table, rows, size and CRC-32, as written (not a ``.parquet``: no glob
matches it)."""


def file_crc32(path: Path, chunk: int = 1 << 20) -> int:
    """CRC-32 of a file's bytes, read in chunks."""
    crc = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def write_manifest(folder: Path) -> dict:
    """Record what a staged version holds: per Parquet file its table, rows (from its footer), bytes and CRC-32,
    and rows per table; :mod:`lightning_eda.store.verify` checks committed hours against it."""
    files, tables = {}, {table: 0 for table in GLM_TABLES}
    for table in GLM_TABLES:
        for path in table_files(folder, table):
            rows = pq.ParquetFile(path).metadata.num_rows
            files[path.name] = {"table": table, "rows": rows, "bytes": path.stat().st_size, "crc32": file_crc32(path)}
            tables[table] += rows
    manifest = {"format": FORMAT_VERSION, "tables": tables, "files": files}
    text = json.dumps(manifest, indent=1, sort_keys=True)
    atomic_write(folder / MANIFEST_FILE, lambda handle: handle.write(text.encode()))
    return manifest


def write_part(folder: Path, table: str, parts: list[pa.Table], name: str) -> Path | None:
    """Write (and fsync) one file of ``table`` into a version folder being staged; None when there are no rows."""
    parts = [part for part in parts if part.num_rows]
    if not parts:
        return None
    path = folder / (f"{table}-{name}.parquet" if name else f"{table}.parquet")
    data = pa.concat_tables([conform(part, GLM_SCHEMAS[table]) for part in parts])
    # atomically: a process killed mid-write must not leave a half file under a name the hour would take
    return atomic_write(path, lambda handle: pq.write_table(data, handle, **_WRITE_OPTIONS), suffix=".tmp")


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write one Parquet file atomically (readers see the old file or the new one)."""
    atomic_write(path, lambda handle: pq.write_table(table, handle, **_WRITE_OPTIONS), suffix=".parquet.tmp")


class ParquetStore:
    """The Parquet store under ``<data_dir>/store``."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / STORE_DIR
        self.glm_root = self.root / "glm"
        self.analysis_root = self.root / "analysis"
        self.staging_root = self.root / ".staging"

    # --- layout ---------------------------------------------------------------------------------------------------

    def hour_dir(self, key: HourKey) -> Path:
        return self.glm_root.joinpath(*key.parts)

    def glob(self, table: str) -> str:
        """The pattern matching ``table``'s files in every hour (for DuckDB's ``read_parquet`` with hive partitioning).

        No table's name begins another's, so ``<table>*.parquet`` finds exactly its own files.
        """
        return str(self.glm_root.resolve() / "bucket=*" / "product=*" / "hour=*" / f"{table}*.parquet")

    @property
    def _sentinel_dir(self) -> Path:
        return self.glm_root.joinpath(*(f"{k}={v}" for k, v in _SENTINEL.items()))

    def sentinel_file(self, table: str) -> str:
        """``table``'s file in the empty sentinel hour, by absolute path (a file list holding it is never empty)."""
        return str((self._sentinel_dir / f"{table}.parquet").resolve())

    def hour_files(self, table: str, key: HourKey) -> list[str]:
        """``table``'s files in one hour, after the empty sentinel file (so the list is never empty)."""
        current = self.current(key)
        files = current.files(table) if current is not None else []
        return [self.sentinel_file(table), *(str(path.resolve()) for path in files)]

    def analysis_file(self, table: str) -> Path:
        if table not in ANALYSIS_SCHEMAS:
            raise ValueError(f"not an analysis table: {table!r}")
        return self.analysis_root / f"{table}.parquet"

    def ensure(self) -> None:
        """Create the folders and the empty files every glob and view needs before the first hour is loaded."""
        sentinel = self._sentinel_dir
        for table in GLM_TABLES:
            if not (sentinel / f"{table}.parquet").exists():
                write_parquet(empty_table(table), sentinel / f"{table}.parquet")
        for table in ANALYSIS_SCHEMAS:
            if not self.analysis_file(table).exists():
                write_parquet(empty_table(table), self.analysis_file(table))

    # --- reading --------------------------------------------------------------------------------------------------

    def current(self, key: HourKey) -> HourVersion | None:
        """The hour's folder, or None before it is first loaded."""
        folder = self.hour_dir(key)
        try:
            version = int((folder / _VERSION_FILE).read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return HourVersion(key, version, folder)

    def read(self, key: HourKey, table: str) -> pa.Table:
        """One table of the hour's current version (empty, with the schema, before the hour is loaded)."""
        current = self.current(key)
        return read_files(current.files(table) if current else [], table)

    def read_all(self, key: HourKey) -> dict[str, pa.Table]:
        """The four tables of the hour's current version, read from one version folder (consistent with each other)."""
        current = self.current(key)
        return {table: read_files(current.files(table) if current else [], table) for table in GLM_TABLES}

    def hours(self, bucket: str, product: str) -> list[datetime]:
        """Hours of (bucket, product) with a committed version, in order."""
        folder = self.glm_root / f"bucket={bucket}" / f"product={product}"
        if not folder.is_dir():
            return []
        hours = []
        for child in folder.iterdir():
            if child.name.startswith("hour="):
                try:
                    hour = datetime.strptime(child.name[5:], _HOUR_FORMAT)
                except ValueError:
                    continue
                if self.current(HourKey(bucket, product, hour)) is not None:
                    hours.append(hour)
        return sorted(hours)

    # --- writing --------------------------------------------------------------------------------------------------

    def new_staging(self) -> Path:
        """An empty folder under ``.staging/`` for the next version of an hour (nothing reads it)."""
        folder = self.staging_root / f"{time.time_ns()}-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        return folder

    def finish_staging(self, folder: Path, tables: dict[str, pa.Table]) -> Path:
        """Add ``tables`` (``glm_file`` at least) to a staging folder and mark it complete; :meth:`commit` swaps it in.

        Every table gets a file even when empty, so an hour's folder always holds all four; the manifest records
        them all.
        """
        for table in GLM_TABLES:
            data = tables.get(table)
            if (data is not None and data.num_rows) or not table_files(folder, table):
                path = folder / f"{table}.parquet"
                pq.write_table(
                    conform(data if data is not None else empty_table(table), GLM_SCHEMAS[table]),
                    path,
                    **_WRITE_OPTIONS,
                )
                _fsync_file(path)
        write_manifest(folder)
        (folder / _VERSION_FILE).write_text(folder.name.split("-", 1)[0])
        _fsync_file(folder / _VERSION_FILE)
        return folder

    def stage(self, tables: dict[str, pa.Table]) -> Path:
        """Write a complete version (all four tables) under ``.staging/``; :meth:`commit` makes it the hour's."""
        folder = self.new_staging()
        try:
            return self.finish_staging(folder, tables)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def commit(self, key: HourKey, staged: Path) -> HourVersion:
        """Swap a staged version in as the hour's folder: from this instant on it is the hour.

        The replaced version ends up at ``staged``'s path, renamed to mark it superseded; :meth:`sweep` deletes it
        after the grace period.
        """
        folder = self.hour_dir(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        while True:
            if folder.exists():
                if exchange(staged, folder):
                    _fsync_dir(folder.parent)
                    os.rename(staged, self.staging_root / f"superseded-{time.time_ns()}-{uuid.uuid4().hex}")
                    break
                # no atomic exchange here: move the old version aside, then the new one in (absent for a moment)
                try:
                    os.rename(folder, self.staging_root / f"superseded-{time.time_ns()}-{uuid.uuid4().hex}")
                except FileNotFoundError:
                    continue
            try:
                os.rename(staged, folder)
                _fsync_dir(folder.parent)
                break
            except OSError as exc:  # another writer put the hour in first: exchange with theirs
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        return self.current(key)

    def sweep(self, grace: float = SUPERSEDED_GRACE_SECONDS, stale: float = STALE_STAGING_SECONDS) -> int:
        """Delete versions superseded more than ``grace`` seconds ago, and staging left by killed writers."""
        if not self.staging_root.is_dir():
            return 0
        removed = 0
        now = time.time_ns()
        for child in self.staging_root.iterdir():
            superseded = child.name.startswith("superseded-")
            stamp = child.name.removeprefix("superseded-").split("-", 1)[0]  # ns when superseded, or when staged
            if not stamp.isdigit():
                continue
            if now - int(stamp) >= (grace if superseded else stale) * 1e9:
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        return removed

    # --- the clustering tables ------------------------------------------------------------------------------------

    def write_analysis(self, table: str, data: pa.Table | pd.DataFrame) -> None:
        write_parquet(conform(data, ANALYSIS_SCHEMAS[table]), self.analysis_file(table))


_VERSION_FILE = ".version"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_renameat2 = getattr(_libc, "renameat2", None)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not available."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a crash after commit must not bring the old version back)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
