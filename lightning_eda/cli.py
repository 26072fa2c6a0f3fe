"""``lightning-eda``: the pipeline from a terminal, driven by the same environment variables as the UI.

Exit codes: 0 success, 1 the run failed, 2 the configuration is invalid (nothing was downloaded).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime
from typing import Optional, Sequence

from lightning_eda import settings


def _fail(message: str, code: int) -> int:
    print(f"lightning-eda: error: {message}", file=sys.stderr)
    return code


def _failure_message(result) -> str:
    """The user-facing reason of a failed run: a Failure's description, else the innermost exception message."""
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return f"{event.step_key}: {data.user_failure_data.description}"
        error = data.error
        while error is not None and error.cause is not None:
            error = error.cause
        text = (error.message if error is not None else "unknown error").strip().splitlines()
        return f"{event.step_key}: {text[-1] if text else 'unknown error'}"
    return "the run failed (see the Dagster logs)"


def _instance():
    """The persistent instance when DAGSTER_HOME is set, so CLI runs show in the UI; else a throwaway one."""
    from dagster import DagsterInstance

    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def run_hour(hour: datetime, *, verbose: bool = False) -> int:
    from dagster import materialize

    from lightning_eda.assets.ingestor import extract, load, transform
    from lightning_eda.partitions import partition_key_for_hour
    from lightning_eda.resources import resources_from_env
    from lightning_eda import store

    config = settings.Settings.from_env()
    key = partition_key_for_hour(hour)
    print(f"lightning-eda: {config.bucket}/{config.product} hour {hour:%Y-%m-%d %H}:00 UTC (partition {key})")
    log_level = "INFO" if verbose else "CRITICAL"
    with _instance() as instance:
        result = materialize(
            [extract, transform, load],
            partition_key=key,
            resources=resources_from_env(),
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
    if not result.success:
        return _fail(_failure_message(result), 1)
    with store.connect(config.database_path, read_only=True) as con:
        summary = store.hour_summary(con, bucket=config.bucket, hour=hour)
    print(
        f"files: {summary['files']} ({summary['loaded']} loaded, {summary['failed']} failed)\n"
        f"flashes: {summary['flashes']}\ngroups: {summary['groups']}\nevents: {summary['events']}\n"
        f"time span: {summary['time_start']} .. {summary['time_end']} UTC\n"
        f"database: {config.database_path.resolve()}"
    )
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="lightning-eda", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the pipeline for the hour chosen by GOES_YEAR/GOES_DOY/GOES_HOUR")
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's run log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings.Settings.from_env()
        hour = settings.hour_from_env(os.environ)
    except settings.ConfigError as exc:
        return _fail(str(exc), 2)
    if args.command == "run":
        return run_hour(hour, verbose=args.verbose)
    return 2


if __name__ == "__main__":
    sys.exit(main())
