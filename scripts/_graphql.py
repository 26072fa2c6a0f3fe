"""The Dagster webserver's GraphQL API, as the UI calls it: launch a partition backfill, read its status."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
  }
}"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions }
    ... on PythonError { message }
  }
}"""


class GraphQL:
    """A client of one webserver; a query's GraphQL errors raise."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def launch_backfill(self, partitions: list[str], assets: tuple[str, ...]) -> str:
        """Backfill ``assets`` over ``partitions``; returns the backfill's id."""
        params = {
            "partitionNames": partitions,
            "assetSelection": [{"path": [a]} for a in assets],
            "fromFailure": False,
            "tags": [],
        }
        result = self(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launching the backfill failed: {result}")
        return result["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        return self(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
