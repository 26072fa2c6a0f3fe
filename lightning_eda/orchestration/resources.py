"""Resources: the granule archive (S3 or a local folder) and the data folder.

The data folder's resource hands out the objects that own its paths (the Parquet store, the analysis store,
:func:`lightning_eda.store.catalog.database_path`); it derives none itself. Defaults come from the environment when the
code location loads, so `dagster dev`, the daemon and `lightning-eda run` all read the same variables; every value can
also be overridden in the launchpad.
"""

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from lightning_eda import settings
from lightning_eda.analysis.analysis_store import AnalysisStore
from lightning_eda.ingest.archive import GranuleArchive, LocalArchive, S3Archive, make_s3_client
from lightning_eda.ingest.hourly import HourPaths
from lightning_eda.store import catalog
from lightning_eda.store.parquet_store import HourKey, ParquetStore

log = logging.getLogger(__name__)


class GlmArchiveResource(ConfigurableResource):
    """NOAA's GOES bucket, read anonymously, or a local mirror of it."""

    bucket: str = Field(
        default=settings.DEFAULT_BUCKET,
        description="S3 bucket, e.g. noaa-goes19, or east / west: the slot's operational satellite, hour by hour "
        "(S3_BUCKET).",
    )
    product: str = Field(default=settings.DEFAULT_PRODUCT, description="Product folder (PRODUCT).")
    source_dir: str | None = Field(
        default=None, description="Read granules from this local folder laid out like the bucket (GOES_SOURCE_DIR)."
    )
    endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint; unset means boto3's own resolution (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS).",
    )
    max_attempts: int = Field(
        default=5, description="Retries per S3 request after the first try (botocore's standard retry mode)."
    )
    max_workers: int = Field(default=8, description="Parallel downloads.")
    read_timeout: float = Field(
        default=30.0, description="Seconds to wait for S3 to send data before the request is retried."
    )

    def validate_names(self) -> None:
        """Raise settings.ConfigError unless bucket and product are well-formed (they also name local folders)."""
        settings.validate_bucket(self.bucket)
        settings.validate_product(self.product)

    def validate_config(self) -> None:
        """Raise settings.ConfigError before any network access when a value is malformed."""
        self.validate_names()
        settings.validate_source_dir(self.source_dir)

    def bucket_at(self, hour: datetime) -> str:
        """The real bucket of ``hour``; raises settings.ConfigError for an alias before its slot's first satellite."""
        return settings.bucket_at(self.bucket, hour)

    def archive(self, hour: datetime) -> GranuleArchive:
        """Where ``hour``'s granules come from: the bucket S3_BUCKET names, or for east/west the slot's satellite's."""
        self.validate_config()
        bucket = self.bucket_at(hour)
        if self.source_dir:
            return LocalArchive(Path(self.source_dir), bucket, self.product)
        client = make_s3_client(
            endpoint_url=self.endpoint_url, max_attempts=self.max_attempts, read_timeout=self.read_timeout
        )
        return S3Archive(client, bucket, self.product)


class LightningDataResource(ConfigurableResource):
    """The data folder: raw granules, the Parquet store, the analyses' tables and plots, and ``glm.duckdb``."""

    data_dir: str = Field(default=settings.DEFAULT_DATA_DIR, description="Data folder (LIGHTNING_EDA_DATA_DIR).")
    write_csv: bool = Field(
        default=False,
        description="Also write each granule's flash, group and event CSVs under csv/ (LIGHTNING_EDA_CSV).",
    )
    keep_raw: bool = Field(
        default=True, description="Keep the granules under raw/ once their hour is loaded (LIGHTNING_EDA_KEEP_RAW)."
    )

    _store: ParquetStore | None = PrivateAttr(default=None)

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_path(self) -> Path:
        return catalog.database_path(self.root)

    @property
    def store(self) -> ParquetStore:
        if self._store is None:
            self._store = ParquetStore(self.root)
        return self._store

    @property
    def analyses(self) -> AnalysisStore:
        return AnalysisStore(self.store)

    @contextmanager
    def get_connection(
        self, hour: HourKey | None = None, *, hours: Sequence[HourKey] | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory DuckDB (dagster-duckdb's resource) over the store's views: the pipeline never takes
        ``glm.duckdb``'s lock.

        With ``hour``, the GLM tables hold that hour only.
        """
        from dagster_duckdb import DuckDBResource  # imported when a step reads, not when the code location loads

        with DuckDBResource(database=":memory:").get_connection() as con:
            yield catalog.attach_views(con, self.store, hour, hours=hours)

    def refresh_database(self) -> catalog.CatalogStatus:
        """Keep ``glm.duckdb``'s views in step with the store (never waits for a user holding the file)."""
        return catalog.refresh_database(self.root)

    def hour_paths(self, archive: GlmArchiveResource, hour: datetime) -> HourPaths:
        """The hour's folders, under its real bucket; raises settings.ConfigError for a bucket or product that is no
        safe folder name, or an alias with no satellite at that hour."""
        archive.validate_names()
        return HourPaths(self.root, archive.bucket_at(hour), archive.product, hour)


def build_resources(
    data_dir: str | os.PathLike,
    *,
    bucket: str = settings.DEFAULT_BUCKET,
    product: str = settings.DEFAULT_PRODUCT,
    source_dir: str | os.PathLike | None = None,
    data_options: dict | None = None,
    **archive_options,
) -> dict:
    """The resources every run needs, by key; the environment loader, the tests, soak and benchmarks all use it.

    ``data_options`` are further :class:`LightningDataResource` fields (``write_csv``, ``keep_raw``);
    ``archive_options`` further :class:`GlmArchiveResource` fields (``endpoint_url``, ``max_attempts``, ...).
    """
    data_options = data_options or {}
    return {
        "archive": GlmArchiveResource(
            bucket=bucket,
            product=product,
            source_dir=None if source_dir is None else str(source_dir),
            **archive_options,
        ),
        "data": LightningDataResource(data_dir=str(data_dir), **data_options),
    }


def resources_from_env(env: Mapping[str, str] | None = None) -> dict:
    """Resources with defaults read from the environment (values are validated at run time)."""
    values = settings.env_values(env)
    # the code location must load with a bad flag (the default then applies); the CLI refuses it before any run
    flags = settings.env_flags(values, on_error=lambda exc: log.warning("%s; using the default", exc))
    return build_resources(
        values["data_dir"],
        bucket=values["bucket"],
        product=values["product"],
        source_dir=values["source_dir"],
        data_options=flags,
    )
