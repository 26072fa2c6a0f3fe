"""Batches of hours: a Dagster backfill of the ingest assets runs several hour partitions per run.

Every run pays a process, a plan per step and its events in the instance (about 5.7 CPU-s on the Celery deployment,
BENCHMARKS.md §8), whatever it carries; ``BackfillPolicy.multi_run`` hands a run ``LIGHTNING_EDA_HOURS_PER_RUN``
consecutive hours instead of one, so a backfill pays that once per batch. Each asset's step then goes through the
batch's hours one by one, and each hour stays on its own:

- an hour that fails at a step is noted in its work folder (:func:`lightning_eda.ingest.hourly.write_failure_note`);
  the batch's later steps pass over it and carry the other hours on, so they are committed;
- ``load``, the step that commits, records a materialization per committed hour and then fails the run naming the
  failed hours; it marks the run to be retried from its first step (``dagster/retry_strategy: ALL_STEPS``), because
  the hour may have failed at ``extract`` — the retry finds the committed hours unchanged (one listing and a check of
  their files each) and does the failed hour's work only;
- a run of one partition (the schedule, the sensor, ``lightning-eda run`` and ``backfill``) behaves as before: the
  hour's failure fails its step.

What Dagster 1.13 cannot do: a step that lets the next one run must yield its output, and an output materializes every
partition of the run's range. So when an hour fails at ``extract`` or ``transform`` while others of its batch go on,
that step's materialization of the failed hour is recorded too, with the reason under ``failed`` in its metadata;
``load``, the committed hour, is not materialized for it, and the backfill shows that partition failed.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping

from dagster import AssetExecutionContext, AssetMaterialization, BackfillPolicy, Failure, MaterializeResult, asset

from lightning_eda import settings
from lightning_eda.ingest import hourly
from lightning_eda.ingest.hourly import HourPaths
from lightning_eda.orchestration.partitions import hour_for_partition_key
from lightning_eda.orchestration.resources import GlmArchiveResource, LightningDataResource
from lightning_eda.utc import naive_utc

log = logging.getLogger(__name__)

RETRY_STRATEGY_TAG = "dagster/retry_strategy"  # read by the daemon's run retries (run_retries in dagster.yaml)


def ingest_backfill_policy() -> BackfillPolicy:
    """Backfill runs of ``LIGHTNING_EDA_HOURS_PER_RUN`` hours each (a bad value: the default, with a warning, so the
    code location still loads)."""
    try:
        hours = settings.hours_per_run()
    except settings.ConfigError as exc:
        log.warning("%s; using %d", exc, settings.DEFAULT_HOURS_PER_RUN)
        hours = settings.DEFAULT_HOURS_PER_RUN
    return BackfillPolicy.multi_run(max_partitions_per_run=hours)


#: One policy for the three ingest assets: a backfill's run takes the same hours through extract, transform and load.
BACKFILL_POLICY = ingest_backfill_policy()


def batched_asset(**kwargs):
    """``@asset(**kwargs)`` with the ingest's backfill policy, without Dagster 1.13's warning that
    ``backfill_policy`` is in beta (it would print on every import of the definitions)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*`backfill_policy`.*beta.*")
        decorator = asset(backfill_policy=BACKFILL_POLICY, **kwargs)

    def apply(fn):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*`backfill_policy`.*beta.*")
            return decorator(fn)

    return apply


def hour_paths(archive: GlmArchiveResource, data: LightningDataResource, key: str) -> HourPaths:
    """The partition's hour and folders, or a Failure naming the setting that makes them unsafe."""
    try:
        return data.hour_paths(archive, naive_utc(hour_for_partition_key(key)))
    except settings.ConfigError as exc:
        raise Failure(description=str(exc)) from None


def _reason(exc: Exception) -> str:
    return exc.description if isinstance(exc, Failure) and exc.description else f"{type(exc).__name__}: {exc}"


def each_hour(
    context: AssetExecutionContext,
    archive: GlmArchiveResource,
    data: LightningDataResource,
    work: Callable[[HourPaths], Mapping],
    *,
    first: bool = False,
    commits: bool = False,
) -> Iterator:
    """Run ``work`` (the asset's body for one hour, returning its metadata) on each hour of the run's partitions.

    ``first``: the batch's first step, which forgets earlier batches' failure notes; ``commits``: the step whose
    success puts the hour in the store, which fails the run when any hour of the batch failed.
    """
    step = context.asset_key.to_user_string()
    keys = context.partition_keys
    if len(keys) == 1:  # one partition: its failure is the step's, as it always was
        yield MaterializeResult(metadata=dict(work(hour_paths(archive, data, keys[0]))))
        return
    batch = context.run.root_run_id or context.run.run_id  # a retry from the failure is the same batch
    done: dict[str, Mapping] = {}
    failed: dict[str, str] = {}
    for key in keys:
        try:
            paths = hour_paths(archive, data, key)
        except Failure as exc:
            failed[key] = f"{step}: {_reason(exc)}"
            context.log.error(f"{key}: {failed[key]}")
            continue
        if first:
            hourly.clear_failure_note(paths)
        else:
            earlier = hourly.failure_in_batch(paths, batch)
            if earlier is not None:
                failed[key] = earlier
                context.log.warning(f"{key}: passed over, it failed earlier in this batch ({earlier})")
                continue
        try:
            done[key] = work(paths)
        except Exception as exc:  # the hour's failure is its own: the batch's other hours go on
            reason = _reason(exc)
            detail = "" if isinstance(exc, Failure) else "\n" + traceback.format_exc()
            context.log.error(f"{key}: {step} failed: {reason}{detail}")
            hourly.write_failure_note(paths, batch, step, reason)
            failed[key] = f"{step}: {reason}"
    failures = "; ".join(f"{key} ({reason})" for key, reason in failed.items())
    if not done:
        raise Failure(description=f"{step}: every hour of the batch failed: {failures}")
    if failed and commits:
        for key, metadata in done.items():
            yield AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=dict(metadata))
        context.instance.add_run_tags(context.run.run_id, {RETRY_STRATEGY_TAG: "ALL_STEPS"})
        raise Failure(
            description=f"{len(failed)} of {len(keys)} hours failed: {failures}; the other {len(done)} are committed "
            "(a retry of the run redoes the failed hours only: the committed ones are found unchanged)"
        )
    for key, metadata in done.items():
        context.add_asset_metadata(dict(metadata), partition_key=key)
    for key, reason in failed.items():
        context.add_asset_metadata({"failed": reason}, partition_key=key)
    yield MaterializeResult()
