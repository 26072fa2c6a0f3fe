"""``lightning-eda`` as a user runs it, with any command and flags, and granules planted on the local S3 server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from lightning_eda.testing.lcfa_factory import lcfa_name, write_lcfa


def lightning_eda(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """Run the console script with ``args`` and a clean, explicit environment (none of the caller's settings)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOES_", "S3_", "LIGHTNING_EDA_"))}
    base.pop("PRODUCT", None)
    base.pop("DAGSTER_HOME", None)
    script = shutil.which("lightning-eda", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "lightning_eda.cli"]
    return subprocess.run(command + args, env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=600)


def plant_granule(s3, folder: Path, bucket: str, platform: str, start: datetime, **tables) -> str:
    """Write a granule of ``platform`` starting at ``start`` (the factory's sample tables unless given) and serve
    it from ``bucket``; returns its file name."""
    name = lcfa_name(platform, start)
    write_lcfa(folder / name, platform=platform, start=start, **tables)
    s3.put_granule(bucket, folder / name)
    return name
