"""What re-listing costs a resumed backfill: the check ``lightning-eda backfill`` makes of each complete hour (one
LIST request, the hour's ``glm_file`` read and compared), over 24 and 720 hours of 180 granules each, against the
local S3 server (moto, over HTTP on 127.0.0.1).

Usage: ``python scripts/relist_cost.py [HOURS ...]`` (default 24 720). The buckets are seeded through moto's
in-process backend (putting 129,600 objects over HTTP would take longer than what is measured); the listing goes
through boto3 over HTTP exactly as a backfill's does.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime, timedelta

from lightning_eda.goes.layout import hour_prefix
from lightning_eda.ingest.archive import S3Archive, make_s3_client
from lightning_eda.ingest.decoding import GranuleRecord
from lightning_eda.ingest.hourly import files_table, resume_reasons
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.testing.lcfa_factory import lcfa_name
from lightning_eda.testing.s3_server import LocalS3

BUCKET = "noaa-goes16"
PRODUCT = "GLM-L2-LCFA"
GRANULES_PER_HOUR = 180
FIRST_HOUR = datetime(2020, 1, 1)
SIZE = 400_000  # the listing's size of each granule (the objects themselves are empty: only LIST is measured)


def granule_names(hour: datetime) -> list[str]:
    return [lcfa_name("G16", hour + timedelta(seconds=20 * i)) for i in range(GRANULES_PER_HOUR)]


def commit_hours(store: ParquetStore, hours: list[datetime]) -> None:
    """A committed store version of each hour recording its 180 granules (what a backfill left)."""
    for hour in hours:
        records = [
            GranuleRecord(
                name, SIZE, "loaded", time_start=f"{hour:%Y-%m-%dT%H}:00:00", time_end=f"{hour:%Y-%m-%dT%H}:00:20"
            )
            for name in granule_names(hour)
        ]
        store.commit(HourKey(BUCKET, PRODUCT, hour), store.stage({"glm_file": files_table(records)}))


def publish_day(server: LocalS3, bucket: str, hours: list[datetime]) -> None:
    """The day's keys in their own bucket, through moto's in-process backend (fast; only LIST is measured)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    server.create_bucket(bucket)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for hour in hours:
        for name in granule_names(hour):
            backend.put_object(bucket, hour_prefix(PRODUCT, hour) + name, b"")


class SizedArchive(S3Archive):
    """The archive as a backfill lists it, with each listed size read as the recorded one (the objects are empty)."""

    def list_hour(self, hour):
        return [type(g)(g.key, SIZE) for g in super().list_hour(hour)]


def measure(count: int) -> tuple[float, float]:
    """Seconds for ``count`` hours: the LIST requests alone, and the whole resume check (listing, verifying the
    hour's files, reading its glm_file, comparing).

    Each day's keys sit in a bucket of their own: moto scans a whole bucket for every LIST (S3 does not), which would
    otherwise make a month's listing cost grow with the month.
    """
    hours = [FIRST_HOUR + timedelta(hours=i) for i in range(count)]
    days = [hours[i : i + 24] for i in range(0, count, 24)]
    server = LocalS3().start()
    listing = whole = 0.0
    try:
        with tempfile.TemporaryDirectory() as folder:
            store = ParquetStore(folder)
            commit_hours(store, hours)
            client = make_s3_client(endpoint_url=server.url)
            for index, day in enumerate(days):
                bucket = f"relist-day-{index:03d}"
                publish_day(server, bucket, day)
                archive = SizedArchive(client, bucket, PRODUCT)
                for hour in day:
                    began = time.perf_counter()
                    listed = archive.list_hour(hour)
                    listed_at = time.perf_counter()
                    assert len(listed) == GRANULES_PER_HOUR
                    assert resume_reasons(store, HourKey(BUCKET, PRODUCT, hour), listed) == []
                    listing += listed_at - began
                    whole += time.perf_counter() - began
    finally:
        server.stop()
    return listing, whole


def main(argv: list[str]) -> int:
    for count in [int(a) for a in argv] or [24, 720]:
        listing, whole = measure(count)
        print(
            f"{count} hours × {GRANULES_PER_HOUR} granules: listing {listing:.2f} s ({listing / count * 1000:.0f} ms "
            f"per hour), the whole resume check {whole:.2f} s ({whole / count * 1000:.0f} ms per hour)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
