"""``lightning-eda``: the pipeline from a terminal, driven by the same environment variables as the UI.

Exit codes: 0 success, 1 the run failed, 2 the configuration is invalid (nothing was downloaded).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from lightning_eda import settings

DEFAULT_DAGSTER_HOME = ".dagster_home"
NO_RELIST_VARIABLE = "BACKFILL_NO_RELIST"
DEPLOYMENT_VARIABLE = "BACKFILL_DEPLOYMENT"


def _fail(message: str, code: int) -> int:
    print(f"lightning-eda: error: {message}", file=sys.stderr)
    return code


def failure_message(result) -> str:
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
        # The first line names the exception and its message; later lines are often hints or context.
        text = (error.message if error is not None else "unknown error").strip().splitlines()
        return f"{event.step_key}: {text[0] if text else 'unknown error'}"
    return "the run failed (see the Dagster logs)"


def instance_home(env: dict | None = None) -> Path:
    """The Dagster instance folder: ``$DAGSTER_HOME``, else ``.dagster_home`` in the current folder.

    ``make dev`` uses the same default, so hours loaded from the terminal show as materialized in the UI.
    """
    env = os.environ if env is None else env
    return Path(env.get("DAGSTER_HOME", "").strip() or DEFAULT_DAGSTER_HOME).resolve()


def _instance():
    """The command's Dagster instance: opened once (1.5 s here), not once per hour of a backfill."""
    return _instance_at(instance_home())


@functools.cache
def _instance_at(home: Path):
    from dagster import DagsterInstance

    home.mkdir(parents=True, exist_ok=True)
    instance = DagsterInstance.from_config(str(home))
    atexit.register(instance.dispose)
    return instance


def _materialize(assets, *, partition_key=None, ops=None, verbose=False):
    from dagster import RunConfig, materialize

    from lightning_eda.orchestration.resources import resources_from_env

    log_level = "INFO" if verbose else "CRITICAL"
    run_config = RunConfig(ops=ops or {}, loggers={"console": {"config": {"log_level": log_level}}})
    return materialize(
        assets,
        partition_key=partition_key,
        resources=resources_from_env(),
        instance=_instance(),
        raise_on_error=False,
        run_config=run_config,
    )


def _ingest(hour: datetime, verbose: bool, force: bool = False):
    from lightning_eda.definitions import ingest_assets, ingest_checks
    from lightning_eda.orchestration.partitions import partition_key_for_hour
    from lightning_eda.orchestration.run_config import ingest_run_config

    ops = ingest_run_config(redecode=force).ops
    key = partition_key_for_hour(hour)
    return _materialize([*ingest_assets, *ingest_checks], partition_key=key, ops=ops, verbose=verbose)


class IngestFailed(RuntimeError):
    """The hour in progress could not be loaded (nothing published yet, or nothing decoded)."""


def _ingest_in_progress(config: settings.Settings, hour: datetime, now: datetime) -> bool:
    """Load the granules of the hour in progress that ended by ``now``, by the plain steps the ingest assets call;
    False when none is published yet (GLM granules appear about 20 s after they end; replaying a past moment with
    LIGHTNING_EDA_NOW, the archive holds later ones too, which are left for the hour's partition run).

    Dagster has no partition for an hour until it ends, so this runs outside it and records no materialization; the
    hour's first partition run (the schedule's, or any later ``run``/``backfill``) lists it again, skips the granules
    loaded here and fetches the rest.
    """
    from lightning_eda.ingest import hourly
    from lightning_eda.ingest.archive import ArchiveUnreachable
    from lightning_eda.orchestration.resources import resources_from_env

    resources = resources_from_env()
    archive, data = resources["archive"], resources["data"]
    paths = data.hour_paths(archive, hour)
    try:
        report, _ = hourly.extract_needed(
            archive.archive(hour), paths, data.store, max_workers=archive.max_workers, ended_by=now
        )
    except ArchiveUnreachable as exc:
        raise IngestFailed(str(exc)) from None
    if report.listed == 0:
        return False
    result = hourly.transform_hour(paths, data.store, redecode=False, write_csv=data.write_csv)
    if not result.count("loaded") and not result.kept:
        raise IngestFailed(f"none of the {report.listed} granules of {hour:%Y-%m-%d %H}:00 UTC so far could be loaded")
    hourly.load_hour(paths, data.store, keep_raw=data.keep_raw)
    data.refresh_database()
    return True


