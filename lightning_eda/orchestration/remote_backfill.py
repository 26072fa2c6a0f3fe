"""A backfill launched on a running deployment from a terminal: batched runs straight into its run queue.

Dagster's own backfill (the UI's "Launch backfill") waits for the daemon's backfill loop, fixed at 30 s in Dagster
1.13, before its first run is queued: on a 24-hour backfill that is a third of the deployment's time (BENCHMARKS.md
§11). ``lightning-eda backfill --deployment URL`` asks the webserver (its GraphQL API, through Dagster's own client)
for one run of ``ingest_hour`` per batch of ``LIGHTNING_EDA_HOURS_PER_RUN`` consecutive hours, over the batch's
partition range, as a backfill's run would be; the run queue starts them within its dequeue interval. Each run carries
:data:`LAUNCH_TAG` so that a launch's runs, their retries (the daemon's run retries keep a run's tags) included, are
found together: here to wait for them, in the UI by filtering the runs on the tag. What a Dagster backfill adds and
this does not: a backfill page, and re-launching its failed partitions from it; a failed batch here is launched again
with the same command (committed hours are skipped by the runs themselves).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from gql import Client, gql
from gql.transport.exceptions import TransportError
from gql.transport.requests import RequestsHTTPTransport
from requests.exceptions import RequestException

from lightning_eda.orchestration.constants import INGEST_JOB
from lightning_eda.orchestration.partitions import hour_for_partition_key, partition_key_for_hour

LAUNCH_TAG = "lightning_eda/launch"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
WILL_RETRY_TAG = "dagster/will_retry"  # set on a failed run when the instance's run retries will run it again
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")

RUNS_QUERY = gql(
    """
query LaunchRuns($tag: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $tag, value: $value}]}) {
    __typename
    ... on Runs { results { runId status creationTime tags { key value } } }
    ... on PythonError { message }
  }
}"""
)


class LaunchError(Exception):
    """The webserver could not be reached or refused a run; the message is the innermost cause's, on one line."""


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


JOB_LOCATIONS_QUERY = gql(
    """
query JobLocations {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
    ... on PythonError { message }
  }
}"""
)


@dataclass(frozen=True)
class Batch:
    """Consecutive hours that one run ingests."""

    first: datetime
    last: datetime

    @property
    def start_key(self) -> str:
        return partition_key_for_hour(self.first)

    @property
    def end_key(self) -> str:
        return partition_key_for_hour(self.last)

    def __str__(self) -> str:
        return self.start_key if self.first == self.last else f"{self.start_key}..{self.end_key}"


def hour_batches(hours: Sequence[datetime], per_run: int) -> list[Batch]:
    """The hours in runs of at most ``per_run`` consecutive hours (a gap in ``hours`` starts a new batch)."""
    batches: list[Batch] = []
    first = previous = None
    count = 0
    for hour in sorted(hours):
        if first is not None and (hour - previous != timedelta(hours=1) or count == per_run):
            batches.append(Batch(first, previous))
            first, count = None, 0
        if first is None:
            first = hour
        previous, count = hour, count + 1
    if first is not None:
        batches.append(Batch(first, previous))
    return batches


@dataclass(frozen=True)
class BatchState:
    """A batch's newest run (a retry replaces its parent) and whether the batch is settled."""

    batch: str
    run_id: str
    status: str
    settled: bool


