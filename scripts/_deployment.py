"""The scale test's deployment: PostgreSQL, Redis, the Celery workers, the Dagster webserver and daemon, stopped
together.

The instance is ``deploy/dagster.yaml`` (run storage in PostgreSQL, a QueuedRunCoordinator) with its run limit set to
``max_runs``; the workers run ``deploy/celery.yaml``, one process each, so that a killed pool process fails one step,
with its Redis visibility timeout set to ``visibility_timeout`` (a lost worker's step is delivered again after it: the
deployment's 900 s would make the test wait a quarter of an hour).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from contextlib import ExitStack
from pathlib import Path

import yaml
from _graphql import GraphQL
from _proctree import children, tree_cpu_seconds
from _services import BIN, PROJECT, Postgres, Service, free_port, wait_for


class Deployment:
    """PostgreSQL, Redis, the Celery workers, the webserver and the daemon, stopped together."""

    def __init__(
        self,
        root: Path,
        n_workers: int,
        bucket: str,
        s3_url: str,
        data_dir: Path,
        max_runs: int,
        visibility_timeout: int,
        hours_per_run: int,
    ) -> None:
        self.root = root
        self.stack = ExitStack()
        self.postgres = Postgres(root)
        self.redis_port = free_port()
        self.home = root / "dagster_home"
        self.data_dir = data_dir
        self.web_port = free_port()
        self.graphql = GraphQL(f"http://127.0.0.1:{self.web_port}")
        self.n_workers = n_workers
        self.max_runs = max_runs
        self.workers: list[Service] = []
        self.visibility_timeout = visibility_timeout
        self.celery_yaml = root / "celery.yaml"
        broker = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "LIGHTNING_EDA_EXECUTOR": "celery",
            "LIGHTNING_EDA_CELERY_BROKER": broker,
            "LIGHTNING_EDA_CELERY_BACKEND": f"redis://127.0.0.1:{self.redis_port}/1",
            "LIGHTNING_EDA_DATA_DIR": str(data_dir),
            # the backfill's batches (BackfillPolicy.multi_run): read where the definitions load, the code servers
            "LIGHTNING_EDA_HOURS_PER_RUN": str(hours_per_run),
            "S3_BUCKET": bucket,
            "AWS_ENDPOINT_URL_S3": s3_url,
            "PYTHONUNBUFFERED": "1",
            # dagster-celery starts `celery` from PATH: the venv's, as an activated venv would
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.postgres.env,
        }

    def start(self) -> Deployment:
        self.stack.callback(self.postgres.stop)
        self.postgres.start()
        print(f"started PostgreSQL ({self.postgres.version()}) on 127.0.0.1:{self.postgres.port}")
        redis = self._service(
            "redis",
            [
                shutil.which("redis-server"),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
        )
        wait_for("Redis", lambda: "Ready to accept connections" in redis.output(), 30)
        version = subprocess.run([shutil.which("redis-server"), "--version"], capture_output=True, text=True).stdout
        print(f"started Redis ({version.split()[2]}) on 127.0.0.1:{self.redis_port}")
        self.home.mkdir()
        instance_yaml = (PROJECT / "deploy" / "dagster.yaml").read_text()
        limit = "max_concurrent_runs: 4"
        assert limit in instance_yaml, "deploy/dagster.yaml no longer sets max_concurrent_runs: 4"
        (self.home / "dagster.yaml").write_text(instance_yaml.replace(limit, f"max_concurrent_runs: {self.max_runs}"))
        celery = yaml.safe_load((PROJECT / "deploy" / "celery.yaml").read_text())
        options = celery["execution"]["config"]["config_source"]["broker_transport_options"]
        options["visibility_timeout"] = self.visibility_timeout
        self.celery_yaml.write_text(yaml.safe_dump(celery))
        for i in range(1, self.n_workers + 1):
            self.workers.append(self._worker(f"worker{i}"))
        for worker in self.workers:
            wait_for(f"Celery {worker.name}", lambda w=worker: " ready." in w.output() or not w.alive(), 120)
            if not worker.alive():
                raise RuntimeError(f"Celery {worker.name} exited:\n{worker.output()[-3000:]}")
        names = ", ".join(f"{w.name}@{socket.gethostname()}" for w in self.workers)
        print(f"started {len(self.workers)} Celery workers ({names}), one process each")
        self.daemon = self._service("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        self.web = self._service(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.web_port), "-w", "workspace.yaml"],
        )
        wait_for("the Dagster webserver", self.graphql.up, 180)
        print(f"started the Dagster webserver on {self.graphql.url} and the daemon (instance in PostgreSQL)")
        return self

    def _worker(self, name: str, log_name: str | None = None) -> Service:
        command = [
            str(BIN / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "dagster_celery.app",
            "-y",
            str(self.celery_yaml),
            "-n",
            name,
            "--",
            "--concurrency",
            "1",
            "--pool",
            "prefork",
        ]
        return self._service(name, command, log_name)

    def kill_worker(self, name: str) -> None:
        """SIGKILL a whole worker at once, as a lost machine: its main process, its pool process, its launcher."""
        worker = next(w for w in self.workers if w.name == name)
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(30)

    def restart_worker(self, name: str) -> None:
        """Start a killed worker again under its name, as a supervisor (systemd, Kubernetes) would."""
        index = next(i for i, w in enumerate(self.workers) if w.name == name)
        self.workers[index] = self._worker(name, f"{name}-restarted")
        wait_for(f"Celery {name} to restart", lambda: " ready." in self.workers[index].output(), 120)

    def _service(self, name: str, cmd: list[str], log_name: str | None = None) -> Service:
        service = Service(name, cmd, self.root / f"{log_name or name}.log", self.env).start()
        self.stack.callback(service.stop)
        return service

    def stop(self) -> None:
        self.stack.close()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time so far of each part of the deployment."""
        figures = {
            "Celery workers": sum(tree_cpu_seconds(w.proc.pid) for w in self.workers),
            "daemon, its code server and the run processes": tree_cpu_seconds(self.daemon.proc.pid),
            "webserver and its code server": tree_cpu_seconds(self.web.proc.pid),
        }
        try:
            figures["PostgreSQL"] = tree_cpu_seconds(
                int((self.postgres.data / "postmaster.pid").read_text().split()[0])
            )
        except (OSError, ValueError, IndexError):
            pass
        return figures

    def worker_pool_process(self, name: str) -> int | None:
        """The pool process of the Celery worker ``name`` (where its steps run)."""
        worker = next(w for w in self.workers if w.name == name)
        # dagster-celery → celery (the worker's main process) → its pool process
        for main_process in children(worker.proc.pid):
            pool = children(main_process)
            if pool:
                return pool[0]
        return None
