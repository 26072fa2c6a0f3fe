"""The scale test's other way to launch its hours: ``lightning-eda backfill --deployment URL`` in a terminal, as a user
would, which queues batched runs straight into the deployment's run queue (no backfill daemon in between)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

from _backfill_history import Launch, stop_faults, wait_for_runs
from _services import PROJECT

from lightning_eda.orchestration.remote_backfill import LAUNCH_TAG

LAUNCHED = re.compile(re.escape(LAUNCH_TAG) + r"=(\w+)")


class TerminalLaunch:
    """``lightning-eda backfill --deployment`` running (and waiting for its runs) in a child process."""

    def __init__(self, url: str, hours: list[datetime], env: dict[str, str]) -> None:
        command = [str(Path(sys.executable).with_name("lightning-eda")), "backfill", "--deployment", url]
        command += ["--start", f"{hours[0]:%Y-%m-%dT%H}", "--end", f"{hours[-1]:%Y-%m-%dT%H}"]
        self.command = command
        self.process = subprocess.Popen(
            command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.launch: Launch | None = None
        for line in self.process.stdout:  # the first line names the launch's tag
            print(f"  | {line.rstrip()}")
            found = LAUNCHED.search(line)
            if found:
                self.launch = Launch(LAUNCH_TAG, found.group(1))
                break
        if self.launch is None:
            self.process.wait()
            raise RuntimeError(f"{' '.join(command)} launched nothing (exit {self.process.returncode})")
        self._echo = threading.Thread(target=self._print_rest, daemon=True)
        self._echo.start()

    def _print_rest(self) -> None:
        for line in self.process.stdout:
            print(f"  | {line.rstrip()}")

    def wait(self, instance, timeout: float, faults) -> str:
        """Wait for the command (it waits for the runs, retries included); return a backfill-like status."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = None
        stop_faults(faults)
        self._echo.join(10)
        wait_for_runs(instance, self.launch)
        return "COMPLETED_SUCCESS" if code == 0 else f"FAILED (lightning-eda exit {code})"
