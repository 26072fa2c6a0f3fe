"""A day of GLM granules on the local S3 server, one per 20 s slot: what the soak and the scale test load.

Most granules are written with ``lightning_eda.testing.lcfa_factory`` at their slot's start; every ``real_every``-th
slot gets the bytes of one of the real granules (their times stay their own; only the name is the slot's); every 9th
slot is an empty granule. The facts returned (row counts, SHA-256 of the bytes) are what
:func:`_store_check.verify` compares the store against.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from lightning_eda.goes.granule import read_granule
from lightning_eda.goes.layout import hour_prefix, parse_granule_name
from lightning_eda.testing import lcfa_factory
from lightning_eda.testing.s3_server import LocalS3
from lightning_eda.testing.synthetic_hour import SLOT

PRODUCT = "GLM-L2-LCFA"


def _write_synthetic(job: tuple[str, datetime, bool]) -> bytes:
    """One synthetic granule's bytes (run in a worker process: netCDF/HDF5 writes do not overlap in threads)."""
    path, start, empty = job
    if empty:
        lcfa_factory.write_empty_lcfa(path, start=start)
    else:
        lcfa_factory.write_lcfa(path, start=start)
    body = Path(path).read_bytes()
    Path(path).unlink()
    return body


def make_day(
    s3: LocalS3,
    bucket: str,
    first_hour: datetime,
    hours: int,
    staging: Path,
    real_dir: Path | None,
    real_every: int,
    log: Callable[[str], None],
) -> dict[str, dict]:
    """Write and upload one granule per 20 s slot; returns {name: {"counts", "sha", "real"}}."""
    staging.mkdir(parents=True, exist_ok=True)
    reals = sorted(real_dir.glob("OR_GLM-L2-LCFA_*.nc")) if real_dir and real_dir.is_dir() and real_every else []
    real_counts = {}
    for path in reals:
        meta = read_granule(path).meta
        real_counts[path] = (meta["n_flashes"], meta["n_groups"], meta["n_events"])
    plan = []  # (name, real source or None, synthetic job or None, counts)
    for i in range(hours * 180):
        start = first_hour + i * SLOT
        if reals and i % real_every == real_every // 2:
            source = reals[(i // real_every) % len(reals)]
            name = lcfa_factory.lcfa_name(parse_granule_name(source.name).platform, start)
            plan.append((name, source, None, real_counts[source]))
        else:
            name = lcfa_factory.lcfa_name("G16", start)
            empty = i % 9 == 0
            plan.append((name, None, (str(staging / name), start, empty), (0, 0, 0) if empty else (2, 3, 5)))
    jobs = [job for _, _, job, _ in plan if job is not None]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        written = iter(list(pool.map(_write_synthetic, jobs, chunksize=32)))
    bodies = {name: (source.read_bytes() if source else next(written)) for name, source, _, _ in plan}
    log(f"  written {len(plan)} granules")
    expected = {
        name: {"counts": counts, "sha": hashlib.sha256(bodies[name]).hexdigest(), "real": source is not None}
        for name, source, _, counts in plan
    }
    s3.create_bucket(bucket)
    admin = s3.admin  # one client for every upload (LocalS3.put makes a new one each time)

    def upload(name: str) -> None:
        key = hour_prefix(PRODUCT, parse_granule_name(name).start) + name
        admin.put_object(Bucket=bucket, Key=key, Body=bodies[name], ACL="public-read")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(upload, bodies))
    return expected