def _cluster(start: datetime, hours: int, verbose: bool, end: datetime | None = None):
    """Cluster ``hours`` hours from ``start``, or with ``end`` the window [start, end) to the minute."""
    from lightning_eda.definitions import clustering_assets
    from lightning_eda.orchestration.partitions import partition_key_for_hour
    from lightning_eda.orchestration.run_config import cluster_run_config

    if end is None:
        ops = cluster_run_config(partition_key_for_hour(start), hours=hours).ops
    else:
        ops = cluster_run_config(f"{start:%Y-%m-%dT%H:%M}", hours=hours, end=f"{end:%Y-%m-%dT%H:%M}").ops
    return _materialize(clustering_assets, ops=ops, verbose=verbose)


def _database_path(config: settings.Settings) -> Path:
    from lightning_eda.store import catalog

    return catalog.database_path(config.data_dir).resolve()


def _hour_summary(config: settings.Settings, hour: datetime) -> dict:
    """Read from the store directly: glm.duckdb may be held open by a user."""
    from lightning_eda.store import catalog, database
    from lightning_eda.store.parquet_store import HourKey

    key = HourKey(config.bucket_at(hour), config.product, hour)  # east/west: the hour's satellite
    with catalog.connect_store(config.data_dir, hours=[key]) as con:  # the hour's files, not the whole store
        return database.hour_summary(con, bucket=key.bucket, hour=hour)


def _incomplete_note(summary: dict) -> str:
    from lightning_eda.store import database

    note = database.incomplete_note(summary)
    return f"; INCOMPLETE: {note}" if note else ""


def _print_cluster_summary(result, config: settings.Settings) -> None:
    from lightning_eda.analysis.analysis_store import PLOT_FILES, AnalysisStore
    from lightning_eda.analysis.storms import largest_storms
    from lightning_eda.geo import format_position
    from lightning_eda.store import catalog, database
    from lightning_eda.store.parquet_store import ParquetStore

    meta = result.asset_materializations_for_node("kmeans_cluster")[0].metadata
    silhouette = f", silhouette {meta['silhouette'].value:.3f}" if "silhouette" in meta else ""
    print(
        f"clusters: k={meta['k'].value} by {meta['k_criterion'].value} ({meta['k_reason'].value}); "
        f"{meta['storm_count'].value} storms in the window{silhouette}"
    )
    with catalog.connect_store(config.data_dir, hours=()) as con:  # the analyses' tables only
        summary = database.read_cluster_summary(con)
    for row in largest_storms(summary).itertuples():
        where = format_position(row.lat, row.lon)
        jumps = f", {row.n_jumps} lightning jump{'s' if row.n_jumps != 1 else ''}" if row.n_jumps else ""
        print(f"  storm {row.cluster}: {where}, {row.n_flashes:,} flashes, {row.flash_rate:.1f} flashes/min{jumps}")
    _print_track_summary(result, config)
    analyses = AnalysisStore(ParquetStore(config.data_dir))
    print("plots: " + ", ".join(str(analyses.plot_path(plot).resolve()) for plot in PLOT_FILES))


