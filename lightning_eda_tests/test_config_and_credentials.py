"""Malformed configuration fails before any request or write; credentials in the environment are never sent or
logged, and a missing AWS profile does not break anonymous reads."""

from __future__ import annotations

import uuid

import pytest
from dagster import DagsterInstance
from reliability_helpers import HOUR_2019, KEY_2019, files_by_status, run, run_messages, synthetic

from lightning_eda.cli import failure_message
from lightning_eda.orchestration.assets.ingestor import extract, load, transform

DUMMY_KEY_ID = "AKIARELIABILITYDUMMY7"
DUMMY_SECRET = "reliability-dummy-secret-Zq8wX"
DUMMY_TOKEN = "reliability-dummy-session-token-Vb3k"


# --- configuration -----------------------------------------------------------------------------------------------


ALL_THREE = (extract, transform, load)


@pytest.mark.parametrize(
    "assets, archive, variable",
    [
        (ALL_THREE, {"bucket": "Not_A_Bucket"}, "S3_BUCKET"),
        (ALL_THREE, {"bucket": "noaa-goes16/../x"}, "S3_BUCKET"),
        (ALL_THREE, {"bucket": "ab"}, "S3_BUCKET"),
        (ALL_THREE, {"bucket": "noaa-goes16", "product": "../../etc"}, "PRODUCT"),
        # transform and load alone (as the UI can launch them) name folders after bucket and product too
        ((transform,), {"bucket": "../../escape"}, "S3_BUCKET"),
        ((transform,), {"bucket": "noaa-goes16", "product": "../../etc"}, "PRODUCT"),
        ((load,), {"bucket": "../../escape"}, "S3_BUCKET"),
        ((load,), {"bucket": "noaa-goes16", "product": "../../etc"}, "PRODUCT"),
    ],
    ids=[
        "bucket-case",
        "bucket-dotdot",
        "bucket-short",
        "product",
        "transform-bucket",
        "transform-product",
        "load-bucket",
        "load-product",
    ],
)
def test_malformed_config_fails_before_any_request_or_write(proxy, tmp_path, archive, variable, assets):
    data_dir = tmp_path / "a" / "b" / "data"
    archive = dict(archive)
    bucket = archive.pop("bucket")
    result = run(data_dir, bucket, KEY_2019, assets=assets, **archive)
    assert not result.success
    message = failure_message(result)
    assert variable in message and "Traceback" not in message, message
    assert proxy.requests == 0, [s.path for s in proxy.seen]
    outside = [p for p in tmp_path.rglob("*") if p != data_dir and data_dir not in p.parents]
    assert [p for p in outside if p not in data_dir.parents] == []


# --- credentials -------------------------------------------------------------------------------------------------


def test_credentials_in_the_environment_are_never_sent_or_logged(s3, proxy, tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", DUMMY_TOKEN)
    bucket = "rel-credentials"
    name, body = synthetic(tmp_path / "staging", HOUR_2019)
    s3.put_granule(bucket, body, name=name)
    caplog.set_level("DEBUG", logger="lightning_eda")
    instance = DagsterInstance.ephemeral()
    result = run(tmp_path / "data", bucket, KEY_2019, instance=instance)
    assert result.success, failure_message(result)
    assert proxy.requests >= 2
    secrets = (DUMMY_KEY_ID, DUMMY_SECRET, DUMMY_TOKEN)
    for seen in proxy.seen:
        names = {header.lower() for header, _ in seen.headers}
        assert not names & {"authorization", "x-amz-security-token"}, seen.headers
        assert not any(s in value for _, value in seen.headers for s in secrets), seen.headers
        assert "X-Amz-Credential" not in seen.path and "Signature=" not in seen.path
    out, err = capfd.readouterr()
    logs = "\n".join([out, err, caplog.text, *(m or "" for m in run_messages(instance, result))])
    assert not any(s in logs for s in secrets)


def test_a_missing_aws_profile_does_not_break_anonymous_reads(s3, proxy, tmp_path, monkeypatch):
    bucket = "rel-profile"
    name, body = synthetic(tmp_path / "staging", HOUR_2019)
    s3.put_granule(bucket, body, name=name)
    monkeypatch.setenv("AWS_PROFILE", f"no-such-profile-{uuid.uuid4().hex[:6]}")  # e.g. left over from other work
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    result = run(tmp_path / "data", bucket, KEY_2019)
    assert result.success, failure_message(result)
    assert files_by_status(tmp_path / "data" / "glm.duckdb") == {name: ("loaded", None)}
