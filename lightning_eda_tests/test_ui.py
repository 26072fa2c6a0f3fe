"""The Dagster UI, for real: `dagster dev` as a user starts it, its GraphQL API, a run launched through it, Chromium.

One `dagster dev` serves the whole module (a temporary DAGSTER_HOME and data folder, the local S3 server as the
archive). The expected assets, groups, checks, schedules, sensors and jobs are computed from
``lightning_eda.definitions.defs``, so the tests follow the definitions as they grow.

With ``UPDATE_SCREENSHOT=1`` the asset-graph screenshot is also written to ``screenshot/pipeline/asset_graph.png``
(the committed one); otherwise screenshots go to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest
import yaml

from ui_helpers import (
    CHROMEDRIVER,
    CHROMIUM,
    DAGSTER_YAML,
    PROJECT_ROOT,
    DagsterDev,
    chromium_driver,
    png_size,
    show_whole_graph,
    wait_for,
    wait_for_texts,
    wait_until_still,
)

pytestmark = pytest.mark.slow  # starts dagster dev and Chromium: about two minutes

BUCKET = "noaa-goes16"
PARTITION = "2018-07-02-04:00"
INGEST_JOB = "ingest_hour"
CLUSTER_JOB = "cluster_window"
GRANULES_2018 = (
    "OR_GLM-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231.nc",
    "OR_GLM-L2-LCFA_G16_s20181830433200_e20181830433400_c20181830433424.nc",
    "OR_GLM-L2-LCFA_G16_s20181830433400_e20181830434000_c20181830434029.nc",
)
FLASHES_2018 = 853  # 302 + 277 + 274
MIN_ASSETS = {
    "extract", "transform", "load", "preprocessor", "elbow_evaluator", "silhouette_evaluator", "kmeans_cluster",
    "cluster_map",
}  # fmt: skip
GRAPH_PAGE = "/asset-groups"  # "Global asset lineage": every group of every code location
GROUP_ID = "global@global:{}"  # how the graph names a group in its ?expanded= parameter
COMMITTED_SCREENSHOT = PROJECT_ROOT / "screenshot" / "pipeline" / "asset_graph.png"
RUN_TIMEOUT = 150.0
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

REPOSITORY_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on PythonError { message }
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        schedules { name }
        sensors { name }
        assetNodes {
          assetKey { path }
          groupName
          isPartitioned
          partitionDefinition { type description fmt }
          partitionKeyConnection(limit: 2, ascending: true) { results }
          partitionStats { numPartitions }
          assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
        }
      }
    }
  }
}
"""

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

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on PresetNotFoundError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status tags { key value } } ... on PythonError { message } }
}
"""

RUN_ERRORS = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { error { message } }
      }
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


# --- what the definitions say -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expected():
    """Assets (with group and partitions), checks, schedules, sensors and jobs, straight from the definitions."""
    from lightning_eda.definitions import defs

    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assets[key.to_user_string()] = {"group": node.group_name, "partitions_def": node.partitions_def}
    return {
        "assets": assets,
        "checks": {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys},
        "schedules": {s.name for s in repo.schedule_defs},
        "sensors": {s.name for s in repo.sensor_defs},
        "jobs": {job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")},
    }


# --- the server ---------------------------------------------------------------------------------------------------


def _instance_yaml() -> str:
    """The project's dagster.yaml (if any) with the first-visit dialog and telemetry switched off."""
    project_yaml = PROJECT_ROOT / "dagster.yaml"
    config = yaml.safe_load(project_yaml.read_text()) if project_yaml.is_file() else None
    config = dict(config or {})
    config.update(yaml.safe_load(DAGSTER_YAML))
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module")
def ui(s3, tmp_path_factory):  # noqa: F811 - s3 is the fixture imported above
    root = tmp_path_factory.mktemp("ui")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DAGSTER_", "GOES_", "LIGHTNING_EDA_"))}
    env.pop("PRODUCT", None)
    env.update(
        {
            "S3_BUCKET": BUCKET,
            "AWS_ENDPOINT_URL_S3": s3.url,
            "LIGHTNING_EDA_DATA_DIR": str(root / "data"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    server = DagsterDev(
        home=root / "dagster_home", env=env, log_path=root / "dagster_dev.log", instance_yaml=_instance_yaml()
    )
    try:
        server.start()
        server.wait_ready(timeout=120)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def repository(ui):
    data = ui.graphql(REPOSITORY_QUERY)["repositoriesOrError"]
    assert data["__typename"] == "RepositoryConnection", data
    assert len(data["nodes"]) == 1, [n["name"] for n in data["nodes"]]
    return data["nodes"][0]


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


def _run_errors(ui, run_id: str) -> str:
    try:
        logs = ui.graphql(RUN_ERRORS, {"runId": run_id})["logsForRun"]
    except Exception as exc:  # noqa: BLE001 - only for the failure message
        return f"<could not read the run's events: {exc}>"
    lines = []
    for event in logs.get("events", []):
        if event.get("error"):
            lines.append(f"{event['__typename']}: {event['error']['message']}")
        elif event.get("level") in ("ERROR", "CRITICAL", "WARNING"):
            lines.append(f"{event['__typename']} [{event.get('stepKey')}]: {event.get('message')}")
    return "\n".join(lines[-30:]) or "<no error events>"


@pytest.fixture(scope="module")
def ingest_run(ui, s3, real_granules, repository):  # noqa: F811
    """`ingest_hour` for 2018-07-02 04:00 UTC, launched through GraphQL as the launchpad does, run to its end."""
    names = {p.name: p for p in real_granules}
    missing = [name for name in GRANULES_2018 if name not in names]
    if missing:
        pytest.skip(f"real GLM granules not available: {missing} missing from {real_granules[0].parent}")
    for name in GRANULES_2018:
        s3.put_granule(BUCKET, names[name])
    tags = [{"key": "dagster/partition", "value": PARTITION}]
    return _launch_and_wait(ui, repository, INGEST_JOB, tags=tags)


def _launch_and_wait(ui, repository, job: str, *, tags=(), run_config=None) -> dict:
    """Launch a job through GraphQL as the launchpad does and wait for the run to end."""
    params = {
        "selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "jobName": job,
        },
        "executionMetadata": {"tags": list(tags)},
    }
    if run_config is not None:
        params["runConfigData"] = run_config
    started = time.monotonic()
    launched = ui.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        run = ui.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        return run if run["status"] in TERMINAL else None

    try:
        run = wait_for(finished, timeout=RUN_TIMEOUT, interval=1.0, what=f"run {run_id} to finish")
    except AssertionError as exc:
        ui.fail(f"{exc}\n--- run events ---\n{_run_errors(ui, run_id)}")
    run["runId"] = run_id
    run["seconds"] = time.monotonic() - started
    return run


@pytest.fixture(scope="module")
def cluster_run(ui, repository, ingest_run):
    """`cluster_window` on the ingested hour, launched through GraphQL with launchpad-style run config."""
    assert ingest_run["status"] == "SUCCESS"
    run_config = {
        "ops": {
            "preprocessor": {"config": {"window_start": "2018-07-02 04:00", "window_hours": 1}},
            "elbow_evaluator": {"config": {"ks": [1, 2, 3, 4, 5, 6], "n_init": 3}},
            "silhouette_evaluator": {"config": {"ks": [2, 3, 4, 5, 6], "n_init": 3}},
            "kmeans_cluster": {"config": {"k": "auto", "n_init": 3}},
        }
    }
    return _launch_and_wait(ui, repository, CLUSTER_JOB, run_config=run_config)


def test_ingest_run_launched_through_the_api_succeeds(ui, ingest_run):
    assert ingest_run["status"] == "SUCCESS", f"run ended {ingest_run['status']}:\n{_run_errors(ui, ingest_run['runId'])}"
    assert {"key": "dagster/partition", "value": PARTITION} in ingest_run["tags"]
    db = Path(ui.env["LIGHTNING_EDA_DATA_DIR"]) / "glm.duckdb"
    assert db.is_file(), f"no database at {db}"
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM glm_flash").fetchone()[0] == FLASHES_2018
        files = con.execute("SELECT source_file, status FROM glm_file ORDER BY 1").fetchall()
    assert files == [(name, "loaded") for name in GRANULES_2018]


def test_the_clustering_runs_from_the_ui_and_draws_its_plots(ui, cluster_run):
    assert cluster_run["status"] == "SUCCESS", f"run ended {cluster_run['status']}:\n{_run_errors(ui, cluster_run['runId'])}"
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


@pytest.fixture(scope="module")
def browser(ui, tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = f"Chromium UI tests need {', '.join(missing)} (apt-get install chromium chromium-driver; pip install selenium)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI installs them, so their absence is a failure there")
        pytest.skip(why)
    driver = chromium_driver(tmp_path_factory.mktemp("chromium-profile"))
    driver.get(ui.url + "/server_info")  # a first page, so the driver's start-up is not billed to a test
    try:
        yield driver
    finally:
        driver.quit()


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
