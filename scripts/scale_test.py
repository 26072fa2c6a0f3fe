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
call the UI makes), in runs of ``--hours-per-run`` hours each (``LIGHTNING_EDA_HOURS_PER_RUN``: the ingest assets'
``BackfillPolicy.multi_run``), and meanwhile provokes three faults (unless ``--no-faults``): a whole worker holding a
transform step is SIGKILLed (main and pool processes, as a lost machine) and started again, and its step must be
delivered again to a live worker within the same run; the worker process running another step is SIGKILLed, as the
kernel's OOM killer would (it fails its batch's step; the run's retry re-executes it, and the hours of the batch it had
staged are decoded again, never loaded twice); and PostgreSQL is restarted. It then checks that every partition
succeeded, that steps ran on more than one worker at overlapping times, that every hour is in the store exactly once
with every granule's rows, and that the store equals a one-process run (``lightning-eda backfill``) of the same
hours. Everything started is stopped at the end, whatever happens. The last line is the verdict; the exit code is 0
only when it is PASS.

Run as root (CI), it installs ``postgresql`` and ``redis-server`` with apt when they are missing, and runs PostgreSQL
as the ``postgres`` user the package creates.

Usage::

    make scale-test                               # 24 hours in runs of 2, 2 workers, the three faults
    .venv/bin/python scripts/scale_test.py --hours 24 --no-faults --real-every 1 --max-runs 4 --hours-per-run 6
                                                  # the throughput benchmark (BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

from _backfill_history import BACKFILL_TAG, Launch, dagster_backfill, step_history, wait_for_backfill
from _deployment import Deployment
from _granule_day import make_day
from _reference_run import one_process_run, store_digest
from _scale_faults import Faults
from _scale_verdict import fault_problems, partition_problems, print_failures, store_problems, worker_problems
from _services import PROJECT, ensure_packages
from _store_check import verify
from _terminal_launch import TerminalLaunch
from dagster import AssetKey, DagsterInstance

from lightning_eda.orchestration.partitions import partition_key_for_hour
from lightning_eda.testing.s3_server import LocalS3

BUCKET = "noaa-goes16"
FIRST_HOUR = datetime(2024, 5, 1, 0)
INGEST_ASSETS = ("extract", "transform", "load")


