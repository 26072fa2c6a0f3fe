"""The hour-level steps behind the ``ingestor`` assets: which granules an hour still needs, stage, commit.

Decoding the granules (and the pool of processes doing it) is :mod:`lightning_eda.ingest.decoding`'s.

An hour is **complete** when every granule the archive listed for it is in the store as ``loaded`` or ``failed``
(a corrupt file: permanent). A granule that could not be fetched (retries exhausted, a full disk, a killed worker)
is recorded as ``missing``: transient, so the next run of the hour fetches and decodes it, and only it; the
granules already settled are carried over from the hour's current version without being downloaded or decoded
again. Granules the archive no longer lists are dropped from the hour.

Folders under the data directory (``$LIGHTNING_EDA_DATA_DIR``):
- ``raw/<bucket>/<product>/YYYY/DDD/HH/*.nc``: granules as published (same layout as the bucket),
- ``store/``: the Parquet store (see :mod:`lightning_eda.store.parquet_store`),
- ``work/<bucket>/<product>/YYYY/DDD/HH/``: what extract and transform hand to the next step (removed by load),
- ``csv/<bucket>/<product>/YYYY/DDD/HH/``: per-granule CSVs, only when asked for (``LIGHTNING_EDA_CSV=1``).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lightning_eda.files import atomic_write
from lightning_eda.goes.layout import hour_prefix, is_granule_key
from lightning_eda.ingest.archive import ExtractReport, RemoteGranule, extract_hour
from lightning_eda.ingest.decoding import GranuleRecord, transform_granules
from lightning_eda.store.parquet_store import HourKey, ParquetStore, table_files, write_part
from lightning_eda.store.schemas import COUNT_COLUMN, DATA_TABLES, GLM_SCHEMAS, conform
from lightning_eda.store.verify import verify_hour
from lightning_eda.utc import utc_now

log = logging.getLogger(__name__)

EXTRACT_REPORT_NAME = "extract.json"
TRANSFORM_REPORT_NAME = "transform.json"
FAILURE_NOTE_NAME = "failed.json"
SETTLED = ("loaded", "failed")  # statuses that end a granule's story; "missing" is retried


@dataclass(frozen=True)
class HourPaths:
    """Where one (bucket, product, hour) lives on disk."""

    data_dir: Path
    bucket: str
    product: str
    hour: datetime

    @property
    def key(self) -> HourKey:
        return HourKey(self.bucket, self.product, self.hour)

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
    def work_dir(self) -> Path:
        return self.data_dir / "work" / self.bucket / hour_prefix(self.product, self.hour)

    @property
    def extract_report(self) -> Path:
        return self.work_dir / EXTRACT_REPORT_NAME

    @property
    def transform_report(self) -> Path:
        return self.work_dir / TRANSFORM_REPORT_NAME

    @property
    def failure_note(self) -> Path:
        return self.work_dir / FAILURE_NOTE_NAME


# --- an hour that failed in a batch of hours ----------------------------------------------------------------------


def write_failure_note(paths: HourPaths, batch: str, step: str, reason: str) -> None:
    """Record that the hour failed at ``step`` in the batch ``batch`` (any id shared by the batch's steps), so the
    batch's later steps pass over it while they carry the other hours on."""
    text = json.dumps({"batch": batch, "step": step, "reason": reason})
    atomic_write(paths.failure_note, lambda handle: handle.write(text.encode()))


def failure_in_batch(paths: HourPaths, batch: str) -> str | None:
    """Why the hour failed earlier in the batch ``batch`` (``"extract: ..."``), or None; a note left by another
    batch is ignored."""
    if not paths.failure_note.is_file():
        return None
    note = json.loads(paths.failure_note.read_text())
    return f"{note['step']}: {note['reason']}" if note.get("batch") == batch else None


def clear_failure_note(paths: HourPaths) -> None:
    """Forget an earlier batch's failure of the hour (its first step starts it afresh)."""
    paths.failure_note.unlink(missing_ok=True)


# --- what extract hands to transform -----------------------------------------------------------------------------


def write_extract_report(paths: HourPaths, report: ExtractReport, damaged: list[str] | None = None) -> None:
    """Record what the hour's extract listed and failed to fetch, and the damage it found in the hour's current
    version (the transform then decodes every granule again), for the transform that follows."""
    text = json.dumps({"listed": sorted(report.listed_names), "failed": report.failed, "damaged": damaged or []})
    atomic_write(paths.extract_report, lambda handle: handle.write(text.encode()))


def extract_needed(
    source, paths: HourPaths, store: ParquetStore, *, max_workers: int, ended_by: datetime | None = None
) -> tuple[ExtractReport, list]:
    """List the hour and fetch the granules it still needs (of those ended by ``ended_by``, when given); returns the
    report and the damage found in the hour's current version, which is then replaced whole (every granule fetched or
    taken from ``raw/`` and decoded again). The report is recorded for the transform when the listing holds a
    granule."""
    damage = verify_hour(store, paths.key, deep=True)
    settled = {} if damage else settled_granules(store, paths.key)
    report = extract_hour(source, paths.hour, paths.raw_root, max_workers=max_workers, skip=settled, ended_by=ended_by)
    if report.listed:
        write_extract_report(paths, report, damaged=[str(d) for d in damage])
    return report, damage


def read_extract_report(paths: HourPaths) -> dict:
    """What the hour's last extract listed and failed to fetch (empty before any extract ran)."""
    return json.loads(paths.extract_report.read_text()) if paths.extract_report.is_file() else {}


def settled_granules(store: ParquetStore, key: HourKey, files: pa.Table | None = None) -> dict[str, int]:
    """Granules of the hour's current version that need no more work (loaded, or failed for good), with their size.

    A granule the archive republishes with another size is not settled any more: it is fetched and decoded again.
    ``files``: the hour's ``glm_file`` rows when the caller has read them already.
    """
    files = (files if files is not None else store.read(key, "glm_file")).to_pydict()
    return {
        name: size
        for name, status, size in zip(files["source_file"], files["status"], files["size_bytes"], strict=True)
        if status in SETTLED
    }


def archive_gap(store: ParquetStore, key: HourKey, listing: list[RemoteGranule]) -> list[str]:
    """``name size`` of each granule the archive lists for the hour that the store does not hold settled at that size,
    sorted; empty when the store holds everything listed (what the automation's observation of the archive reports).
    """
    settled = settled_granules(store, key)
    return sorted(f"{g.name} {g.size}" for g in listing if settled.get(g.name) != g.size)


def listing_changes(files: pa.Table, listing: list[RemoteGranule]) -> list[str]:
    """How the archive's listing of an hour differs from the granules its current version was loaded from.

    New granules, granules republished with another size and granules no longer listed each make a run of the
    hour worth its fetches and decodes; an empty answer means the hour is as the archive holds it.
    """
    held = dict(zip(files.column("source_file").to_pylist(), files.column("size_bytes").to_pylist(), strict=True))
    listed = {granule.name: granule.size for granule in listing}
    changes = []
    new = sorted(set(listed) - set(held))
    changed = sorted(name for name in set(listed) & set(held) if listed[name] != held[name])
    withdrawn = sorted(set(held) - set(listed))
    for what, names in (("new", new), ("republished with another size", changed), ("no longer listed", withdrawn)):
        if names:
            changes.append(
                f"{len(names)} granule{'s' if len(names) != 1 else ''} {what} ({names[0]}{', …' * (len(names) > 1)})"
            )
    return changes


def resume_reasons(
    store: ParquetStore, key: HourKey, listing: list[RemoteGranule] | None, *, deep: bool = False
) -> list[str]:
    """Why a resumed backfill must run an hour again; empty when the hour is complete, intact (footers and sizes;
    checksums too when ``deep``) and, given ``listing`` (None: the archive is taken as frozen), unchanged in the
    archive."""
    if store.current(key) is None:
        return ["not loaded yet"]
    damage = verify_hour(store, key, deep=deep)
    if damage:
        return [f"damaged: {d.file}: {d.problem}" for d in damage]
    files = store.read(key, "glm_file")
    status = files.column("status").to_pylist()
    if "missing" in status:
        return [f"{status.count('missing')} granules missing"]
    if "loaded" not in status:
        return ["no granule loaded"]
    return [] if listing is None else listing_changes(files, listing)


def raw_granules(paths: HourPaths) -> list[Path]:
    """Files in the hour's raw folder that are granules of this hour and product (nothing else is ever decoded)."""
    prefix = hour_prefix(paths.product, paths.hour)
    return [p for p in sorted(paths.raw_dir.glob("*.nc")) if is_granule_key(prefix + p.name, paths.product)]


# --- transform: decode what is new and stage the hour's next version --------------------------------------------


@dataclass
class HourPlan:
    """What one transform does to an hour."""

    decode: list[Path]  # listed granules to decode now
    keep: list[str]  # settled granules carried over from the current version
    missing: dict[str, str]  # listed granules with no file yet, and why
    current: set[str]  # granules of the hour's current version
    damaged: list[str] = field(default_factory=list)  # what is wrong with the current version: it is replaced whole

    @property
    def unchanged(self) -> bool:
        """Nothing to decode, nothing missing, nothing withdrawn, nothing damaged: the current version is right."""
        return not self.decode and not self.missing and set(self.keep) == self.current and not self.damaged


def plan_hour(paths: HourPaths, store: ParquetStore, extracted: dict, *, redecode: bool = False) -> HourPlan:
    """Decide which of the hour's granules to decode, keep and record as missing.

    Without an extract report (``transform`` run on its own), the granules in the raw folder are the listing, and
    the hour's current version is verified here. A damaged version is not read: every granule is decoded again.
    """
    raw = {p.name: p for p in raw_granules(paths)}
    listed = sorted(extracted["listed"]) if "listed" in extracted else sorted(raw)
    if "damaged" in extracted:
        damaged = extracted["damaged"]
    else:
        damaged = [str(d) for d in verify_hour(store, paths.key, deep=True)]
    current = store.read(paths.key, "glm_file") if not damaged else None
    settled = {} if redecode or damaged else settled_granules(store, paths.key, current)
    # a settled granule whose file on disk has another size was republished (and fetched again by extract)
    settled = {n: size for n, size in settled.items() if n not in raw or raw[n].stat().st_size == size}
    failed_downloads = extracted.get("failed", {})
    return HourPlan(
        decode=[raw[n] for n in listed if n not in settled and n in raw],
        keep=[n for n in listed if n in settled],
        missing={
            n: f"download failed: {failed_downloads[n]}" if n in failed_downloads else "not downloaded"
            for n in listed
            if n not in settled and n not in raw
        },
        current=set(current.column("source_file").to_pylist()) if current is not None else set(),
        damaged=damaged,
    )


def files_table(records: list[GranuleRecord]) -> pa.Table:
    """``glm_file`` rows (without the partition keys bucket, product and hour) for these records."""
    frame = pd.DataFrame(
        {
            "source_file": [r.source_file for r in records],
            "platform": pd.array([r.platform for r in records], dtype="object"),
            "orbital_slot": pd.array([r.orbital_slot for r in records], dtype="object"),
            # ISO8601 per element: an hour mixes whole-second times with fractional ones (e.g. ``06:34:00.5``)
            "time_start": pd.to_datetime([r.time_start for r in records], format="ISO8601"),
            "time_end": pd.to_datetime([r.time_end for r in records], format="ISO8601"),
            "n_flashes": [r.n_flashes for r in records],
            "n_groups": [r.n_groups for r in records],
            "n_events": [r.n_events for r in records],
            "size_bytes": [r.size_bytes for r in records],
            "status": [r.status for r in records],
            "error": pd.array([r.error for r in records], dtype="object"),
            "loaded_at": pd.Timestamp(utc_now()),
        }
    )
    return conform(frame, GLM_SCHEMAS["glm_file"])


@dataclass
class TransformResult:
    records: list[GranuleRecord]  # what this transform decoded or recorded as missing
    kept: int  # granules carried over unchanged
    staged: Path | None  # None when the hour is already as it should be
    healed: list[str] = field(default_factory=list)  # the damage of the version this one replaces

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)


