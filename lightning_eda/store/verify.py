"""Find damaged hours in the store: files truncated, overwritten, added or gone since their hour was committed.

Each committed hour carries a manifest (:func:`lightning_eda.store.parquet_store.write_manifest`): per Parquet file
its table, rows, size and CRC-32. Verifying an hour opens each file's footer (the Parquet metadata at its end, not
the data) and compares rows and size with the manifest; ``deep`` also compares checksums, which is what finds a
flipped byte inside a page (DuckDB would read it and return wrong numbers). Hours committed before manifests existed
are checked by their footers against ``glm_file``'s counts.

A damaged hour is healed by running it again (it is decoded from ``raw/`` or fetched again, and committed as a new
version): :func:`heal_command` says how. No Dagster here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lightning_eda.store.parquet_store import (
    MANIFEST_FILE,
    HourKey,
    ParquetStore,
    file_crc32,
    read_files,
    table_files,
)
from lightning_eda.store.schemas import COUNT_COLUMN, DATA_TABLES, GLM_TABLES


@dataclass(frozen=True)
class Damage:
    """One file of one hour that is not what its hour recorded."""

    key: HourKey
    file: str  # the file's name in the hour's folder
    problem: str

    def __str__(self) -> str:
        return f"{hour_label(self.key)} {self.file}: {self.problem}"


def hour_label(key: HourKey) -> str:
    return f"{key.bucket}/{key.product} {key.hour:%Y-%m-%d %H}:00"


def verify_hour(store: ParquetStore, key: HourKey, *, deep: bool = False) -> list[Damage]:
    """Every damaged file of the hour's current version (none when it is intact or not loaded)."""
    current = store.current(key)
    if current is None:
        return []
    try:
        manifest = current.manifest()
    except ValueError as exc:
        return [Damage(key, MANIFEST_FILE, str(exc))]
    if manifest is None:
        return _verify_without_manifest(key, current.path)
    damage = []
    on_disk = {path.name: path for table in GLM_TABLES for path in table_files(current.path, table)}
    for name, entry in sorted(manifest["files"].items()):
        path = on_disk.pop(name, None)
        if path is None:
            damage.append(Damage(key, name, "missing"))
            continue
        problem = _file_problem(path, entry, deep=deep)
        if problem:
            damage.append(Damage(key, name, problem))
    damage += [Damage(key, name, "not in the hour's manifest (added after its commit)") for name in sorted(on_disk)]
    return damage


def _file_problem(path: Path, entry: dict, *, deep: bool) -> str | None:
    """What is wrong with one file against its manifest entry, or None."""
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"{size} bytes, {entry['bytes']} when committed"
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        return f"footer unreadable ({exc})"
    if rows != entry["rows"]:
        return f"{rows} rows, {entry['rows']} when committed"
    if deep and file_crc32(path) != entry["crc32"]:
        return "checksum differs from the one recorded at commit (the bytes changed)"
    return None


def _verify_without_manifest(key: HourKey, folder: Path) -> list[Damage]:
    """An hour committed before manifests: each footer opens, and the data tables' rows equal glm_file's counts."""
    damage, rows = [], {}
    for table in GLM_TABLES:
        rows[table] = 0
        for path in table_files(folder, table):
            try:
                rows[table] += pq.ParquetFile(path).metadata.num_rows
            except (pa.ArrowException, OSError) as exc:
                damage.append(Damage(key, path.name, f"footer unreadable ({exc})"))
    if damage:
        return damage
    files = read_files(table_files(folder, "glm_file"), "glm_file")
    loaded = files.filter(pc.equal(files.column("status"), "loaded"))
    for table in DATA_TABLES:
        expected = int(pc.sum(loaded.column(COUNT_COLUMN[table])).as_py() or 0)
        if rows[table] != expected:
            damage.append(Damage(key, f"{table}*.parquet", f"{rows[table]} rows, glm_file counts {expected}"))
    return damage


def verify_store(
    store: ParquetStore, bucket: str, product: str, *, hours: Iterable[datetime] | None = None, deep: bool = False
) -> Iterator[tuple[HourKey, list[Damage]]]:
    """Each committed hour of (bucket, product) (or of ``hours`` among them) with its damage, in order."""
    committed = store.hours(bucket, product)
    if hours is not None:
        wanted = set(hours)
        committed = [hour for hour in committed if hour in wanted]
    for hour in committed:
        key = HourKey(bucket, product, hour)
        yield key, verify_hour(store, key, deep=deep)


def heal_command(hours: list[datetime], *, deep: bool = False) -> str:
    """The command that runs damaged hours again: each is re-decoded from raw/ (or fetched again) and committed."""
    first, last = min(hours), max(hours)
    return (
        f"lightning-eda backfill --start {first:%Y-%m-%dT%H} --end {last:%Y-%m-%dT%H} --no-cluster"
        f"{' --deep' if deep else ''}"
    )


_STORE_PATH = re.compile(r"bucket=([^/'\"\s]+)/product=([^/'\"\s]+)/hour=(\d{4}-\d{2}-\d{2}T\d{2})/([^/'\"\s:]+)")


def damaged_hour_note(error: str) -> str | None:
    """One line naming the hour and file behind a read error that quotes a path in the store, and how to heal it;
    None when the error names no file of an hour (it is then not this kind of damage)."""
    match = _STORE_PATH.search(error)
    if match is None:
        return None
    bucket, product, hour_text, name = match.groups()
    hour = datetime.strptime(hour_text, "%Y-%m-%dT%H")
    key = HourKey(bucket, product, hour)
    return (
        f"the store's hour {hour_label(key)} is damaged ({name} cannot be read); "
        f"heal it with: {heal_command([hour])} (S3_BUCKET={bucket}), or see `lightning-eda verify`"
    )
