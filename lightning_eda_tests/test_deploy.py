"""The deployment configuration (deploy/): the executor chosen by the environment, and files that match the code.

The deployment itself (PostgreSQL, Redis, Celery workers) is exercised by `make scale-test` (scripts/scale_test.py).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from pathlib import Path

import pytest
import yaml

from lightning_eda.orchestration.executors import CELERY_CONFIG, VISIBILITY_TIMEOUT_SECONDS, executor_from_env
from lightning_eda.settings import ConfigError

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CELERY_ENV = {
    "LIGHTNING_EDA_EXECUTOR": "celery",
    "LIGHTNING_EDA_CELERY_BROKER": "redis://127.0.0.1:6379/0",
    "LIGHTNING_EDA_CELERY_BACKEND": "redis://127.0.0.1:6379/1",
}


def test_workers_and_executor_share_one_celery_config():
    on_disk = yaml.safe_load((DEPLOY / "celery.yaml").read_text())
    assert on_disk["execution"]["config"] == CELERY_CONFIG


def test_a_lost_workers_step_is_delivered_again_and_a_killed_pool_process_fails_its_step():
    """Late acknowledgement keeps a lost worker's task in Redis until a live worker takes it (make scale-test kills
    a whole worker and measures it); rejection on worker loss stays off, so a step that kills its own process is
    not redelivered for ever. The timeout leaves room for the longest step (a day's elbow sweep, about 2 minutes)."""
    options = CELERY_CONFIG["config_source"]
    assert options["task_acks_late"] is True
    assert not options.get("task_reject_on_worker_lost", False)
    transport = options["broker_transport_options"]
    assert transport["visibility_timeout"] == VISIBILITY_TIMEOUT_SECONDS >= 5 * 120
    assert transport["unacked_restore_interval"] * transport["unacked_restore_throttle"] <= 10


def test_the_default_executor_is_dagsters_own():
    assert executor_from_env({}) is None
    assert executor_from_env({"LIGHTNING_EDA_EXECUTOR": "multiprocess"}) is None


@pytest.mark.parametrize(
    "env, message",
    [
        ({"LIGHTNING_EDA_EXECUTOR": "spark"}, "is not an executor: use one of multiprocess, celery"),
        ({"LIGHTNING_EDA_EXECUTOR": "celery"}, "needs LIGHTNING_EDA_CELERY_BROKER"),
        ({**CELERY_ENV, "LIGHTNING_EDA_CELERY_BACKEND": " "}, "needs LIGHTNING_EDA_CELERY_BACKEND"),
    ],
)
def test_a_bad_executor_setting_is_a_clear_error(env, message):
    with pytest.raises(ConfigError, match=message):
        executor_from_env(env)


def test_celery_executor_from_the_environment():
    if importlib.util.find_spec("dagster_celery") is None:
        # the default install has no [cluster] extra: the error says what to install
        with pytest.raises(ConfigError, match=r"pip install 'lightning_eda\[cluster\]'"):
            executor_from_env(CELERY_ENV)
        return
    executor = executor_from_env(CELERY_ENV)
    assert executor.name == "celery"


def test_the_deployment_instance_config_is_valid(monkeypatch):
    # the values come from the environment on each machine (README, "Outgrowing one machine")
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USERNAME": "dagster",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": "dagster",
    }.items():
        monkeypatch.setenv(name, value)
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema

    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert set(config["storage"]) == {"postgres"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 2
    assert config["run_retries"]["enabled"] is True
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors


def _decode_in_daemon(files, folder, results):
    from lightning_eda.ingest.decoding import transform_granules
    from lightning_eda.process_pool import may_start_processes

    records = transform_granules(files, folder, None, workers=2)
    results.put((may_start_processes(), [(r.source_file, r.status) for r in records]))


def test_a_daemonic_process_decodes_in_process(real_granules, tmp_path):
    # A Celery prefork worker runs each step in a daemonic process, which may not start a pool of decoders.
    files = list(real_granules) * 2  # enough files for a pool of two
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_decode_in_daemon, args=(files, tmp_path, results), daemon=True)
    process.start()
    may_start, records = results.get(timeout=300)
    process.join(60)
    assert process.exitcode == 0
    assert may_start is False
    assert [status for _, status in records] == ["loaded"] * len(files)