def transform_hour(
    paths: HourPaths, store: ParquetStore, *, redecode: bool = False, write_csv: bool = False
) -> TransformResult:
    """Decode the granules the hour still needs and stage its next version; write the report ``load`` reads."""
    plan = plan_hour(paths, store, read_extract_report(paths), redecode=redecode)
    if plan.unchanged:
        result = TransformResult(records=[], kept=len(plan.keep), staged=None)
        _write_transform_report(paths, result)
        return result
    folder = store.new_staging()
    try:
        records = transform_granules(plan.decode, folder, paths.csv_dir if write_csv else None)
        records += [GranuleRecord(name, 0, "missing", error=error) for name, error in sorted(plan.missing.items())]
        files = [files_table(records)]
        if plan.keep:  # the settled granules' rows, carried over from the current version
            kept = pa.array(plan.keep, type=pa.string())
            for table, data in store.read_all(paths.key).items():
                rows = data.filter(pc.is_in(data.column("source_file").cast(pa.string()), value_set=kept))
                if table == "glm_file":
                    files.insert(0, rows)
                else:
                    write_part(folder, table, [rows], "kept")
        store.finish_staging(folder, {"glm_file": pa.concat_tables(files)})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    result = TransformResult(records=records, kept=len(plan.keep), staged=folder, healed=plan.damaged)
    _write_transform_report(paths, result)
    return result


