"""`make scale-test`: the pipeline on Dagster's distributed machinery (PostgreSQL instance, Celery over Redis), for
real.

On this machine, in a temporary folder, it starts:

- **PostgreSQL** from Debian's packages (``initdb`` + ``pg_ctl``, on 127.0.0.1, a free port): the Dagster instance's
  run, event-log and schedule storage (``deploy/dagster.yaml``);
- **Redis** (``redis-server`` on 127.0.0.1): the Celery broker and result backend;
- **two Celery workers** (``dagster-celery worker start -y deploy/celery.yaml``, one process each);
- the **Dagster webserver and daemon** on that instance, with ``LIGHTNING_EDA_EXECUTOR=celery``;
- a local S3 server (moto) serving synthetic granules under NOAA's key layout.

It launches a backfill of the ingest assets over ``--hours`` hour partitions through the webserver's GraphQL API (the
call the UI makes), and meanwhile provokes two faults (unless ``--no-faults``): the worker process running a step is
SIGKILLed, as the kernel's OOM killer would, and PostgreSQL is restarted. It then checks that every partition
succeeded, that steps ran on more than one worker at overlapping times, that every hour is in the store exactly once
with every granule's rows, and that the store equals a one-process run (``lightning-eda backfill``) of the same
hours. Everything started is stopped at the end, whatever happens. The last line is the verdict; the exit code is 0
only when it is PASS.

Run as root (CI), it installs ``postgresql`` and ``redis-server`` with apt when they are missing, and runs PostgreSQL
as the ``postgres`` user the package creates.

Usage::

    make scale-test                               # 6 hours, 2 workers, both faults
    .venv/bin/python scripts/scale_test.py --hours 24 --no-faults --timing   # the throughput benchmark
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

SCRIPT = Path(__file__).resolve()
PROJECT = SCRIPT.parents[1]
BIN = Path(sys.executable).parent

BUCKET = "noaa-goes16"
FIRST_HOUR = datetime(2024, 5, 1, 0)
INGEST_ASSETS = ("extract", "transform", "load")


def say(text: str = "") -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, ready: Callable[[], bool], timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- system packages ---------------------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def ensure_packages() -> None:
    """Install Debian's postgresql and redis-server when missing (as .ci/run installs Chromium)."""
    missing = [
        pkg
        for pkg, present in (("postgresql", postgres_bin()), ("redis-server", shutil.which("redis-server")))
        if not present
    ]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"scale-test needs {' and '.join(missing)}: apt-get install {' '.join(missing)}")
    say(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


# --- services ----------------------------------------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth), run as ``postgres`` when we are root."""

    def __init__(self, root: Path) -> None:
        self.bin = postgres_bin()
        self.data = root / "pgdata"
        self.socket_dir = root / "pgsock"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.user = "dagster"
        self.db = "dagster"
        self.as_user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True)

    def start(self) -> Postgres:
        for folder in (self.data, self.socket_dir):
            folder.mkdir(parents=True)
            if self.as_user:
                entry = pwd.getpwnam(self.as_user)
                os.chown(folder, entry.pw_uid, entry.pw_gid)
        self.log.touch()
        if self.as_user:
            entry = pwd.getpwnam(self.as_user)
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")
        self._pg_ctl("start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.db)
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir}"
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log), "-o", options, *extra)

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", check=False)

    def version(self) -> str:
        return self._run("postgres", "--version").stdout.strip()

    @property
    def env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": self.db,
        }


