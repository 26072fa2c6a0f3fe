"""A local S3-compatible server (moto in server mode) on 127.0.0.1, seeded like NOAA's public GOES buckets.

moto is a development dependency (the ``dev`` extra): it is imported when a server is made, not with this module.
"""

from __future__ import annotations

from pathlib import Path

import boto3

from lightning_eda.goes.layout import hour_prefix, parse_granule_name


class LocalS3:
    """moto's S3 over real HTTP; objects are public-read like NOAA's, so anonymous clients can fetch them."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def start(self) -> LocalS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def admin(self):
        """A signed client (dummy credentials) for seeding; the pipeline itself only ever reads anonymously."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="seed",
            aws_secret_access_key="seed",
        )

    def create_bucket(self, bucket: str) -> None:
        existing = {b["Name"] for b in self.admin.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            self.admin.create_bucket(Bucket=bucket, ACL="public-read")

    def put(self, bucket: str, key: str, body: bytes) -> str:
        self.create_bucket(bucket)
        self.admin.put_object(Bucket=bucket, Key=key, Body=body, ACL="public-read")
        return key

    def put_granule(
        self, bucket: str, source: Path | bytes, name: str | None = None, product: str = "GLM-L2-LCFA"
    ) -> str:
        """Upload a granule under the real key layout, ``PRODUCT/YYYY/DDD/HH/<name>`` from its start time."""
        if isinstance(source, Path):
            name = name or source.name
            body = source.read_bytes()
        else:
            body = source
        assert name is not None
        start = parse_granule_name(name).start
        return self.put(bucket, hour_prefix(product, start) + name, body)

    def clear(self, bucket: str) -> None:
        for page in self.admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                self.admin.delete_object(Bucket=bucket, Key=item["Key"])