def _write_transform_report(paths: HourPaths, result: TransformResult) -> None:
    payload = {"staged": str(result.staged) if result.staged else None, "records": [asdict(r) for r in result.records]}
    text = json.dumps(payload, indent=1)
    atomic_write(paths.transform_report, lambda handle: handle.write(text.encode()))


def read_transform_report(paths: HourPaths) -> dict:
    if not paths.transform_report.is_file():
        raise FileNotFoundError(f"no transform output at {paths.transform_report}: materialize `transform` first")
    report = json.loads(paths.transform_report.read_text())
    report["records"] = [GranuleRecord(**item) for item in report["records"]]
    return report


# --- load: commit the staged version --------------------------------------------------------------------------


def check_staged_counts(staged: Path) -> dict[str, int]:
    """Rows per table of a staged version; refuses one whose rows disagree with its granules' own counts."""
    import pyarrow.parquet as pq

    files = pq.read_table(staged / "glm_file.parquet")
    loaded = files.filter(pc.equal(files.column("status"), "loaded"))
    counts = {"glm_file": files.num_rows}
    for table in DATA_TABLES:
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in table_files(staged, table))
        expected = int(pc.sum(loaded.column(COUNT_COLUMN[table])).as_py() or 0)
        if rows != expected:
            raise ValueError(f"{table}: the staged hour holds {rows} rows, its granules {expected}; not committed")
        counts[table] = rows
    return counts


