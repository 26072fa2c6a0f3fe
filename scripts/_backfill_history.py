"""What a backfill did, read from the Dagster instance: its runs, each step's worker and times, its failures.

A backfill here is either Dagster's own (launched as the UI does, its runs tagged ``dagster/backfill``) or a terminal's
(``lightning-eda backfill --deployment``, its runs tagged ``lightning_eda/launch``): a :class:`Launch` names the tag.
"""

from __future__ import annotations

import time
import urllib.error
from dataclasses import dataclass

from _graphql import GraphQL
from _services import wait_for
from dagster import DagsterEventType, RunsFilter


@dataclass(frozen=True)
class Launch:
    """The runs launched together, by the tag they carry (retries keep it)."""

    tag: str
    id: str

    @property
    def runs_filter(self) -> RunsFilter:
        return RunsFilter(tags={self.tag: self.id})


BACKFILL_TAG = "dagster/backfill"  # what Dagster tags a backfill's runs with


def dagster_backfill(backfill_id: str) -> Launch:
    return Launch(BACKFILL_TAG, backfill_id)


SETTLED = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")
"""A backfill's statuses once it launches nothing more."""


def wait_for_backfill(graphql: GraphQL, instance, backfill_id: str, timeout: float, faults) -> str:
    """Wait until Dagster's backfill settles and its runs (retries included) have finished; return its status."""
    status = "?"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = graphql.backfill_status(backfill_id)
        except (urllib.error.URLError, RuntimeError, OSError) as error:  # the webserver during the restart
            status = f"unreadable ({error})"
        if status in SETTLED:
            break
        time.sleep(2)
    stop_faults(faults)
    # runs still being retried keep the backfill's partitions open a little after its own status settles
    wait_for_runs(instance, dagster_backfill(backfill_id))
    return status


def stop_faults(faults) -> None:
    if faults:
        faults.stopping.set()
        faults.join(30)


def wait_for_runs(instance, launch: Launch) -> None:
    wait_for(
        "the backfill's runs to finish",
        lambda: all(r.is_finished for r in instance.get_runs(launch.runs_filter)),
        300,
        every=2,
    )


def step_history(instance, launch: Launch) -> dict:
    """The launch's runs and, per step execution, its worker and its start and end times."""
    runs = instance.get_runs(launch.runs_filter)
    steps, failures = [], []
    for run in runs:
        run_steps, run_failures = run_history(instance, run)
        steps += run_steps
        failures += run_failures
    return {"runs": runs, "steps": steps, "failures": failures}


def run_partitions(run) -> str | None:
    """The run's partition, or its batch's range (``first..last``) when a backfill gave it several."""
    start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    if start and end:
        return start if start == end else f"{start}..{end}"
    return run.tags.get("dagster/partition")


def run_history(instance, run) -> tuple[list[dict], list[tuple]]:
    """One run's step executions (``end`` None for a step begun on a worker and not ended) and its failures."""
    partition = run_partitions(run)
    steps, failures = [], []
    started: dict[str, tuple[str, float]] = {}
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ENGINE_EVENT and entry.step_key and event.engine_event_data:
            worker = event.engine_event_data.metadata.get("Celery worker")
            if worker is not None:
                started[entry.step_key] = (str(worker.value), entry.timestamp)
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            worker, start = started.pop(entry.step_key, ("?", entry.timestamp))
            steps.append(
                {
                    "run": run.run_id,
                    "step": entry.step_key,
                    "worker": worker,
                    "start": start,
                    "end": entry.timestamp,
                    "ok": event.event_type == DagsterEventType.STEP_SUCCESS,
                    "partition": partition,
                }
            )
        elif event.event_type == DagsterEventType.RUN_FAILURE:
            error = getattr(event.event_specific_data, "error", None)
            lines = error.to_string().splitlines() if error is not None else []
            named = [line.strip() for line in lines if "Error" in line and ":" in line]
            failures.append((run.run_id, partition, named[-1] if named else entry.message))
    for step_key, (worker, start) in started.items():  # began on a worker, not ended (yet, or its process died)
        steps.append(
            {
                "run": run.run_id,
                "step": step_key,
                "worker": worker,
                "start": start,
                "end": None,
                "ok": False,
                "partition": partition,
            }
        )
    return steps, failures


def overlapping_workers(steps: list[dict]) -> tuple[dict, dict] | None:
    """Two ended steps that ran on different workers at overlapping times, if any."""
    done = [s for s in steps if s["end"] is not None and s["worker"] != "?"]
    for a in done:
        for b in done:
            if a["worker"] < b["worker"] and a["start"] < b["end"] and b["start"] < a["end"]:
                return a, b
    return None
