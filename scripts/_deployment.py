"""The scale test's deployment: PostgreSQL, Redis, the Celery workers, the Dagster webserver and daemon, stopped
together.

The instance is ``deploy/dagster.yaml`` (run storage in PostgreSQL, a QueuedRunCoordinator) with its run limit set to
``max_runs``; the workers run ``deploy/celery.yaml``, one process each, so that a killed pool process fails one step.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from contextlib import ExitStack
from pathlib import Path

from _graphql import GraphQL
from _proctree import children, tree_cpu_seconds
from _services import BIN, PROJECT, Postgres, Service, free_port, wait_for


class Deployment:
    """PostgreSQL, Redis, the Celery workers, the webserver and the daemon, stopped together."""

    def __init__(self, root: Path, n_workers: int, bucket: str, s3_url: str, data_dir: Path, max_runs: int) -> None:
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
        broker = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "LIGHTNING_EDA_EXECUTOR": "celery",
            "LIGHTNING_EDA_CELERY_BROKER": broker,
            "LIGHTNING_EDA_CELERY_BACKEND": f"redis://127.0.0.1:{self.redis_port}/1",
            "LIGHTNING_EDA_DATA_DIR": str(data_dir),
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
        for i in range(1, self.n_workers + 1):
            self.workers.append(
                self._service(
                    f"worker{i}",
                    [
                        str(BIN / "dagster-celery"),
                        "worker",
                        "start",
                        "-A",
                        "dagster_celery.app",
                        "-y",
                        str(PROJECT / "deploy" / "celery.yaml"),
                        "-n",
                        f"worker{i}",
                        "--",
                        "--concurrency",
                        "1",
                        "--pool",
                        "prefork",
                    ],
                )
            )
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

    def _service(self, name: str, cmd: list[str]) -> Service:
        service = Service(name, cmd, self.root / f"{name}.log", self.env).start()
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