class Service:
    """A long-running program in its own process group, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.cmd, self.log_path, self.env = name, cmd, log, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=PROJECT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        try:  # the group's stragglers (a worker's pool process, a code server)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            found.append(int(Path(stat).parent.name))
    return found


_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants: each live one's own and its reaped children's (from /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            text = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += sum(int(v) for v in fields[11:15]) / _TICKS  # utime, stime, cutime, cstime
        todo.extend(children(current))
    return total


# --- GraphQL -----------------------------------------------------------------------------------------------------

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


# --- the run -----------------------------------------------------------------------------------------------------


class Deployment:
    """PostgreSQL, Redis, the Celery workers, the webserver and the daemon, stopped together."""

    def __init__(self, root: Path, n_workers: int, s3_url: str, data_dir: Path, max_runs: int) -> None:
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
            "S3_BUCKET": BUCKET,
            "AWS_ENDPOINT_URL_S3": s3_url,
            "PYTHONUNBUFFERED": "1",
            # dagster-celery starts `celery` from PATH: the venv's, as an activated venv would
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.postgres.env,
        }

    def start(self) -> Deployment:
        self.stack.callback(self.postgres.stop)
        self.postgres.start()
        say(f"started PostgreSQL ({self.postgres.version()}) on 127.0.0.1:{self.postgres.port}")
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
        say(f"started Redis ({version.split()[2]}) on 127.0.0.1:{self.redis_port}")
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
        say(f"started {len(self.workers)} Celery workers ({names}), one process each")
        self.daemon = self._service("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        self.web = self._service(
            "webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.web_port), "-w", "workspace.yaml"],
        )
        wait_for("the Dagster webserver", self.graphql.up, 180)
        say(f"started the Dagster webserver on {self.graphql.url} and the daemon (instance in PostgreSQL)")
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


def wait_for_backfill(deployment: Deployment, instance, backfill_id: str, timeout: float, faults) -> str:
    """Wait until the backfill settles and its runs (retries included) have finished; return its status."""
    from dagster import RunsFilter

    status = "?"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = backfill_status(deployment, backfill_id)
        except (urllib.error.URLError, RuntimeError, OSError) as error:  # the webserver during the restart
            status = f"unreadable ({error})"
        if status in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
            break
        time.sleep(2)
    if faults:
        faults.stopping.set()
        faults.join(30)
    # runs still being retried keep the backfill's partitions open a little after its own status settles
    wait_for(
        "the backfill's runs to finish",
        lambda: all(r.is_finished for r in instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))),
        300,
        every=2,
    )
    return status


def launch_backfill(deployment: Deployment, partitions: list[str]) -> str:
    params = {
        "partitionNames": partitions,
        "assetSelection": [{"path": [a]} for a in INGEST_ASSETS],
        "fromFailure": False,
        "tags": [],
    }
    result = deployment.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"launching the backfill failed: {result}")
    return result["backfillId"]


def backfill_status(deployment: Deployment, backfill_id: str) -> str:
    return deployment.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]


# --- what happened, from the instance ------------------------------------------------------------------------------


def step_history(instance, backfill_id: str) -> dict:
    """The backfill's runs and, per step execution, its worker and its start and end times."""
    from dagster import RunsFilter

    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
    steps, failures = [], []
    for run in runs:
        run_steps, run_failures = run_history(instance, run)
        steps += run_steps
        failures += run_failures
    return {"runs": runs, "steps": steps, "failures": failures}


def run_history(instance, run) -> tuple[list[dict], list[tuple]]:
    """One run's step executions (``end`` None for a step begun on a worker and not ended) and its failures."""
    from dagster import DagsterEventType

    partition = run.tags.get("dagster/partition")
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
    done = [s for s in steps if s["end"] is not None and s["worker"] != "?"]
    for a in done:
        for b in done:
            if a["worker"] < b["worker"] and a["start"] < b["end"] and b["start"] < a["end"]:
                return a, b
    return None


def store_digest(data_dir: Path) -> dict:
    """What the store holds, comparable between two runs: per table, its rows and an order-free content hash."""
    from lightning_eda.store import catalog
    from lightning_eda.store.schemas import DATA_TABLES

    digest = {}
    with catalog.connect_store(data_dir) as con:
        for table in DATA_TABLES:
            columns = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
            row_hash = " || '|' || ".join(f"coalesce(CAST({c} AS VARCHAR), '∅')" for c in columns)
            digest[table] = con.execute(f"SELECT count(*), sum(hash({row_hash})) FROM {table}").fetchone()
        digest["glm_file"] = con.execute(
            "SELECT count(*), sum(hash(source_file || status || n_flashes || n_groups || n_events)) FROM glm_file"
        ).fetchone()
        digest["hours"] = [str(h) for (h,) in con.execute("SELECT DISTINCT hour FROM glm_file ORDER BY 1").fetchall()]
    return digest


def one_process_run(root: Path, s3_url: str, hours: list[datetime]) -> tuple[Path, float]:
    data_dir = root / "data-one-process"
    home = root / "home-one-process"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LIGHTNING_EDA_DATA_DIR": str(data_dir),
        "S3_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL_S3": s3_url,
    }
    env.pop("LIGHTNING_EDA_EXECUTOR", None)
    started = time.monotonic()
    subprocess.run(
        [
            str(BIN / "lightning-eda"),
            "backfill",
            "--start",
            hours[0].strftime("%Y-%m-%dT%H"),
            "--end",
            hours[-1].strftime("%Y-%m-%dT%H"),
            "--no-cluster",
        ],
        check=True,
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return data_dir, time.monotonic() - started


# --- faults --------------------------------------------------------------------------------------------------------


class Faults(threading.Thread):
    """Kills the worker process running a transform step, then restarts PostgreSQL, while the backfill runs."""

    def __init__(self, deployment: Deployment, backfill_id: str, instance) -> None:
        super().__init__(daemon=True, name="faults")
        self.deployment, self.backfill_id, self.instance = deployment, backfill_id, instance
        self.stopping = threading.Event()
        self.killed: dict | None = None
        self.restarted_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._kill_a_step()
            if self.killed is not None:
                self._restart_postgres()
        except BaseException as error:  # reported in the verdict
            self.error = error

    def _kill_a_step(self) -> None:
        """SIGKILL the pool process of the worker running a transform step, until one such kill fails its step."""
        tried: set[str] = set()
        while not self.stopping.is_set():
            target = self._running_transform(tried)
            if target is None:
                time.sleep(0.3)
                continue
            run, worker = target
            tried.add(run.run_id)
            pid = self.deployment.worker_pool_process(worker)
            if pid is None:
                continue
            os.kill(pid, signal.SIGKILL)
            killed = {"run": run.run_id, "partition": run.tags.get("dagster/partition"), "worker": worker, "pid": pid}
            # The kill counts when the step did not succeed in that run (it may have ended just before the signal).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not self.stopping.is_set():
                steps = [s for s in run_history(self.instance, run)[0] if s["step"] == "transform"]
                finished = self.instance.get_run_by_id(run.run_id).is_finished
                if any(s["ok"] for s in steps):
                    say(
                        f"fault: {worker}'s pool process {pid} was killed after transform of {killed['partition']} "
                        "had ended; trying another"
                    )
                    break
                if finished:
                    self.killed = killed
                    say(
                        f"fault: SIGKILLed {worker}'s pool process {pid} while it ran transform of "
                        f"{killed['partition']} (run {run.run_id[:8]})"
                    )
                    return
                time.sleep(0.5)

    def _running_transform(self, tried: set[str]):
        """A run of the backfill whose transform step has started on a worker and not ended, and that worker."""
        from dagster import DagsterRunStatus, RunsFilter

        runs = self.instance.get_runs(
            RunsFilter(tags={"dagster/backfill": self.backfill_id}, statuses=[DagsterRunStatus.STARTED])
        )
        for run in runs:
            if run.run_id in tried:
                continue
            for step in run_history(self.instance, run)[0]:
                if step["step"] == "transform" and step["end"] is None:
                    return run, step["worker"].split("@")[0]
        return None

    def _restart_postgres(self) -> None:
        # First the killed run's retry must have started: the daemon launches it from the failure it reads in
        # PostgreSQL, and a retry whose launch meets the restart can be lost (seen once; the backfill then ends with
        # that partition failed, which the relaunch below recovers). Then a few more steps, so that runs are in flight.
        from dagster import DagsterRunStatus, RunsFilter

        deadline = time.monotonic() + 180
        while not self.stopping.is_set() and time.monotonic() < deadline:
            retries = self.instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": self.killed["run"]}))
            if any(run.status not in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED) for run in retries):
                break
            time.sleep(1.0)
        seen = len(step_history(self.instance, self.backfill_id)["steps"])
        while not self.stopping.is_set() and len(step_history(self.instance, self.backfill_id)["steps"]) < seen + 3:
            time.sleep(1.0)
        if self.stopping.is_set():
            return
        started = time.monotonic()
        self.deployment.postgres.restart()
        self.restarted_at = time.time()
        say(
            f"fault: restarted PostgreSQL (pg_ctl restart -m fast, {time.monotonic() - started:.1f} s) "
            "with runs in flight"
        )


