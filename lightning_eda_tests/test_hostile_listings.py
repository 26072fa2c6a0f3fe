"""What a listing may hold beyond granules (dot-dot keys, other hours, HTML pages), an hour with nothing yet, and
a transform without its extract: only granule keys are fetched, nothing lands outside the data folder, and the
failures say why."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

from reliability_helpers import HOUR_2019, KEY_2019, PRODUCT, files_by_status, meta, run, synthetic

from lightning_eda.cli import failure_message
from lightning_eda.goes.layout import hour_prefix
from lightning_eda.orchestration.assets.ingestor import transform
from lightning_eda.testing import lcfa_factory
from lightning_eda.testing.real_minute import HOUR_2018, KEY_2018


def test_only_granule_keys_are_fetched_and_nothing_is_written_outside_the_data_folder(s3, proxy, tmp_path):
    bucket = "rel-hostile"
    data_dir = tmp_path / "sandbox" / "data"
    prefix = hour_prefix(PRODUCT, HOUR_2018)
    good_name, good_body = synthetic(tmp_path / "staging", HOUR_2018 + timedelta(minutes=5))
    s3.put_granule(bucket, good_body, name=good_name)
    tag = uuid.uuid4().hex[:8]
    other_hour = lcfa_factory.lcfa_name("G16", HOUR_2018 + timedelta(hours=1))
    granule_like = lcfa_factory.lcfa_name("G16", HOUR_2018 + timedelta(minutes=7))
    hostile = [
        f"{prefix}../../../../../../escape-{tag}.nc",  # lands beside data/ if joined naively
        f"{prefix}../../../../../../../{granule_like}",  # a valid name after the dot-dots
        f"{prefix}%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/pct-{tag}.nc",
        f"{prefix}..\\..\\..\\..\\..\\..\\bs-{tag}.nc",
        f"{prefix}/{granule_like}",  # an empty folder: '//' in the key
        f"{prefix}./{granule_like}",
        f"{prefix}sub/{granule_like}",
        f"{prefix}{other_hour}",  # a real granule name filed under the wrong hour
        f"{prefix}{granule_like}.part",
        f"{prefix}{granule_like[:-3]}.html",
        f"{prefix}index.html",
        f"{prefix}{granule_like} ",
        f"{prefix}/etc/passwd-{tag}",
        f"{prefix}..",
    ]
    for key in hostile:
        s3.put(bucket, key, good_body)
    listed = {o["Key"] for o in s3.admin.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert set(hostile) <= listed, "moto should store every key verbatim"

    result = run(data_dir, bucket, KEY_2018)
    assert result.success, failure_message(result)
    assert proxy.object_gets() == [prefix + good_name], "only the granule key may be downloaded"
    assert files_by_status(data_dir / "glm.duckdb") == {good_name: ("loaded", None)}
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and data_dir not in p.parents]
    assert [p for p in outside if "staging" not in p.parts] == []
    raw_root = data_dir / "raw" / bucket
    for key in hostile:  # wherever a naive join of the key would have landed, nothing is there
        for variant in (key, key.replace("%2e", "."), key.replace("\\", "/")):
            target = Path(os.path.normpath(raw_root / variant))
            assert not target.is_file() or target == raw_root / prefix / good_name, variant
    assert meta(result, "extract")["granules_listed"] == 1


def test_an_hour_with_no_granules_yet_fails_with_a_clear_message(s3, proxy, tmp_path):
    bucket = "rel-empty-hour"
    s3.create_bucket(bucket)
    s3.put(bucket, hour_prefix(PRODUCT, HOUR_2019) + "index.html", b"not a granule")  # listed, but not a granule
    result = run(tmp_path, bucket, KEY_2019)
    assert not result.success
    message = failure_message(result)
    assert message.startswith("extract: no granules under") and hour_prefix(PRODUCT, HOUR_2019) in message
    assert "not be published yet" in message
    missing = run(tmp_path, "rel-no-such-bucket", KEY_2019)
    assert not missing.success and "NoSuchBucket" in failure_message(missing)
    assert not (tmp_path / "glm.duckdb").exists()


def test_transform_without_a_prior_extract_says_so(s3, tmp_path):
    result = run(tmp_path, "rel-never-extracted", KEY_2019, assets=(transform,))
    assert not result.success
    message = failure_message(result)
    assert "extract" in message, message
