"""The Dagster UI, for real: `dagster dev` as a user starts it, its GraphQL API, a run launched through it, Chromium.

One `dagster dev` serves the whole module (a temporary DAGSTER_HOME and data folder, the local S3 server as the
archive). The expected assets, groups, checks, schedules, sensors and jobs are computed from
``lightning_eda.definitions.defs``, so the tests follow the definitions as they grow.

With ``UPDATE_SCREENSHOT=1`` the asset-graph screenshot is also written to ``screenshot/pipeline/asset_graph.png``
(the committed one); otherwise screenshots go to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest
from ui_helpers import (
    BUCKET,
    GRANULES_2018,
    INGEST_JOB,
    PARTITION,
    PROJECT_ROOT,
    png_size,
    run_errors,
    show_whole_graph,
    wait_for_texts,
    wait_until_still,
)

from lightning_eda.testing import lcfa_factory

pytestmark = pytest.mark.slow  # starts dagster dev and Chromium: about two minutes

FLASHES_2018 = 853  # 302 + 277 + 274
MIN_ASSETS = {
    "extract", "transform", "load", "preprocessor", "elbow_evaluator", "silhouette_evaluator", "kmeans_cluster",
    "cluster_map",
}  # fmt: skip
GRAPH_PAGE = "/asset-groups"  # "Global asset lineage": every group of every code location
GROUP_ID = "global@global:{}"  # how the graph names a group in its ?expanded= parameter
COMMITTED_SCREENSHOT = PROJECT_ROOT / "screenshot" / "pipeline" / "asset_graph.png"

LATEST_UNPARTITIONED = """
query Latest {
  assetNodes(loadMaterializations: true) {
    assetKey { path }
    assetMaterializations(limit: 1) {
      runId
      metadataEntries { label ... on MarkdownMetadataEntry { mdStr } }
    }
  }
}
"""

LATEST_MATERIALIZATION = """
query Latest($partitions: [String!]) {
  assetNodes(loadMaterializations: true) {
    assetKey { path }
    latestMaterializationByPartition(partitions: $partitions) {
      runId
      partition
      metadataEntries { label ... on IntMetadataEntry { intValue } }
    }
  }
}
"""


# --- what the UI shows --------------------------------------------------------------------------------------------


def test_code_location_is_the_projects(repository):
    # workspace.yaml / pyproject.toml name the location; `dagster dev` without arguments loads it like `make dev`
    assert repository["location"]["name"] == "lightning_eda"


def test_every_asset_is_shown_in_its_group(repository, expected):
    shown = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in repository["assetNodes"]}
    want = {key: spec["group"] for key, spec in expected["assets"].items()}
    assert MIN_ASSETS <= set(want), f"definitions lost assets: {sorted(MIN_ASSETS - set(want))}"
    assert shown == want


def test_every_check_schedule_sensor_and_job_is_shown(repository, expected):
    checks = {
        ("/".join(n["assetKey"]["path"]), check["name"])
        for n in repository["assetNodes"]
        if n["assetChecksOrError"]["__typename"] == "AssetChecks"
        for check in n["assetChecksOrError"]["checks"]
    }
    assert checks == expected["checks"]
    assert {s["name"] for s in repository["schedules"]} == expected["schedules"]
    assert {s["name"] for s in repository["sensors"]} == expected["sensors"]
    jobs = {j["name"] for j in repository["jobs"] if not j["name"].startswith("__")}
    assert jobs == expected["jobs"]
    assert INGEST_JOB in jobs


SCHEDULE_START = ("schedule", "start", "hourly_ingest", "-w", "workspace.yaml")
"""The README's command to turn the schedule on: the workspace's code location, the one the daemon runs."""


def test_the_readmes_schedule_command_turns_on_what_the_daemon_runs(ui, repository):
    """`dagster schedule start hourly_ingest -w workspace.yaml` beside a running `dagster dev` (same DAGSTER_HOME)
    makes the UI's schedule RUNNING. With ``-m lightning_eda.definitions`` the CLI records the state for a code
    location of its own name, so the UI's (and the daemon's) schedule stays stopped: the README no longer says that."""
    assert ui.schedule_status(repository, "hourly_ingest") == "STOPPED"
    wrong = ui.dagster_cli("schedule", "start", "hourly_ingest", "-m", "lightning_eda.definitions")
    assert ui.schedule_status(repository, "hourly_ingest") == "STOPPED", wrong.stdout + wrong.stderr
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f"dagster {' '.join(SCHEDULE_START)}" in readme
    started = ui.dagster_cli(*SCHEDULE_START)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert ui.schedule_status(repository, "hourly_ingest") == "RUNNING"
    finally:  # no tick may launch runs into the module's other tests
        stopped = ui.dagster_cli("schedule", "stop", "hourly_ingest", "-w", "workspace.yaml")
        ui.dagster_cli("schedule", "stop", "hourly_ingest", "-m", "lightning_eda.definitions")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert ui.schedule_status(repository, "hourly_ingest") == "STOPPED"


def test_partitioned_assets_show_hourly_partitions(repository, expected):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in repository["assetNodes"]}
    partitioned = {key for key, spec in expected["assets"].items() if spec["partitions_def"] is not None}
    assert {"extract", "transform", "load"} <= partitioned
    for key, spec in expected["assets"].items():
        node = nodes[key]
        partitions_def = spec["partitions_def"]
        assert node["isPartitioned"] == (partitions_def is not None), key
        if partitions_def is None:
            continue
        definition = node["partitionDefinition"]
        assert definition["type"] == "TIME_WINDOW", key
        assert definition["description"] == str(partitions_def), key
        assert definition["description"].startswith("Hourly"), (key, definition)
        assert definition["fmt"] == partitions_def.fmt, key
        first_two = node["partitionKeyConnection"]["results"]
        first = partitions_def.get_first_partition_key()
        assert first_two == [first, partitions_def.get_next_partition_key(first)], key
        start, then = (datetime.strptime(k, definition["fmt"]) for k in first_two)
        assert then - start == timedelta(hours=1), (key, first_two)
        assert partitions_def.has_partition_key(PARTITION), key
        # counted at two slightly different moments: an hour may tick over in between
        assert abs(node["partitionStats"]["numPartitions"] - partitions_def.get_num_partitions()) <= 1, key


# --- a run launched through the API -------------------------------------------------------------------------------


def test_ingest_run_launched_through_the_api_succeeds(ui, ingest_run):
    assert ingest_run["status"] == "SUCCESS", (
        f"run ended {ingest_run['status']}:\n{run_errors(ui, ingest_run['runId'])}"
    )
    assert {"key": "dagster/partition", "value": PARTITION} in ingest_run["tags"]
    db = Path(ui.env["LIGHTNING_EDA_DATA_DIR"]) / "glm.duckdb"
    assert db.is_file(), f"no database at {db}"
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM glm_flash").fetchone()[0] == FLASHES_2018
        files = con.execute("SELECT source_file, status FROM glm_file ORDER BY 1").fetchall()
    assert files == [(name, "loaded") for name in GRANULES_2018]


def test_the_clustering_runs_from_the_ui_and_draws_its_plots(ui, cluster_run):
    assert cluster_run["status"] == "SUCCESS", (
        f"run ended {cluster_run['status']}:\n{run_errors(ui, cluster_run['runId'])}"
    )
    data_dir = Path(ui.env["LIGHTNING_EDA_DATA_DIR"])
    for name in ("cluster_map.png", "elbow.png", "silhouette.png"):
        assert (data_dir / "plots" / name).read_bytes().startswith(b"\x89PNG"), name
    with duckdb.connect(str(data_dir / "glm.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM flash_cluster").fetchone()[0] == FLASHES_2018
    nodes = ui.graphql(LATEST_UNPARTITIONED)["assetNodes"]
    latest = {"/".join(n["assetKey"]["path"]): n["assetMaterializations"] for n in nodes}
    for key, plot in (("elbow_evaluator", "plot"), ("silhouette_evaluator", "plot"), ("cluster_map", "map")):
        (event,) = latest[key]
        assert event["runId"] == cluster_run["runId"], key
        markdown = {e["label"]: e.get("mdStr") for e in event["metadataEntries"]}[plot]
        assert markdown.startswith("![") and "data:image/png;base64," in markdown, key


def test_ui_reports_the_materialized_partition(ui, ingest_run):
    nodes = ui.graphql(LATEST_MATERIALIZATION, {"partitions": [PARTITION]})["assetNodes"]
    latest = {"/".join(n["assetKey"]["path"]): n["latestMaterializationByPartition"] for n in nodes}
    for key in ("extract", "transform", "load"):
        (event,) = latest[key]
        assert event is not None, f"{key} shows no materialization for {PARTITION}"
        assert event["runId"] == ingest_run["runId"] and event["partition"] == PARTITION
    metadata = {entry["label"]: entry.get("intValue") for entry in latest["load"][0]["metadataEntries"]}
    assert metadata.get("flashes") == FLASHES_2018, metadata


# --- Chromium -----------------------------------------------------------------------------------------------------


def _save_screenshot(driver, tmp_path: Path, name: str, committed: Path | None = None) -> Path:
    png = driver.get_screenshot_as_png()
    assert png_size(png) == (1600, 1000)
    assert len(png) > 30_000, f"screenshot is only {len(png)} bytes: a blank page?"
    path = tmp_path / name
    path.write_bytes(png)
    if committed is not None and os.environ.get("UPDATE_SCREENSHOT") == "1":
        committed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, committed)
    return path


def test_asset_graph_page_shows_every_group_and_asset(ui, browser, expected, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    groups = sorted({spec["group"] for spec in expected["assets"].values()})
    # groups start collapsed on this page; ?expanded= opens them all (the "Expand all groups" of its menu)
    browser.get(ui.url + GRAPH_PAGE + "?expanded=" + quote(",".join(GROUP_ID.format(g) for g in groups)))
    wait_for_texts(browser, groups, timeout=60)
    try:
        wait_for_texts(browser, expected["assets"], timeout=20)
    except AssertionError:  # a Dagster whose group ids differ: its keyboard shortcut expands every group
        ActionChains(browser).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
        wait_for_texts(browser, expected["assets"], timeout=20)
    show_whole_graph(browser)
    wait_until_still(browser)  # the graph's fit-to-screen animation
    wait_for_texts(browser, [*groups, *expected["assets"]], timeout=10)
    _save_screenshot(browser, tmp_path, "asset_graph.png", COMMITTED_SCREENSHOT)


def test_materialized_asset_page(ui, browser, ingest_run, tmp_path):
    assert ingest_run["status"] == "SUCCESS"
    browser.get(f"{ui.url}/assets/load?partition={PARTITION}")
    wait_for_texts(browser, ["load", PARTITION, str(FLASHES_2018)], timeout=60)
    wait_until_still(browser)
    _save_screenshot(browser, tmp_path, "load_asset.png")


# --- a backfill from a terminal ---------------------------------------------------------------------------------
RUNS_BY_TAG = """
query Runs($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    ... on Runs { results { runId status jobName tags { key value } } }
  }
}
"""


def test_a_terminal_backfill_on_the_deployment_queues_batched_runs(ui, s3, tmp_path):
    """Last in the module: its hours become the assets' latest materializations, which the pages above show.

    `lightning-eda backfill --deployment URL` queues one `ingest_hour` run per batch of hours (here two hours in
    one run) through the webserver, waits for it, and each hour shows as its own materialization."""
    hours = [datetime(2018, 7, 2, 6), datetime(2018, 7, 2, 7)]
    for hour in hours:
        for second in (0, 20):
            start = hour + timedelta(minutes=10, seconds=second)
            name = lcfa_factory.lcfa_name("G16", start)
            s3.put_granule(BUCKET, lcfa_factory.write_lcfa(tmp_path / name, start=start, platform="G16"))
    command = [str(Path(sys.executable).with_name("lightning-eda")), "backfill", "--deployment", ui.url]
    command += ["--start", "2018-07-02T06", "--end", "2018-07-02T07"]
    env = {**ui.env, "DAGSTER_HOME": str(ui.home), "LIGHTNING_EDA_HOURS_PER_RUN": "2"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    launch_id = re.search(r"lightning_eda/launch=(\w+)", done.stdout).group(1)
    (run,) = ui.graphql(RUNS_BY_TAG, {"key": "lightning_eda/launch", "value": launch_id})["runsOrError"]["results"]
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert (run["jobName"], run["status"]) == (INGEST_JOB, "SUCCESS"), run_errors(ui, run["runId"])
    partitions = [hour.strftime("%Y-%m-%d-%H:%M") for hour in hours]
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == tuple(partitions)
    nodes = ui.graphql(LATEST_MATERIALIZATION, {"partitions": partitions})["assetNodes"]
    (load,) = [n["latestMaterializationByPartition"] for n in nodes if n["assetKey"]["path"] == ["load"]]
    assert [(event["partition"], event["runId"]) for event in load] == [(p, run["runId"]) for p in partitions]
    flashes = [{e["label"]: e.get("intValue") for e in event["metadataEntries"]}["flashes"] for event in load]
    assert flashes == [2 * len(lcfa_factory.sample_tables()["flashes"]["flash_id"])] * 2