def _print_track_summary(result, config: settings.Settings) -> None:
    """The strongest storm tracks of the window just tracked: id, start-end, path, peak rate, jumps."""
    from lightning_eda.analysis.track_runs import NOT_CONTINUED, strongest_tracks
    from lightning_eda.store import catalog, database

    materialized = result.asset_materializations_for_node("storm_tracks")
    if not materialized:
        return
    meta = materialized[0].metadata
    continued = meta["continued_from"].value
    origin = "started afresh" if continued == NOT_CONTINUED else f"continuing the tracks of {continued}"
    print(
        f"storm tracks: {meta['tracks'].value} tracks, {meta['splits'].value} splits, {meta['merges'].value} merges, "
        f"{meta['lightning_jumps'].value} lightning jumps ({origin})"
    )
    with catalog.connect_store(config.data_dir, hours=()) as con:  # the analyses' tables only
        window = database.read_window_row(con)
        summary = database.read_window_tracks(con, start=window["window_start"], end=window["window_end"])
    for row in strongest_tracks(summary, n=5).itertuples():
        jumps = f", {row.n_jumps} lightning jump{'s' if row.n_jumps != 1 else ''}" if row.n_jumps else ""
        print(
            f"  track {row.track_id}: {row.start:%H:%M}–{row.end:%H:%M} UTC, {row.path_km:.0f} km, "
            f"peak {row.peak_flash_rate:.1f} flashes/min{jumps}"
        )


def run_window(
    config: settings.Settings,
    window: settings.TimeWindow,
    *,
    verbose: bool = False,
    cluster: bool = True,
    now: datetime | None = None,
) -> int:
    """Ingest the hours the window touches, then cluster exactly the window and draw the plots."""
    from lightning_eda.orchestration.partitions import partition_key_for_hour

    now = now or settings.utc_now()
    if not window.whole_hours or len(window.hours) > 1:
        print(f"lightning-eda: window {window.text}, {len(window.hours)} hours to ingest")
    for hour in window.hours:
        where = f"lightning-eda: {config.bucket_at(hour)}/{config.product} hour {hour:%Y-%m-%d %H}:00 UTC"
        if settings.hour_in_progress(hour, now):
            print(
                f"{where} (in progress: the granules published by {now:%H:%M}; it becomes partition "
                f"{partition_key_for_hour(hour)} when it ends, and the run after that loads the rest)"
            )
            try:
                if not _ingest_in_progress(config, hour, now):
                    print(f"{where}: nothing published yet")
                    continue
            except (settings.ConfigError, IngestFailed) as exc:
                return _fail(str(exc), 1)
        else:
            print(f"{where} (partition {partition_key_for_hour(hour)})")
            result = _ingest(hour, verbose)
            if not result.success:
                return _fail(failure_message(result), 1)
        summary = _hour_summary(config, hour)
        print(
            f"files: {summary['files']} ({summary['loaded']} loaded, {summary['failed']} failed"
            f"{', ' + str(summary['missing']) + ' missing' if summary['missing'] else ''}){_incomplete_note(summary)}\n"
            f"flashes: {summary['flashes']}\ngroups: {summary['groups']}\nevents: {summary['events']}\n"
            f"time span: {summary['time_start']} .. {summary['time_end']} UTC\n"
            f"database: {_database_path(config)}"
        )
    if not cluster:
        return 0
    end = None if window.whole_hours else window.end
    result = _cluster(window.start, len(window.hours), verbose, end=end)
    if not result.success:
        return _fail(failure_message(result), 1)
    _print_cluster_summary(result, config)
    return 0


def _run_window_from_args(args, env, now: datetime) -> settings.TimeWindow:
    """The run command's window: --recent, or --start and --end, else the hour of GOES_YEAR/GOES_DOY/GOES_HOUR."""
    if args.recent and (args.start or args.end):
        raise settings.ConfigError("--recent cannot be combined with --start/--end")
    if args.recent:
        return settings.recent_window(settings.parse_duration(args.recent, "--recent"), now=now)
    if args.start or args.end:
        if not (args.start and args.end):
            raise settings.ConfigError(f"set both --start and --end (missing: {'--end' if args.start else '--start'})")
        start, end = settings.parse_minute(args.start, "--start"), settings.parse_minute(args.end, "--end")
        return settings.time_window(start, end, now=now)
    hour = settings.hour_from_env(env, now=now)
    return settings.TimeWindow(hour, hour + timedelta(hours=1))


