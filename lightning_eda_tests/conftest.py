"""Fixtures shared by the test modules: the real granules, the local S3 server, and (through ``pytest_plugins``) the
fixture modules beside this file, one per concern."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lightning_eda.goes.granule import read_granule
from lightning_eda.testing.s3_server import LocalS3

pytest_plugins = ["fixtures_faults", "fixtures_hours", "fixtures_store", "fixtures_ui"]

# Real granules live outside the project, at ../shared/data/glm relative to its root. CI provides that folder;
# a fresh clone does not, so tests that need it skip, and the rest of the suite uses files it writes itself.
GLM_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glm"


@pytest.fixture(scope="session")
def glm_dir() -> Path:
    """The folder of real GLM granules; skips the test when it is absent."""
    if not GLM_DIR.is_dir():
        pytest.skip(f"real GLM granules not available: {GLM_DIR} does not exist (only CI provides it)")
    return GLM_DIR


@pytest.fixture(scope="session")
def real_granules(glm_dir: Path) -> list[Path]:
    """The real granule files, sorted by name (so by platform, then start time)."""
    granules = sorted(glm_dir.glob("OR_GLM-L2-*.nc"))
    if not granules:
        pytest.skip(f"real GLM granules not available: no OR_GLM-L2-*.nc files in {glm_dir}")
    return granules


@pytest.fixture(scope="module")
def decoded(glm_dir):
    """Each real granule decoded once for the module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = read_granule(glm_dir / name)
        return cache[name]

    return get


# --- a local S3-compatible server ---


@pytest.fixture(scope="session")
def s3_server():
    """One moto server per session on 127.0.0.1, spoken to over HTTP like NOAA's buckets."""
    server = LocalS3().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(s3_server):
    """The session's server, with boto3's standard endpoint variable pointing at it for this module's tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ENDPOINT_URL_S3", s3_server.url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        mp.delenv(name, raising=False)  # the pipeline reads anonymously; no credentials may be needed
    yield s3_server
    mp.undo()


@pytest.fixture(scope="module")
def sklearn_single_threaded():
    """scikit-learn's OpenMP loops on one thread (the reference side of the ml tests): on small inputs and a busy
    machine that is much faster."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture
def no_network(monkeypatch):
    """Make every way of opening a connection fail loudly, and record the attempts."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts
