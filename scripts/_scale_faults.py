"""The scale test's fault plan, while the backfill runs: SIGKILL a whole Celery worker (its main process, its pool
process, at once, as a lost machine) holding a transform step, and start it again as a supervisor would; then SIGKILL
the pool process running another transform (as the kernel's OOM killer would); then, once that run's retry has
started, restart PostgreSQL with runs in flight.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from _backfill_history import Launch, run_history, run_partitions, step_history
from _deployment import Deployment
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter


class Faults(threading.Thread):
    """Kills the worker process running a transform step, then restarts PostgreSQL, while the backfill runs."""

    def __init__(self, deployment: Deployment, launch: Launch, instance) -> None:
        super().__init__(daemon=True, name="faults")
        self.deployment, self.launch, self.instance = deployment, launch, instance
        self.stopping = threading.Event()
        self.killed: dict | None = None
        self.worker_lost: dict | None = None
        self.restarted_at: float | None = None
        self.error: BaseException | None = None
        # runs a fault has been tried on: each fault hits another run (with batches a backfill has few runs, and the
        # killed pool process must not be the lost worker's redelivered step, whose success in its run is checked)
        self.tried: set[str] = set()

    def run(self) -> None:
        try:
            self._kill_a_worker()
            self._kill_a_step()
            if self.killed is not None:
                self._restart_postgres()
        except BaseException as error:  # reported in the verdict
            self.error = error

    def _kill_a_worker(self) -> None:
        """SIGKILL a whole worker while it runs a transform step; wait until a live worker takes the step again."""
        for run, worker in self._transforms_in_hand():
            before = self._transform_deliveries(run)
            self.deployment.kill_worker(worker)
            killed_at = time.time()
            print(
                f"fault: SIGKILLed the whole Celery {worker} (main and pool processes) while it held transform of "
                f"{run_partitions(run)} (run {run.run_id[:8]})"
            )
            self.deployment.restart_worker(worker)
            print(f"fault: started {worker} again, as a supervisor would")
            deadline = killed_at + self.deployment.visibility_timeout + 180
            while time.time() < deadline and not self.stopping.is_set():
                deliveries = self._transform_deliveries(run)
                if len(deliveries) > len(before):
                    again_at, again_on = deliveries[-1]
                    self.worker_lost = {
                        "run": run.run_id,
                        "partition": run_partitions(run),
                        "worker": worker,
                        "killed_at": killed_at,
                        "redelivered_after": again_at - killed_at,
                        "redelivered_to": again_on,
                    }
                    print(
                        f"fault: the lost worker's transform of {self.worker_lost['partition']} was delivered again "
                        f"to {again_on} {again_at - killed_at:.0f} s after the kill (visibility timeout "
                        f"{self.deployment.visibility_timeout} s)"
                    )
                    return
                if any(s["step"] == "transform" and s["ok"] for s in run_history(self.instance, run)[0]):
                    print(f"fault: transform of {run_partitions(run)} had ended before; trying another")
                    break
                time.sleep(1.0)
            else:
                return  # never delivered again: the verdict says so

    def _transform_deliveries(self, run) -> list[tuple[float, str]]:
        """When, and to which worker, the run's transform step was handed (one entry per delivery)."""
        found = []
        for entry in self.instance.all_logs(run.run_id):
            event = entry.dagster_event
            if (
                entry.step_key == "transform"
                and event is not None
                and event.event_type == DagsterEventType.ENGINE_EVENT
                and event.engine_event_data
            ):
                worker = event.engine_event_data.metadata.get("Celery worker")
                if worker is not None:
                    found.append((entry.timestamp, str(worker.value)))
        return found

    def _kill_a_step(self) -> None:
        """SIGKILL the pool process of the worker running a transform step, until one such kill fails its step."""
        for run, worker in self._transforms_in_hand():
            pid = self.deployment.worker_pool_process(worker)
            if pid is None:
                continue
            os.kill(pid, signal.SIGKILL)
            killed = {"run": run.run_id, "partition": run_partitions(run), "worker": worker, "pid": pid}
            # The kill counts when the step did not succeed in that run (it may have ended just before the signal).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not self.stopping.is_set():
                steps = [s for s in run_history(self.instance, run)[0] if s["step"] == "transform"]
                finished = self.instance.get_run_by_id(run.run_id).is_finished
                if any(s["ok"] for s in steps):
                    print(
                        f"fault: {worker}'s pool process {pid} was killed after transform of {killed['partition']} "
                        "had ended; trying another"
                    )
                    break
                if finished:
                    self.killed = killed
                    print(
                        f"fault: SIGKILLed {worker}'s pool process {pid} while it ran transform of "
                        f"{killed['partition']} (run {run.run_id[:8]})"
                    )
                    return
                time.sleep(0.5)

    def _transforms_in_hand(self):
        """Each run of the backfill (once across the faults) whose transform step a worker holds, with that worker,
        until stopped."""
        while not self.stopping.is_set():
            target = self._running_transform(self.tried)
            if target is None:
                time.sleep(0.3)
                continue
            self.tried.add(target[0].run_id)
            yield target

    def _running_transform(self, tried: set[str]):
        """A run of the backfill whose transform step has started on a worker and not ended, and that worker."""
        runs = self.instance.get_runs(
            RunsFilter(tags={self.launch.tag: self.launch.id}, statuses=[DagsterRunStatus.STARTED])
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
        # that partition failed, which scale_test.relaunch_failed recovers). Then a few more steps, so that runs are
        # in flight.
        deadline = time.monotonic() + 180
        while not self.stopping.is_set() and time.monotonic() < deadline:
            retries = self.instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": self.killed["run"]}))
            if any(run.status not in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED) for run in retries):
                break
            time.sleep(1.0)
        seen = len(step_history(self.instance, self.launch)["steps"])
        while not self.stopping.is_set() and len(step_history(self.instance, self.launch)["steps"]) < seen + 3:
            time.sleep(1.0)
        if self.stopping.is_set():
            return
        started = time.monotonic()
        self.deployment.postgres.restart()
        self.restarted_at = time.time()
        print(
            f"fault: restarted PostgreSQL (pg_ctl restart -m fast, {time.monotonic() - started:.1f} s) "
            "with runs in flight"
        )