def backfill(
    config: settings.Settings,
    hours: list[datetime],
    *,
    force: bool,
    cluster: bool,
    verbose: bool,
    relist: bool = True,
    deep: bool = False,
) -> int:
    """Ingest every hour of ``hours``; complete hours are skipped unless ``force``, incomplete ones completed.

    A complete hour is listed again (one request) unless ``relist`` is off: a granule published or republished
    since it was loaded, or one withdrawn, makes it run again (fetching and decoding only what changed). A damaged
    hour (footers and sizes against its manifest; checksums too when ``deep``) runs again and is replaced whole.
    """
    from lightning_eda.ingest.archive import ArchiveUnreachable

    start, end = hours[0], hours[-1]
    print(
        f"lightning-eda: backfill {config.bucket}/{config.product}, {len(hours)} hours "
        f"{start:%Y-%m-%d %H}:00 .. {end:%Y-%m-%d %H}:00 UTC"
        f"{'' if relist else ' (not listing complete hours again: --no-relist)'}"
    )
    failures = incomplete = 0
    for index, hour in enumerate(hours, 1):
        prefix = f"[{index}/{len(hours)}] {hour:%Y-%m-%d %H}:00"
        began = time.monotonic()
        if not force:
            try:
                reasons = _resume_reasons(config, hour, relist, deep)
            except ArchiveUnreachable as exc:
                failures += 1
                print(f"{prefix} FAILED: {exc}")
                continue
            if not reasons:
                print(f"{prefix} already loaded{', unchanged in the archive' if relist else ''}, skipped")
                continue
            if reasons[0] != "not loaded yet":
                print(f"{prefix} loaded before, running again: {'; '.join(reasons)}")
        result = _ingest(hour, verbose, force=force)
        if not result.success:
            failures += 1
            print(f"{prefix} FAILED: {failure_message(result)}")
            continue
        summary = _hour_summary(config, hour)
        incomplete += bool(summary["missing"])
        print(
            f"{prefix} {summary['loaded']} granules ({summary['failed']} failed), {summary['flashes']} flashes "
            f"in {time.monotonic() - began:.1f} s{_incomplete_note(summary)}"
        )
    if cluster and failures < len(hours):
        result = _cluster(start, len(hours), verbose)
        if not result.success:
            return _fail(failure_message(result), 1)
        _print_cluster_summary(result, config)
    if failures:
        return _fail(f"{failures} of {len(hours)} hours failed; run the same command again to retry them", 1)
    if incomplete:
        print(f"{incomplete} hours are incomplete; run the same command again to fetch their missing granules")
    print(f"database: {_database_path(config)}")
    return 0


def deployment_backfill(url: str, hours: list[datetime], per_run: int, *, wait: bool) -> int:
    """Queue the hours on a running deployment in runs of ``per_run`` hours; with ``wait``, follow them to the end
    (retries included) and exit 1 naming the batches that failed."""
    from lightning_eda.orchestration import remote_backfill

    try:
        webserver = remote_backfill.Webserver(url)
    except ValueError as exc:
        return _fail(str(exc), 2)
    batches = remote_backfill.hour_batches(hours, per_run)
    try:
        launch_id, run_ids = webserver.launch(batches)
    except remote_backfill.LaunchError as exc:
        return _fail(f"could not launch on the deployment at {url}: {exc}", 1)
    print(
        f"lightning-eda: queued {len(run_ids)} runs of {remote_backfill.INGEST_JOB} ({len(hours)} hours, up to "
        f"{per_run} a run) on {url}; the UI's runs filtered by the tag {remote_backfill.LAUNCH_TAG}={launch_id}",
        flush=True,
    )
    if not wait:
        return 0
    seen: dict[str, str] = {}

    def progress(states) -> None:
        for state in states:
            if seen.get(state.batch) != f"{state.run_id}:{state.status}" and state.status in (
                "STARTED",
                *remote_backfill.FINISHED,
            ):
                seen[state.batch] = f"{state.run_id}:{state.status}"
                print(f"{state.batch} run {state.run_id[:8]} {state.status}", flush=True)

    states = webserver.wait(launch_id, len(batches), progress=progress)
    failed = [s for s in states if s.status != "SUCCESS"]
    if failed:
        names = ", ".join(f"{s.batch} ({s.status.lower()}, run {s.run_id[:8]})" for s in failed)
        return _fail(
            f"{len(failed)} of {len(states)} runs did not succeed: {names}; the same command runs them again", 1
        )
    print(f"lightning-eda: {len(states)} runs succeeded ({len(hours)} hours)")
    return 0


