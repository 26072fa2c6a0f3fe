"""The scale test's long-running programs: a throwaway PostgreSQL cluster and services in their own process groups.

Everything listens on 127.0.0.1 at a free port; each program's output goes to a log file in the test's folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
"""The venv's programs (dagster-webserver, dagster-celery, lightning-eda): the ones beside this Python."""


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
    print(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


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
