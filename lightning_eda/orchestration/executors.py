"""Which executor runs the steps: this machine's processes by default, Celery workers on a deployment.

The definitions are the same everywhere; ``LIGHTNING_EDA_EXECUTOR`` picks the executor when the code location loads.
``celery`` needs the ``[cluster]`` extra (dagster-celery) and a broker; see ``deploy/`` and the README's
"Outgrowing one machine".
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dagster import ExecutorDefinition

from lightning_eda.settings import ConfigError

EXECUTOR_VARIABLE = "LIGHTNING_EDA_EXECUTOR"
EXECUTORS = ("multiprocess", "celery")

VISIBILITY_TIMEOUT_SECONDS = 900
"""Seconds after which a task taken by a worker that never acknowledged it is delivered to another worker."""

#: What the Celery executor and every worker must agree on (``deploy/celery.yaml`` holds the same block for
#: ``dagster-celery worker start -y``). Broker and result backend come from the environment of each process.
CELERY_CONFIG = {
    "broker": {"env": "LIGHTNING_EDA_CELERY_BROKER"},
    "backend": {"env": "LIGHTNING_EDA_CELERY_BACKEND"},
    "config_source": {
        # one step at a time per worker process: an hour's decode is long, and a prefetched task would wait behind it
        "worker_prefetch_multiplier": 1,
        # a worker process that dies marks its task failed (WorkerLostError) instead of leaving it pending
        "task_track_started": True,
        "broker_connection_retry_on_startup": True,
        # A whole worker lost with a step in hand (its main process killed, its machine gone) never reports the
        # task; acknowledged only when done, the task stays in Redis's unacknowledged set and a live worker delivers
        # it again once the visibility timeout has passed (the sweep runs every 10 s), so the run finishes instead of
        # waiting forever. The timeout must exceed the longest step (a day's elbow sweep: about 2 minutes), or a
        # step still running is delivered twice. A pool process killed alone still fails its step (WorkerLostError;
        # task_reject_on_worker_lost stays off, so a step that kills its process is not redelivered forever), and
        # the run is retried from the failure.
        "task_acks_late": True,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
        },
        # a fresh pool process after this many steps bounds what a long-lived one accumulates (one reached 4.2 GB
        # RSS after 45 steps when the checks still read the whole store; BENCHMARKS.md, section 8); a new one costs
        # its imports, a few seconds per 8 steps
        "worker_max_tasks_per_child": 8,
    },
}


def executor_from_env(env: Mapping[str, str] | None = None) -> ExecutorDefinition | None:
    """The executor named by ``LIGHTNING_EDA_EXECUTOR``; None for ``multiprocess``, Dagster's own default."""
    env = os.environ if env is None else env
    name = env.get(EXECUTOR_VARIABLE, "").strip().lower() or "multiprocess"
    if name not in EXECUTORS:
        raise ConfigError(f"{EXECUTOR_VARIABLE}={name!r} is not an executor: use one of {', '.join(EXECUTORS)}")
    if name == "multiprocess":
        return None
    for variable in (CELERY_CONFIG["broker"]["env"], CELERY_CONFIG["backend"]["env"]):
        if not env.get(variable, "").strip():
            raise ConfigError(f"{EXECUTOR_VARIABLE}=celery needs {variable} (e.g. redis://127.0.0.1:6379/0)")
    try:
        from dagster_celery import celery_executor
    except ImportError as error:
        raise ConfigError(
            f"{EXECUTOR_VARIABLE}=celery needs dagster-celery: pip install 'lightning_eda[cluster]'"
        ) from error
    return celery_executor.configured(CELERY_CONFIG, name="celery")
