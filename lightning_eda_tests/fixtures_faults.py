"""Fixtures of the reliability tests: the fault-injecting proxy, hours of bad, flaky and crash-test granules."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from reliability_helpers import HOUR_2019, SAMPLE_COUNTS, crash_states, random_tables, synthetic

from lightning_eda.testing import lcfa_factory
from lightning_eda.testing.faulty_s3 import FaultyS3
from lightning_eda.testing.real_minute import FIRST_THREE, HOUR_2018


@pytest.fixture
def proxy(s3, monkeypatch):
    """The fault-injecting proxy in front of the session's S3 server; the pipeline reaches S3 only through it."""
    with FaultyS3(s3.url) as faulty:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.url)
        yield faulty


@pytest.fixture(scope="module")
def bad_hour(s3, real_granules, tmp_path_factory):
    """The real busy minute beside every kind of bad granule, all under hour 2018-07-02 04 of their own bucket."""
    bucket = "rel-bad-granules"
    folder = tmp_path_factory.mktemp("bad-granules")
    real = {p.name: p for p in real_granules}
    for name in FIRST_THREE:
        s3.put_granule(bucket, real[name])
    busy = real_granules[0].read_bytes()
    slot = iter(HOUR_2018 + timedelta(seconds=20 * i) for i in range(60))
    bad: dict[str, str] = {}  # name -> what is wrong with it

    def put(body: bytes, why: str, platform: str = "G16") -> str:
        name = lcfa_factory.lcfa_name(platform, next(slot))
        s3.put_granule(bucket, body, name=name)
        bad[name] = why
        return name

    put(busy[:1024], "truncated to 1 KiB")
    put(busy[: len(busy) // 2], "truncated to half")
    put(busy[:-1], "one byte short")
    put(b"<html><body><h1>503 Service Unavailable</h1></body></html>\n", "an HTML error page")
    put(b"", "zero bytes")
    _, no_energy = synthetic(folder / "a", HOUR_2018, omit={"event_energy"})
    put(no_energy, "no event_energy variable")
    _, no_times = synthetic(folder / "b", HOUR_2018, omit={"flash_time_offset_of_first_event"})
    put(no_times, "no flash time variable")

    good: dict[str, tuple[int, int, int]] = dict(FIRST_THREE)
    start = next(slot)
    name, body = synthetic(folder, start, global_attributes=False, **lcfa_factory.empty_tables())
    s3.put_granule(bucket, body, name=name)
    good[name] = (0, 0, 0)
    empty_real = next(p for p in real_granules if p.name.startswith("OR_GLM-L2-LCFA_G17"))
    name = lcfa_factory.lcfa_name("G17", next(slot))
    s3.put_granule(bucket, empty_real.read_bytes(), name=name)
    good[name] = (0, 0, 0)
    name, body = synthetic(folder, next(slot))
    s3.put_granule(bucket, body, name=name)
    good[name] = SAMPLE_COUNTS
    return {"bucket": bucket, "bad": bad, "good": good, "real": real}


@pytest.fixture(scope="module")
def flaky_hour(s3, tmp_path_factory):
    """Ten granules of hour 2019-06-01 12, two of them large enough to be cut mid-body in several reads."""
    bucket = "rel-flaky"
    folder = tmp_path_factory.mktemp("flaky")
    rng = np.random.default_rng(7)
    granules: dict[str, bytes] = {}
    counts: dict[str, tuple[int, int, int]] = {}
    for i in range(10):
        start = HOUR_2019 + timedelta(seconds=20 * i)
        if i < 2:
            tables = random_tables(rng, 600)
            name, body = synthetic(folder, start, **tables)
            counts[name] = (600, 1800, 7200)
        else:
            name, body = synthetic(folder, start)
            counts[name] = SAMPLE_COUNTS
        s3.put_granule(bucket, body, name=name)
        granules[name] = body
    return {"bucket": bucket, "granules": granules, "counts": counts}


@pytest.fixture
def no_jitter(monkeypatch):
    """Backoff at the low end of its jitter, so tests that exhaust every retry wait ~2 s instead of ~4."""
    import lightning_eda.ingest.archive

    monkeypatch.setattr(lightning_eda.ingest.archive.random, "random", lambda: 0.0)


@pytest.fixture(scope="module")
def crash_granules(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    return {"folder": folder, **crash_states(folder)}
