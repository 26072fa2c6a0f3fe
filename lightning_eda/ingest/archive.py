"""Where granules come from: NOAA's public S3 buckets (or any S3-compatible mirror), or a local folder.

Both archives list one hour's granules and copy a granule to a local path atomically: the bytes go to a temporary
name beside the destination, the size is checked against the listing, and only then is the file renamed into place.
A file at its final name is therefore always complete, and a later run can trust it without fetching it again.
"""

from __future__ import annotations

import glob
import logging
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from lightning_eda.files import atomic_write
from lightning_eda.goes.layout import hour_prefix, is_granule_key, local_path_for_key, parse_granule_name

log = logging.getLogger(__name__)

MIRROR_HINT = (
    "set AWS_ENDPOINT_URL_S3 to an S3-compatible mirror, or GOES_SOURCE_DIR to a local folder laid out like the bucket"
)


class ArchiveUnreachable(RuntimeError):
    """The archive cannot be reached at all; retrying the hour will not help until the network or config changes."""


class FetchError(RuntimeError):
    """One granule could not be fetched after every retry."""


@dataclass(frozen=True)
class RemoteGranule:
    key: str
    size: int

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class GranuleArchive(Protocol):
    description: str

    def list_hour(self, hour: datetime) -> list[RemoteGranule]: ...

    def fetch(self, granule: RemoteGranule, dest: Path) -> None: ...


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    max_attempts: int = 5,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    max_pool_connections: int = 16,
):
    """An anonymous S3 client. With ``endpoint_url=None`` boto3 honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL."""
    config = Config(
        signature_version=UNSIGNED,
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
    )
    try:
        session = boto3.session.Session()
    except ProfileNotFound as exc:
        # Reads are anonymous, so a profile can only carry settings; one that does not exist must not stop the run.
        log.warning("%s: ignoring AWS_PROFILE (S3 is read anonymously)", exc)
        no_profile = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        session = boto3.session.Session(botocore_session=no_profile)
    return session.client("s3", region_name="us-east-1", endpoint_url=endpoint_url, config=config)


STALE_PART_AGE = 15 * 60.0
"""Seconds after which a temporary ``*.part`` file is taken as left by a killed download (a live one writes to its
file at least every read timeout)."""


def _remove_stale_parts(dest: Path, older_than: float = STALE_PART_AGE) -> None:
    """Delete the temporary files that killed downloads of ``dest`` left beside it; fresh ones may still be live."""
    if not dest.parent.is_dir():
        return
    cutoff = time.time() - older_than
    for part in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                log.info("removed %s, left by an interrupted download", part.name)
        except FileNotFoundError:
            pass


def _atomic_write_from(dest: Path, expected_size: int, write: Callable[[object], None]) -> None:
    """Write into ``.<name>.*.part`` beside ``dest``; rename it into place only if the size matches the listing."""
    atomic_write(
        dest,
        write,
        expected_size=expected_size,
        size_error=lambda size: FetchError(f"{dest.name}: got {size} bytes, the listing says {expected_size}"),
        suffix=".part",
    )


class S3Archive:
    """One product of one bucket, read anonymously."""

    def __init__(self, client, bucket: str, product: str):
        self.client = client
        self.bucket = bucket
        self.product = product
        self.description = f"s3://{bucket}/{product} at {_without_userinfo(client.meta.endpoint_url)}"

    def list_hour(self, hour: datetime) -> list[RemoteGranule]:
        prefix = hour_prefix(self.product, hour)
        granules: list[RemoteGranule] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    granules.append(RemoteGranule(item["Key"], int(item["Size"])))
        except (EndpointConnectionError, BotoConnectionError, NoCredentialsError) as exc:
            raise ArchiveUnreachable(f"could not reach {self.description} ({exc}); {MIRROR_HINT}") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "AccessDenied", "403", "404"):
                raise ArchiveUnreachable(f"cannot list s3://{self.bucket}/{prefix}: {code}; {MIRROR_HINT}") from None
            raise
        return _only_granules(granules, self.product)

    def fetch(self, granule: RemoteGranule, dest: Path) -> None:
        def write(handle):
            body = self.client.get_object(Bucket=self.bucket, Key=granule.key)["Body"]
            try:
                for chunk in body.iter_chunks(1 << 16):
                    handle.write(chunk)
            finally:
                body.close()

        _atomic_write_from(dest, granule.size, write)


