"""The soak's reader: a user holding glm.duckdb open read-write for the whole soak, and the soak's handle on it.

Run as ``python _soak_reader.py <glm.duckdb>`` (by :class:`Reader`), it is a plain duckdb user, with no lightning_eda,
Dagster or moto in its process. It talks to the soak in JSON lines: on stdout it says "connected" after its first
query and "final" at the end; a line on its stdin (or its closing) asks it to stop.
"""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
READER_PAUSE = 0.05
"""Seconds the reader waits for a stop request between two rounds of queries (it does nothing else meanwhile)."""


def reader_main(db_path: str) -> int:
    import duckdb

    def say(**message) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def stop_requested(timeout: float) -> bool:
        readable, _, _ = select.select([sys.stdin], [], [], timeout)
        return bool(readable)  # a "stop" line or EOF (the soak went away): either way, stop

    con = None
    connect_retries, connect_error = 0, None
    while con is None:  # wait for the first hour's load to create the file, then for it to let go of it
        if os.path.exists(db_path):
            try:
                con = duckdb.connect(db_path)  # READ-WRITE, as a user's notebook would
                break
            except duckdb.Error as exc:  # the pipeline is writing its views right now: try again shortly
                connect_retries, connect_error = connect_retries + 1, f"{type(exc).__name__}: {exc}"
        if stop_requested(READER_PAUSE):
            say(event="final", connected=False, connect_retries=connect_retries, connect_error=connect_error)
            return 0

    def counts() -> tuple[int, int]:
        events = con.execute("SELECT count(*) FROM glm_event").fetchone()[0]
        hours = con.execute("SELECT count(*) FROM glm_hour").fetchone()[0]
        return int(events), int(hours)

    queries = errors = decreases = 0
    error_samples: list[str] = []
    first = last = None
    while True:
        try:
            seen = counts()
        except Exception as exc:  # noqa: BLE001 - every error counts against the store, whatever its kind
            queries += 2
            errors += 1
            if len(error_samples) < 5:
                error_samples.append(f"{type(exc).__name__}: {exc}")
        else:
            queries += 2
            if last is not None and (seen[0] < last[0] or seen[1] < last[1]):
                decreases += 1
            if first is None:
                first = seen
                say(event="connected", counts=seen, connect_retries=connect_retries)
            last = seen
        if stop_requested(READER_PAUSE):
            break
    final, final_error = None, None
    try:  # the last query, on the connection opened before the later hours were loaded
        final = counts()
        queries += 2
    except Exception as exc:  # noqa: BLE001
        errors += 1
        final_error = f"{type(exc).__name__}: {exc}"
    con.close()
    say(
        event="final",
        connected=True,
        connect_retries=connect_retries,
        queries=queries,
        errors=errors,
        error_samples=error_samples,
        decreases=decreases,
        first=first,
        last=last,
        final=final,
        final_error=final_error,
    )
    return 0


class Reader:
    """The reader process (:func:`reader_main`) and what it says."""

    def __init__(self, db_path: Path, log_path: Path):
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=SCRIPT.parents[1],
        )
        self.connected: dict | None = None
        self.final: dict | None = None
        self.ended = False  # its stdout has closed
        self._messages: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, name="soak-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self._messages.put(json.loads(line))
            except json.JSONDecodeError:
                self._messages.put({"event": "noise", "line": line})
        self._messages.put(None)  # the reader's stdout closed: it has ended

    def _take(self, timeout: float) -> bool:
        """Handle one message; False when none came in time or the reader has ended."""
        if self.ended:
            return False
        try:
            message = self._messages.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return False
        if message is None:
            self.ended = True
            return False
        if message.get("event") == "connected":
            self.connected = message
        elif message.get("event") == "final":
            self.final = message
        return True

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the reader holds glm.duckdb and has counted once (its first counts are in ``connected``)."""
        deadline = time.monotonic() + timeout
        while self.connected is None and self.final is None and not self.ended and time.monotonic() < deadline:
            self._take(deadline - time.monotonic())
        return self.connected is not None

    def finish(self, timeout: float = 120.0) -> dict:
        """Ask the reader to stop; returns its final report (its last query runs on its first connection)."""
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        deadline = time.monotonic() + timeout
        while self.final is None and not self.ended and time.monotonic() < deadline:
            self._take(deadline - time.monotonic())
        try:
            self.proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return {
            **(
                self.final
                or {
                    "connected": self.connected is not None,
                    "errors": 1,
                    "error_samples": ["the reader ended without its final report"],
                }
            ),
            "exit_code": self.proc.returncode,
        }

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def reader_figures(report: dict | None, final_counts: dict) -> dict:
    """The reader's figures; ``reader_final_matches``: its last query equals the store's totals at the end."""
    if report is None:
        return {"reader": False}
    as_counts = lambda pair: None if pair is None else {"glm_event": pair[0], "glm_hour": pair[1]}  # noqa: E731
    final = as_counts(report.get("final"))
    return {
        "reader": True,
        "reader_connected": bool(report.get("connected")),
        "reader_queries": int(report.get("queries", 0)),
        "reader_errors": int(report.get("errors", 0)),
        "reader_error_samples": [*report.get("error_samples", []), *filter(None, [report.get("final_error")])],
        "reader_saw_decrease": bool(report.get("decreases", 0)),
        "reader_first_counts": as_counts(report.get("first")),
        "reader_last_counts": as_counts(report.get("last")),
        "reader_final_counts": final,
        "reader_final_matches": final is not None and final == final_counts,
        "reader_connect_retries": int(report.get("connect_retries", 0)),
        "reader_exit_code": report.get("exit_code"),
    }


def reader_problems(figures: dict) -> list[str]:
    """What is wrong with the reader's figures: it must have held glm.duckdb, without an error or a count going down,
    and its last query must equal the store's totals."""
    problems = []
    if not figures["reader_connected"] or figures["reader_queries"] == 0:
        problems.append("the reader never held glm.duckdb")
    if figures["reader_errors"] or figures["reader_exit_code"] != 0:
        problems.append(
            f"reader_errors {figures['reader_errors']} (exit {figures['reader_exit_code']}): "
            f"{figures['reader_error_samples']}"
        )
    if figures["reader_saw_decrease"]:
        problems.append("the reader saw a count decrease")
    if not figures["reader_final_matches"]:
        problems.append(f"reader_final_counts {figures['reader_final_counts']} != {figures['final_counts']}")
    return problems


if __name__ == "__main__":
    sys.exit(reader_main(sys.argv[1]))