def relaunch_failed(
    deployment: Deployment,
    instance,
    launch: Launch,
    hours: list[datetime],
    timeout: float,
    history: dict,
) -> tuple[list[str], dict]:
    """Launch again, as a user would and the way they launched it, the partitions a fault failed for good; returns
    them and the history with the new launch's runs added.

    A partition can end failed when a fault took its retry too (the daemon's retry launch met the database restart).
    Failing clearly is allowed; the operator's recourse is a new backfill of those partitions (Dagster's, from the
    UI), or the same ``lightning-eda backfill --deployment`` command (its runs skip the committed hours).
    """
    partitions = [partition_key_for_hour(h) for h in hours]
    done = instance.get_materialized_partitions(AssetKey("load"))
    relaunched = [p for p in partitions if p not in done]
    if not relaunched:
        return relaunched, history
    print_failures(step_history(instance, launch)["failures"])
    print(f"recovery: {len(relaunched)} partition(s) failed for good ({', '.join(relaunched)}); launching them again")
    if launch.tag == BACKFILL_TAG:
        retry_id = deployment.graphql.launch_backfill(relaunched, INGEST_ASSETS)
        wait_for_backfill(deployment.graphql, instance, retry_id, timeout, None)
        again = dagster_backfill(retry_id)
    else:
        terminal = TerminalLaunch(deployment.graphql.url, hours, deployment.env)
        terminal.wait(instance, timeout, None)
        again = terminal.launch
    extra = step_history(instance, again)
    return relaunched, {key: history[key] + extra[key] for key in history}


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def print_step_costs(history: dict, n_hours: int, cpu: dict[str, float]) -> None:
    """Seconds per step (as Dagster timed them on the workers) per run and per hour, and the CPU per run outside the
    workers."""
    names = sorted(
        {s["step"] for s in history["steps"]},
        key=lambda n: (n not in INGEST_ASSETS, INGEST_ASSETS.index(n) if n in INGEST_ASSETS else 0, n),
    )
    for step in names:  # the assets' steps, then the checks' (load_checks, the freshness checks)
        done = [s["end"] - s["start"] for s in history["steps"] if s["ok"] and s["step"] == step]
        if done:
            print(
                f"step {step}: {len(done)} succeeded, {sum(done) / len(done):.2f} s each on average "
                f"({min(done):.2f}–{max(done):.2f}), {sum(done) / n_hours:.2f} s per hour"
            )
    runs = len(history["runs"])
    outside = cpu.get("daemon, its code server and the run processes", 0.0)
    if runs:
        print(
            f"daemon, code server and run processes: {outside:.0f} CPU-s for {runs} runs, {outside / runs:.1f} per run"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hours",
        type=int,
        default=24,
        help="hour partitions to backfill (default 24: twelve runs of two, so that each fault finds a run of its own "
        "even on a fast machine, where twelve hours had ended before the whole worker's step came back)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (default 2)")
    parser.add_argument("--max-runs", type=int, default=3, help="runs in flight at once (QueuedRunCoordinator)")
    parser.add_argument(
        "--hours-per-run",
        type=int,
        default=2,
        help="hours per backfill run (LIGHTNING_EDA_HOURS_PER_RUN; default 2)",
    )
    parser.add_argument(
        "--launch",
        choices=("backfill", "terminal"),
        default="backfill",
        help="backfill: a Dagster backfill through GraphQL, as the UI launches it (default); terminal: "
        "lightning-eda backfill --deployment URL, batched runs straight into the run queue",
    )
    parser.add_argument("--no-faults", action="store_true", help="no killed worker process, no PostgreSQL restart")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds the backfill may take")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, stores)")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=60,
        help="seconds before a lost worker's step is delivered again (the deployment's: 900; default 60)",
    )
    parser.add_argument(
        "--real-every",
        type=int,
        default=6,
        help="every Nth granule a copy of a real one from ../shared/data/glm (default 6; 1: all)",
    )
    args = parser.parse_args(argv)
    if args.hours < 6 or args.workers < 2:
        parser.error("the scale test needs at least 6 hours and 2 workers")

    sys.stdout.reconfigure(line_buffering=True)  # each line as it comes, in CI's log too
    ensure_packages()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log

    root = Path(tempfile.mkdtemp(prefix="lightning-eda-scale-"))
    os.chmod(root, 0o755)  # PostgreSQL's user must reach its folders inside
    problems: list[str] = []
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        else:
            print(f"keeping {root}")
        s3 = LocalS3().start()
        stack.callback(s3.stop)
        hours = [FIRST_HOUR + timedelta(hours=h) for h in range(args.hours)]
        # Real granules in some slots (when ../shared/data/glm is there) make each transform take long enough to be
        # caught running; the rest are small synthetic ones.
        real_dir = PROJECT.parent / "shared" / "data" / "glm"
        real_every = args.real_every if real_dir.is_dir() else 0
        expected = make_day(s3, BUCKET, FIRST_HOUR, args.hours, root / "granules", real_dir, real_every, print)
        n_real = sum(1 for facts in expected.values() if facts["real"])
        print(
            f"started a local S3 server (moto) at {s3.url} with {len(expected)} granules in {args.hours} hours "
            f"({n_real} of them copies of real ones)"
        )

        deployment = Deployment(
            root,
            args.workers,
            BUCKET,
            s3.url,
            root / "data",
            args.max_runs,
            args.visibility_timeout,
            args.hours_per_run,
        )
        stack.callback(deployment.stop)
        try:
            deployment.start()
        except Exception as error:
            print(f"could not start the deployment: {error}")
            print("scale-test: FAIL (the deployment did not start)")
            return 1
        os.environ.update({k: v for k, v in deployment.env.items() if k.startswith(("DAGSTER_", "LIGHTNING_EDA_"))})
        instance = stack.enter_context(DagsterInstance.get())
        partitions = [partition_key_for_hour(h) for h in hours]
        started, launched_at = time.monotonic(), time.time()
        if args.launch == "backfill":
            launch = dagster_backfill(deployment.graphql.launch_backfill(partitions, INGEST_ASSETS))
            how = "a Dagster backfill through GraphQL"
        else:
            terminal = TerminalLaunch(deployment.graphql.url, hours, deployment.env)
            launch = terminal.launch
            how = "lightning-eda backfill --deployment (runs straight into the queue)"
        print(
            f"launched {launch.tag}={launch.id}: {len(partitions)} partitions ({partitions[0]} .. {partitions[-1]}) "
            f"as {how}, {args.hours_per_run} per run; load average {load_average()}"
        )
        faults = None if args.no_faults else Faults(deployment, launch, instance)
        if faults:
            faults.start()
        if args.launch == "backfill":
            status = wait_for_backfill(deployment.graphql, instance, launch.id, args.timeout, faults)
        else:
            status = terminal.wait(instance, args.timeout, faults)
        elapsed = time.monotonic() - started
        cpu = deployment.cpu_seconds()
        history = step_history(instance, launch)
        relaunched: list[str] = []
        if faults:
            relaunched, history = relaunch_failed(deployment, instance, launch, hours, args.timeout, history)
        print(
            "CPU seconds since the deployment started: "
            + ", ".join(f"{name} {value:.0f}" for name, value in cpu.items())
        )
        print(
            f"backfill {status} in {elapsed:.0f} s: {len(history['runs'])} runs, "
            f"{sum(s['ok'] for s in history['steps'])} steps succeeded, "
            f"{sum(not s['ok'] for s in history['steps'])} failed"
        )
        ends = [step["end"] for step in history["steps"] if step.get("end") is not None]
        work = max(ends) - launched_at if ends else elapsed
        first = min((step["start"] for step in history["steps"]), default=launched_at) - launched_at
        print(
            f"the first step began {first:.0f} s after the launch (a Dagster backfill waits for the backfill daemon's "
            f"look, every 30 s; then the run queue's, every second), the last ended {work:.0f} s after it (all "
            f"settled, as the launch reports it: {elapsed:.0f} s)"
        )
        print_step_costs(history, len(hours), cpu)
        problems += partition_problems(instance, INGEST_ASSETS, partitions, status, relaunched)
        problems += worker_problems(history["steps"])
        if faults:
            problems += fault_problems(faults, history, deployment, relaunched)
        problems += store_problems(verify(deployment.data_dir, BUCKET, expected), len(expected))
        celery_digest = store_digest(deployment.data_dir)
        if len(celery_digest["hours"]) != len(hours):
            problems.append(f"the store holds {len(celery_digest['hours'])} hours, not {len(hours)}")
        deployment.stop()  # frees the cores for the comparison run
        single_dir, single_seconds = one_process_run(root, BUCKET, s3.url, hours)
        if store_digest(single_dir) != celery_digest:
            problems.append("the store differs from a one-process run of the same hours")
        else:
            print(
                f"the store equals a one-process run of the same hours (lightning-eda backfill, {single_seconds:.0f} s)"
            )
        print(
            f"throughput: Celery {len(hours) / work * 60:.2f} partitions/min with {args.workers} workers by its runs' "
            f"end ({len(hours) / elapsed * 60:.2f} by the backfill's status), one process "
            f"{len(hours) / single_seconds * 60:.2f} partitions/min: ratio {single_seconds / work:.2f}; "
            f"load average {load_average()}"
        )
    if problems:
        for problem in problems:
            print(f"problem: {problem}")
        print(f"scale-test: FAIL ({len(problems)} problem(s))")
        return 1
    faults_text = (
        ""
        if args.no_faults
        else ", a whole worker killed and its step delivered again, a killed worker process retried, "
        "PostgreSQL restarted"
    )
    if relaunched:
        faults_text += f"; {len(relaunched)} partition(s) failed by a fault and relaunched"
    print(
        f"scale-test: PASS ({len(hours)} partitions in runs of {args.hours_per_run} on {args.workers} Celery workers"
        f"{faults_text}; "
        "the store equals a one-process run)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