def _resume_reasons(config: settings.Settings, hour: datetime, relist: bool, deep: bool) -> list[str]:
    """Why the backfill must run ``hour`` (empty: it is complete and unchanged); lists the hour when ``relist``."""
    from lightning_eda.ingest import hourly
    from lightning_eda.store.parquet_store import HourKey, ParquetStore

    store = ParquetStore(config.data_dir)
    key = HourKey(config.bucket_at(hour), config.product, hour)  # east/west: the hour's satellite
    reasons = hourly.resume_reasons(store, key, None, deep=deep)
    if reasons or not relist:
        return reasons
    return hourly.listing_changes(store.read(key, "glm_file"), _archive(config).archive(hour).list_hour(hour))


@functools.cache
def _archive(config: settings.Settings):
    """The command's archive resource, made once (the same settings the runs' resource reads)."""
    from lightning_eda.orchestration.resources import build_resources

    resource = build_resources(
        config.data_dir, bucket=config.bucket, product=config.product, source_dir=config.source_dir
    )["archive"]
    return resource


def verify(config: settings.Settings, start: datetime | None, end: datetime | None, *, deep: bool) -> int:
    """Check every committed hour (of [start, end] when given) against its manifest; exit 1 naming the damage."""
    from lightning_eda.goes import satellites
    from lightning_eda.store.parquet_store import ParquetStore
    from lightning_eda.store.verify import heal_command, verify_store

    store = ParquetStore(config.data_dir)
    hours = None if start is None else settings.hour_range(start, end or start)
    damaged, checked = [], 0
    checks = (
        check
        for bucket in satellites.slot_buckets(config.bucket)  # east/west: every satellite the slot has had
        for check in verify_store(store, bucket, config.product, hours=hours, deep=deep)
    )
    for key, damage in checks:
        checked += 1
        for problem in damage:
            print(f"DAMAGED {problem}")
        if damage:
            damaged.append(key.hour)
    how = "footers, sizes and checksums" if deep else "footers and sizes; --deep also compares checksums"
    print(f"{checked} hours of {config.bucket}/{config.product} checked ({how}), {len(damaged)} damaged")
    if not damaged:
        return 0
    print(f"heal with: {heal_command(damaged, deep=deep)}")
    return 1