# --- main ------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=6, help="hour partitions to backfill (default 6)")
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (default 2)")
    parser.add_argument("--max-runs", type=int, default=3, help="runs in flight at once (QueuedRunCoordinator)")
    parser.add_argument("--no-faults", action="store_true", help="no killed worker process, no PostgreSQL restart")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds the backfill may take")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, stores)")
    parser.add_argument(
        "--real-every",
        type=int,
        default=6,
        help="every Nth granule a copy of a real one from ../shared/data/glm (default 6; 1: all)",
    )
    args = parser.parse_args(argv)
    if args.hours < 6 or args.workers < 2:
        parser.error("the scale test needs at least 6 hours and 2 workers")

    ensure_packages()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    import soak  # noqa: E402 - after the packages: it imports the project and moto; it sits beside this script

    from lightning_eda.testing.s3_server import LocalS3  # noqa: E402

    root = Path(tempfile.mkdtemp(prefix="lightning-eda-scale-"))
    os.chmod(root, 0o755)  # PostgreSQL's user must reach its folders inside
    problems: list[str] = []
    figures: dict = {}
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        else:
            say(f"keeping {root}")
        s3 = LocalS3().start()
        stack.callback(s3.stop)
        hours = [FIRST_HOUR + timedelta(hours=h) for h in range(args.hours)]
        # Real granules in some slots (when ../shared/data/glm is there) make each transform take long enough to be
        # caught running; the rest are small synthetic ones.
        real_dir = PROJECT.parent / "shared" / "data" / "glm"
        real_every = args.real_every if real_dir.is_dir() else 0
        expected = soak.make_day(s3, BUCKET, FIRST_HOUR, args.hours, root / "granules", real_dir, real_every, say)
        n_real = sum(1 for facts in expected.values() if facts["real"])
        say(
            f"started a local S3 server (moto) at {s3.url} with {len(expected)} granules in {args.hours} hours "
            f"({n_real} of them copies of real ones)"
        )

        deployment = Deployment(root, args.workers, s3.url, root / "data", args.max_runs)
        stack.callback(deployment.stop)
        try:
            deployment.start()
        except Exception as error:
            say(f"could not start the deployment: {error}")
            say("scale-test: FAIL (the deployment did not start)")
            return 1
        os.environ.update({k: v for k, v in deployment.env.items() if k.startswith(("DAGSTER_", "LIGHTNING_EDA_"))})
        from dagster import DagsterInstance

        instance = stack.enter_context(DagsterInstance.get())
        partitions = [h.strftime("%Y-%m-%d-%H:%M") for h in hours]
        started = time.monotonic()
        backfill_id = launch_backfill(deployment, partitions)
        say(
            f"launched backfill {backfill_id} of {len(partitions)} partitions ({partitions[0]} .. {partitions[-1]}) "
            "through GraphQL"
        )
        faults = None if args.no_faults else Faults(deployment, backfill_id, instance)
        if faults:
            faults.start()
        status = wait_for_backfill(deployment, instance, backfill_id, args.timeout, faults)
        elapsed = time.monotonic() - started
        cpu = deployment.cpu_seconds()
        history = step_history(instance, backfill_id)
        relaunched: list[str] = []
        if faults:
            # A partition can end failed when a fault took its retry too (the daemon's retry launch met the database
            # restart). Failing clearly is allowed; the operator's recourse is a new backfill of those partitions.
            from dagster import AssetKey

            done = instance.get_materialized_partitions(AssetKey("load"))
            relaunched = [p for p in partitions if p not in done]
            if relaunched:
                for run_id, partition, message in step_history(instance, backfill_id)["failures"]:
                    say(f"failed run {run_id[:8]} ({partition}): {message.splitlines()[0][:200]}")
                say(
                    f"recovery: {len(relaunched)} partition(s) failed for good ({', '.join(relaunched)}); "
                    "launching a backfill of them through GraphQL, as a user would"
                )
                retry_id = launch_backfill(deployment, relaunched)
                wait_for_backfill(deployment, instance, retry_id, args.timeout, None)
                extra = step_history(instance, retry_id)
                history = {key: history[key] + extra[key] for key in history}
        say(
            "CPU seconds since the deployment started: "
            + ", ".join(f"{name} {value:.0f}" for name, value in cpu.items())
        )
        say(
            f"backfill {status} in {elapsed:.0f} s: {len(history['runs'])} runs, "
            f"{sum(s['ok'] for s in history['steps'])} steps succeeded, "
            f"{sum(not s['ok'] for s in history['steps'])} failed"
        )
        figures["celery_seconds"] = elapsed

        # every partition materialized
        from dagster import AssetKey

        for asset in INGEST_ASSETS:
            done = instance.get_materialized_partitions(AssetKey(asset))
            missing = sorted(set(partitions) - set(done))
            if missing:
                problems.append(f"{asset} not materialized for {missing}")
        if status not in ("COMPLETED", "COMPLETED_SUCCESS") and not relaunched:
            problems.append(f"backfill ended {status}")
        # more than one worker, at overlapping times
        by_worker: dict[str, int] = {}
        for step in history["steps"]:
            if step["ok"]:
                by_worker[step["worker"]] = by_worker.get(step["worker"], 0) + 1
        say("steps per worker: " + ", ".join(f"{w} {n}" for w, n in sorted(by_worker.items())))
        pair = overlapping_workers(history["steps"])
        if len(by_worker) < 2:
            problems.append(f"steps ran on {len(by_worker)} worker(s) only")
        elif pair is None:
            problems.append("no two steps on different workers overlapped in time")
        else:
            a, b = pair
            say(
                f"overlap: {a['step']} of {a['partition']} on {a['worker']} and {b['step']} of {b['partition']} on "
                f"{b['worker']} ran at the same time"
            )
        # the faults
        if faults:
            if faults.error:
                problems.append(f"the fault injector failed: {faults.error!r}")
            if faults.killed is None:
                problems.append("no worker process was killed (no transform step seen in time)")
            else:
                retried = [
                    s
                    for s in history["steps"]
                    if s["ok"]
                    and s["step"] == "transform"
                    and s["partition"] == faults.killed["partition"]
                    and s["run"] != faults.killed["run"]
                ]
                if not retried:
                    problems.append(f"the killed transform of {faults.killed['partition']} was not retried")
                else:
                    say(
                        f"retried: transform of {faults.killed['partition']} succeeded in run {retried[0]['run'][:8]} "
                        f"(a retry of the failed run) on {retried[0]['worker']}"
                    )
            if faults.restarted_at is None:
                problems.append("PostgreSQL was not restarted (too few steps ended)")
            else:
                reconnects = sum(
                    service.output().count("Retrying failed database connection")
                    for service in [deployment.daemon, deployment.web, *deployment.workers]
                )
                say(
                    f"PostgreSQL restart: {reconnects} connection attempts retried by dagster-postgres in the daemon, "
                    "webserver and workers (run processes log theirs in the runs)"
                )
            if not relaunched:
                for run_id, partition, message in history["failures"]:
                    say(f"failed run {run_id[:8]} ({partition}): {message.splitlines()[0][:200]}")
        # the store: every hour once, every granule once with its rows
        report = soak.verify(deployment.data_dir, BUCKET, expected)
        say(
            "store: {loaded_once} granules loaded once of {n}, {duplicated} duplicated, {missing} missing, "
            "{wrong_counts} with wrong rows, {orphan_rows} orphan rows, {part_files} temporary files".format(
                n=len(expected), **report
            )
        )
        if (
            report["loaded_once"] != len(expected)
            or report["duplicated"]
            or report["missing"]
            or report["wrong_counts"]
            or report["orphan_rows"]
            or report["duplicate_ids"]
            or report["bad_bytes"]
            or report["part_files"]
        ):
            problems.append(f"the store is not every granule exactly once: {report}")
        celery_digest = store_digest(deployment.data_dir)
        if len(celery_digest["hours"]) != len(hours):
            problems.append(f"the store holds {len(celery_digest['hours'])} hours, not {len(hours)}")
        deployment.stop()  # frees the cores for the comparison run
        single_dir, single_seconds = one_process_run(root, s3.url, hours)
        figures["one_process_seconds"] = single_seconds
        if store_digest(single_dir) != celery_digest:
            problems.append("the store differs from a one-process run of the same hours")
        else:
            say(
                f"the store equals a one-process run of the same hours (lightning-eda backfill, {single_seconds:.0f} s)"
            )
        say(
            f"throughput: Celery {len(hours) / elapsed * 60:.2f} partitions/min with {args.workers} workers, "
            f"one process {len(hours) / single_seconds * 60:.2f} partitions/min"
        )
    if problems:
        for problem in problems:
            say(f"problem: {problem}")
        say(f"scale-test: FAIL ({len(problems)} problem(s))")
        return 1
    faults_text = "" if args.no_faults else ", a killed worker process retried, PostgreSQL restarted"
    if relaunched:
        faults_text += f"; {len(relaunched)} partition(s) failed by a fault and relaunched"
    say(
        f"scale-test: PASS ({len(hours)} partitions on {args.workers} Celery workers{faults_text}; "
        "the store equals a one-process run)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
