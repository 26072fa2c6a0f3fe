"""Fixtures of the UI tests: one `dagster dev` per module on a temporary instance, what the definitions say it
should show, the ingest and clustering runs launched through its GraphQL API, and headless Chromium."""

from __future__ import annotations

import os

import pytest
from ui_helpers import (
    BUCKET,
    CHROMEDRIVER,
    CHROMIUM,
    CLUSTER_JOB,
    GRANULES_2018,
    INGEST_JOB,
    PARTITION,
    REPOSITORY_QUERY,
    DagsterDev,
    chromium_driver,
    instance_yaml,
    launch_and_wait,
)


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


@pytest.fixture(scope="module")
def ui(s3, tmp_path_factory):
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
        home=root / "dagster_home", env=env, log_path=root / "dagster_dev.log", instance_yaml=instance_yaml()
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


@pytest.fixture(scope="module")
def ingest_run(ui, s3, real_granules, repository):
    """`ingest_hour` for 2018-07-02 04:00 UTC, launched through GraphQL as the launchpad does, run to its end."""
    names = {p.name: p for p in real_granules}
    missing = [name for name in GRANULES_2018 if name not in names]
    if missing:
        pytest.skip(f"real GLM granules not available: {missing} missing from {real_granules[0].parent}")
    for name in GRANULES_2018:
        s3.put_granule(BUCKET, names[name])
    tags = [{"key": "dagster/partition", "value": PARTITION}]
    return launch_and_wait(ui, repository, INGEST_JOB, tags=tags)


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
    return launch_and_wait(ui, repository, CLUSTER_JOB, run_config=run_config)


@pytest.fixture(scope="module")
def browser(ui, tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = (
            f"Chromium UI tests need {', '.join(missing)} "
            "(apt-get install chromium chromium-driver; pip install selenium)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI installs them, so their absence is a failure there")
        pytest.skip(why)
    driver = chromium_driver(tmp_path_factory.mktemp("chromium-profile"))
    driver.get(ui.url + "/server_info")  # a first page, so the driver's start-up is not billed to a test
    try:
        yield driver
    finally:
        driver.quit()