class Webserver:
    """A running deployment's webserver (``http://host:3000``, a path prefix allowed), spoken to over GraphQL."""

    def __init__(self, url: str, timeout: int = 60) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if not parts.hostname:
            raise ValueError(f"not a webserver address: {url!r} (e.g. http://localhost:3000)")
        self.url = url
        self._client = DagsterGraphQLClient(
            parts.hostname,
            port_number=parts.port,
            use_https=parts.scheme == "https",
            timeout=timeout,
            path_prefix=parts.path.rstrip("/"),
        )
        endpoint = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/graphql"
        self._queries = Client(transport=RequestsHTTPTransport(url=endpoint, timeout=timeout))

    def job_location(self) -> tuple[str, str]:
        """The code location and repository serving ``ingest_hour`` (asked once, not before every run)."""
        try:
            result = self._queries.execute(JOB_LOCATIONS_QUERY)["repositoriesOrError"]
        except (TransportError, RequestException) as exc:
            raise LaunchError(_root_cause(exc)) from exc
        if result["__typename"] != "RepositoryConnection":
            raise LaunchError(f"the webserver could not list its code locations: {result.get('message', result)}")
        found = [
            (node["location"]["name"], node["name"])
            for node in result["nodes"]
            if any(job["name"] == INGEST_JOB for job in node["jobs"])
        ]
        if len(found) != 1:
            where = "no code location" if not found else f"{len(found)} code locations"
            raise LaunchError(f"{where} with the job {INGEST_JOB}: is this lightning_eda's webserver?")
        return found[0]

    def launch(self, batches: Sequence[Batch], launch_id: str | None = None) -> tuple[str, list[str]]:
        """Queue one ``ingest_hour`` run per batch; returns the launch's id and the runs' ids."""
        launch_id = launch_id or uuid.uuid4().hex[:12]
        location, repository = self.job_location()
        run_ids = []
        for batch in batches:
            tags = {RANGE_START_TAG: batch.start_key, RANGE_END_TAG: batch.end_key, LAUNCH_TAG: launch_id}
            try:
                run_ids.append(
                    self._client.submit_job_execution(
                        INGEST_JOB, repository_location_name=location, repository_name=repository, tags=tags
                    )
                )
            except DagsterGraphQLClientError as exc:
                queued = f" ({len(run_ids)} runs queued before it, tagged {LAUNCH_TAG}={launch_id})" if run_ids else ""
                raise LaunchError(f"{batch}: {_root_cause(exc)}{queued}") from exc
        return launch_id, run_ids

    def batch_states(self, launch_id: str) -> list[BatchState]:
        """Each batch of the launch by its newest run: settled when that run finished and will not be retried."""
        result = self._queries.execute(RUNS_QUERY, variable_values={"tag": LAUNCH_TAG, "value": launch_id})
        runs = result["runsOrError"]
        if runs["__typename"] != "Runs":
            raise RuntimeError(f"the webserver could not list the launch's runs: {runs.get('message', runs)}")
        newest: dict[str, dict] = {}
        for run in runs["results"]:
            tags = {tag["key"]: tag["value"] for tag in run["tags"]}
            batch = str(
                Batch(hour_for_partition_key(tags[RANGE_START_TAG]), hour_for_partition_key(tags[RANGE_END_TAG]))
            )
            run["will_retry"] = tags.get(WILL_RETRY_TAG) == "true"
            if batch not in newest or run["creationTime"] > newest[batch]["creationTime"]:
                newest[batch] = run
        return [
            BatchState(
                batch,
                run["runId"],
                run["status"],
                run["status"] in FINISHED and not (run["status"] == "FAILURE" and run["will_retry"]),
            )
            for batch, run in sorted(newest.items())
        ]

    def wait(
        self,
        launch_id: str,
        n_batches: int,
        *,
        timeout: float | None = None,
        every: float = 2.0,
        progress: Callable[[list[BatchState]], None] | None = None,
    ) -> list[BatchState]:
        """Poll until every batch of the launch has settled; returns the final states (TimeoutError past
        ``timeout``). A failed run is taken as final only when seen so twice, its retry tag having had time to be
        set; an unreachable webserver is asked again."""
        deadline = None if timeout is None else time.monotonic() + timeout
        failed_before: set[str] = set()
        while True:
            try:
                states = self.batch_states(launch_id)
            except (TransportError, RequestException):  # the webserver restarting: the runs go on without it
                if deadline is not None and time.monotonic() > deadline:
                    raise
                time.sleep(every)
                continue
            if progress:
                progress(states)
            failed_now = {s.run_id for s in states if s.settled and s.status == "FAILURE"}
            if len(states) >= n_batches and all(s.settled for s in states) and failed_now <= failed_before:
                return states
            failed_before = failed_now
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the launch's runs had not all finished after {timeout:.0f} s")
            time.sleep(every)