def rebuild_database(config: settings.Settings) -> int:
    """Make glm.duckdb hold the store's views again (after deleting it, moving the data folder, or upgrading)."""
    from lightning_eda.store import catalog

    try:
        status = catalog.refresh_database(config.data_dir, force=True)
    except catalog.CatalogBusy as exc:
        return _fail(str(exc), 1)
    print(f"database: {_database_path(config)} {status}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lightning-eda", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="ingest, cluster and map the hour chosen by GOES_YEAR/GOES_DOY/GOES_HOUR, or a window to the minute",
    )
    run.add_argument("--no-cluster", action="store_true", help="only extract, transform and load")
    run.add_argument(
        "--recent",
        default="",
        help="the last 30min, 90min, 2h, ... up to now, the hour in progress included (clock: LIGHTNING_EDA_NOW)",
    )
    run.add_argument("--start", default="", help="window start to the minute, UTC, e.g. 2024-06-01T18:10")
    run.add_argument("--end", default="", help="window end to the minute (excluded), UTC, e.g. 2024-06-01T18:40")
    fill = sub.add_parser("backfill", help="ingest every hour of a range (each once), then cluster the range")
    fill.add_argument(
        "--start",
        default=os.environ.get("BACKFILL_START", ""),
        help="first hour, e.g. 2018-07-02T04 or '2018-07-02 04:00' (env BACKFILL_START)",
    )
    fill.add_argument(
        "--end", default=os.environ.get("BACKFILL_END", ""), help="last hour, included (env BACKFILL_END)"
    )
    fill.add_argument("--force", action="store_true", help="decode and reload hours that are already complete")
    fill.add_argument("--no-cluster", action="store_true", help="skip clustering the range afterwards")
    fill.add_argument(
        "--no-relist",
        action="store_true",
        help="trust complete hours without listing them again (an archive known to be frozen; env "
        f"{NO_RELIST_VARIABLE}=1)",
    )
    fill.add_argument(
        "--deployment",
        default=os.environ.get(DEPLOYMENT_VARIABLE, ""),
        metavar="URL",
        help="queue the hours as runs of LIGHTNING_EDA_HOURS_PER_RUN hours on a running deployment's webserver "
        f"(e.g. http://localhost:3000) instead of ingesting them here; no clustering (env {DEPLOYMENT_VARIABLE})",
    )
    fill.add_argument("--no-wait", action="store_true", help="with --deployment: return once the runs are queued")
    for command in (run, fill):
        command.add_argument("-v", "--verbose", action="store_true", help="show Dagster's run log")
    check = sub.add_parser("verify", help="find damaged hours in the store (exit 1 naming each hour and file)")
    check.add_argument("--start", default="", help="first hour to check (default: every hour in the store)")
    check.add_argument("--end", default="", help="last hour to check, included (default: --start)")
    for command in (fill, check):
        command.add_argument(
            "--deep", action="store_true", help="also compare each file's checksum (reads every byte, not footers)"
        )
    sub.add_parser("rebuild-db", help="recreate glm.duckdb's views over the Parquet store (or migrate an old one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = settings.Settings.from_env()
        if args.command == "run":
            now = settings.now_from_env(os.environ)
            window = _run_window_from_args(args, os.environ, now)
            settings.buckets_for_hours(config.bucket, window.hours)  # east/west: every hour has a satellite
        elif args.command == "backfill":
            start = settings.parse_hour(args.start, "--start/BACKFILL_START")
            end = settings.parse_hour(args.end, "--end/BACKFILL_END")
            hours = settings.hour_range(start, end)
            settings.buckets_for_hours(config.bucket, hours)
            no_relist = args.no_relist or settings.parse_flag(
                NO_RELIST_VARIABLE, os.environ.get(NO_RELIST_VARIABLE, "").strip() or "0"
            )
            if args.deployment.strip():
                if args.force:
                    raise settings.ConfigError("--force runs here only: a deployment's runs skip complete hours")
                per_run = settings.hours_per_run()
        elif args.command == "verify":
            first = settings.parse_hour(args.start, "--start") if args.start else None
            last = settings.parse_hour(args.end, "--end") if args.end else None
    except settings.ConfigError as exc:
        return _fail(str(exc), 2)
    if args.command == "verify":
        try:
            return verify(config, first, last, deep=args.deep)
        except settings.ConfigError as exc:
            return _fail(str(exc), 2)
    if args.command == "run":
        return run_window(config, window, verbose=args.verbose, cluster=not args.no_cluster, now=now)
    if args.command == "rebuild-db":
        return rebuild_database(config)
    if args.deployment.strip():
        return deployment_backfill(args.deployment.strip(), hours, per_run, wait=not args.no_wait)
    return backfill(
        config,
        hours,
        force=args.force,
        cluster=not args.no_cluster,
        verbose=args.verbose,
        relist=not no_relist,
        deep=args.deep,
    )


if __name__ == "__main__":
    sys.exit(main())