def _without_userinfo(url: str) -> str:
    """An endpoint as it may be shown and logged: any user:password@ part is dropped."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class LocalArchive:
    """A folder laid out like the bucket (as goes2go downloads are): ``<root>[/<bucket>]/<product>/YYYY/DDD/HH/``."""

    def __init__(self, root: Path, bucket: str, product: str):
        self.root = root / bucket if (root / bucket / product).is_dir() else root
        self.product = product
        self.description = f"local folder {self.root}"

    def list_hour(self, hour: datetime) -> list[RemoteGranule]:
        prefix = hour_prefix(self.product, hour)
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        granules = [
            RemoteGranule(prefix + path.name, path.stat().st_size) for path in folder.iterdir() if path.is_file()
        ]
        return _only_granules(granules, self.product)

    def fetch(self, granule: RemoteGranule, dest: Path) -> None:
        source = self.root / granule.key
        with open(source, "rb") as src:
            _atomic_write_from(dest, granule.size, lambda handle: shutil.copyfileobj(src, handle))


def _only_granules(granules: list[RemoteGranule], product: str) -> list[RemoteGranule]:
    """Keep keys that are exactly granules of this product; anything else in a listing is ignored and logged."""
    kept = []
    for granule in granules:
        if is_granule_key(granule.key, product):
            kept.append(granule)
        else:
            log.warning("ignoring key that is not a %s granule: %r", product, granule.key)
    return sorted(kept, key=lambda g: g.key)


# Errors worth another try: throttling and server errors that outlived botocore's own retries, connections cut
# mid-body (which botocore does not retry) and size mismatches from truncated transfers.
_RETRYABLE = (BotoCoreError, ClientError, FetchError, OSError)


@dataclass
class ExtractReport:
    hour: datetime
    listed: int = 0
    listed_names: list[str] = field(default_factory=list)
    already_loaded: list[str] = field(default_factory=list)  # settled in the store: not fetched again
    downloaded: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    bytes_downloaded: int = 0


def fetch_with_retries(
    archive: GranuleArchive,
    granule: RemoteGranule,
    dest: Path,
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    for attempt in range(1, attempts + 1):
        try:
            archive.fetch(granule, dest)
            return
        except _RETRYABLE as exc:
            if attempt == attempts:
                raise FetchError(f"{granule.name}: {type(exc).__name__}: {exc} (after {attempts} attempts)") from exc
            delay = base_delay * 2 ** (attempt - 1) * (0.5 + random.random())
            log.info("retrying %s in %.1fs after %s", granule.name, delay, exc)
            sleep(delay)


def extract_hour(
    archive: GranuleArchive,
    hour: datetime,
    raw_dir: Path,
    *,
    max_workers: int = 8,
    attempts: int = 4,
    skip: dict[str, int] | None = None,
    ended_by: datetime | None = None,
) -> ExtractReport:
    """Mirror one hour of granules into ``raw_dir`` (same key layout), skipping complete files already there.

    Granules in ``skip`` (name → size: settled in the store) are listed but not fetched, unless the archive now
    lists them with another size (a republished granule). With ``ended_by``, granules not in ``skip`` that end after
    it are left out as if not published yet (replaying a past moment of the hour in progress; those already in the
    store stay in the listing, so the hour keeps them).
    """
    skip = skip or {}
    report = ExtractReport(hour=hour)
    granules = archive.list_hour(hour)
    if ended_by is not None:
        granules = [g for g in granules if skip.get(g.name) == g.size or parse_granule_name(g.name).end <= ended_by]
    report.listed = len(granules)
    report.listed_names = [g.name for g in granules]
    todo: list[tuple[RemoteGranule, Path]] = []
    for granule in granules:
        if skip.get(granule.name) == granule.size:
            report.already_loaded.append(granule.name)
            continue
        dest = local_path_for_key(raw_dir, granule.key)
        _remove_stale_parts(dest)
        if dest.is_file() and dest.stat().st_size == granule.size:
            report.already_present.append(granule.name)
            report.files.append(dest)
        else:
            todo.append((granule, dest))

    def run(item: tuple[RemoteGranule, Path]) -> tuple[RemoteGranule, Path, str | None]:
        granule, dest = item
        try:
            fetch_with_retries(archive, granule, dest, attempts=attempts)
            return granule, dest, None
        except FetchError as exc:
            return granule, dest, str(exc)

    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        for granule, dest, error in pool.map(run, todo):
            if error is None:
                report.downloaded.append(granule.name)
                report.bytes_downloaded += granule.size
                report.files.append(dest)
            else:
                report.failed[granule.name] = error
    report.files.sort()
    return report
