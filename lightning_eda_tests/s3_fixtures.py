"""Fixtures for tests that talk to S3: one local server per session, reached through AWS_ENDPOINT_URL_S3."""

from __future__ import annotations

import pytest

from s3_server import LocalS3


@pytest.fixture(scope="session")
def s3_server():
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