def load_hour(paths: HourPaths, store: ParquetStore, *, keep_raw: bool = True) -> dict[str, int]:
    """Swap the staged version in as the hour's (one exchange), then tidy: superseded versions, work files, raw
    granules.

    Returns rows per table of what was committed (all zero when transform found nothing to change).
    """
    report = read_transform_report(paths)
    counts = {"glm_file": 0, **{table: 0 for table in DATA_TABLES}}
    staged = Path(report["staged"]) if report["staged"] else None
    if staged is not None and staged.is_dir():
        counts = check_staged_counts(staged)
        store.commit(paths.key, staged)
    elif staged is not None:
        log.info("%s was committed by an earlier load of this hour", staged.name)
    store.sweep()  # versions superseded long enough ago, in any hour, and staging left by killed writers
    _remove_work_dir(paths)
    if not keep_raw:
        drop_raw_granules(paths, set(settled_granules(store, paths.key)))
    return counts


def _remove_work_dir(paths: HourPaths) -> None:
    """Remove the hour's hand-off files, and the folders above them that are left empty."""
    shutil.rmtree(paths.work_dir, ignore_errors=True)
    top = paths.data_dir / "work"
    folder = paths.work_dir.parent
    while folder != top and folder.is_relative_to(top):
        try:
            folder.rmdir()
        except OSError:  # not empty: another hour's work is in progress
            break
        folder = folder.parent
    try:
        top.rmdir()
    except OSError:
        pass


def drop_raw_granules(paths: HourPaths, names: set[str]) -> int:
    """Delete the raw files of granules the store has settled (the setting LIGHTNING_EDA_KEEP_RAW=0)."""
    removed = 0
    for path in raw_granules(paths):
        if path.name in names:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
