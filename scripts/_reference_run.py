"""The reference the scale test compares against: the same hours by ``lightning-eda backfill`` in one process, and a
digest of a store that is equal for two stores holding the same rows, whatever their order or files.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

from _services import BIN, PROJECT

from lightning_eda.store import catalog
from lightning_eda.store.schemas import DATA_TABLES


def store_digest(data_dir: Path) -> dict:
    """What the store holds, comparable between two runs: per table, its rows and an order-free content hash."""
    digest = {}
    with catalog.connect_store(data_dir) as con:
        for table in DATA_TABLES:
            columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
            row_hash = " || '|' || ".join(f"coalesce(CAST({c} AS VARCHAR), '∅')" for c in columns)
            digest[table] = con.execute(f"SELECT count(*), sum(hash({row_hash})) FROM {table}").fetchone()
        digest["glm_file"] = con.execute(
            "SELECT count(*), sum(hash(source_file || status || n_flashes || n_groups || n_events)) FROM glm_file"
        ).fetchone()
        digest["hours"] = [str(h) for (h,) in con.execute("SELECT DISTINCT hour FROM glm_file ORDER BY 1").fetchall()]
    return digest


def one_process_run(root: Path, bucket: str, s3_url: str, hours: list[datetime]) -> tuple[Path, float]:
    """``hours`` by ``lightning-eda backfill --no-cluster`` in one process; returns its data folder and seconds."""
    data_dir = root / "data-one-process"
    home = root / "home-one-process"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LIGHTNING_EDA_DATA_DIR": str(data_dir),
        "S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL_S3": s3_url,
    }
    env.pop("LIGHTNING_EDA_EXECUTOR", None)
    started = time.monotonic()
    subprocess.run(
        [
            str(BIN / "lightning-eda"),
            "backfill",
            "--start",
            hours[0].strftime("%Y-%m-%dT%H"),
            "--end",
            hours[-1].strftime("%Y-%m-%dT%H"),
            "--no-cluster",
        ],
        check=True,
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return data_dir, time.monotonic() - started
