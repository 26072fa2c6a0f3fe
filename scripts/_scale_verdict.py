"""The scale test's checks on what happened: each says what it saw and returns the problems it found."""

from __future__ import annotations

from _backfill_history import overlapping_workers
from _deployment import Deployment
from _scale_faults import Faults
from _store_check import STORE_FAULTS
from dagster import AssetKey


def partition_problems(
    instance, assets: tuple[str, ...], partitions: list[str], status: str, relaunched: list[str]
) -> list[str]:
    """Every asset materialized for every partition; the backfill completed (unless a fault's partitions were
    relaunched, which leaves it failed)."""
    problems = []
    for asset in assets:
        done = instance.get_materialized_partitions(AssetKey(asset))
        missing = sorted(set(partitions) - set(done))
        if missing:
            problems.append(f"{asset} not materialized for {missing}")
    if status not in ("COMPLETED", "COMPLETED_SUCCESS") and not relaunched:
        problems.append(f"backfill ended {status}")
    return problems


def worker_problems(steps: list[dict]) -> list[str]:
    """Steps succeeded on more than one worker, two of them at overlapping times."""
    by_worker: dict[str, int] = {}
    for step in steps:
        if step["ok"]:
            by_worker[step["worker"]] = by_worker.get(step["worker"], 0) + 1
    print("steps per worker: " + ", ".join(f"{w} {n}" for w, n in sorted(by_worker.items())))
    pair = overlapping_workers(steps)
    if len(by_worker) < 2:
        return [f"steps ran on {len(by_worker)} worker(s) only"]
    if pair is None:
        return ["no two steps on different workers overlapped in time"]
    a, b = pair
    print(
        f"overlap: {a['step']} of {a['partition']} on {a['worker']} and {b['step']} of {b['partition']} on "
        f"{b['worker']} ran at the same time"
    )
    return []


def fault_problems(faults: Faults, history: dict, deployment: Deployment, relaunched: list[str]) -> list[str]:
    """Both faults happened: the killed transform was retried to success in another run, PostgreSQL restarted."""
    problems = []
    if faults.error:
        problems.append(f"the fault injector failed: {faults.error!r}")
    lost = faults.worker_lost
    if lost is None:
        problems.append("no whole worker was killed holding a transform, or its step was never delivered again")
    else:
        done = [
            s
            for s in history["steps"]
            if s["ok"] and s["step"] == "transform" and s["partition"] == lost["partition"] and s["run"] == lost["run"]
        ]
        if not done:
            problems.append(f"the lost worker's transform of {lost['partition']} did not succeed in its run")
        else:
            print(
                f"whole worker lost: transform of {lost['partition']} delivered again after "
                f"{lost['redelivered_after']:.0f} s and succeeded in the same run on {done[0]['worker']}"
            )
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
            print(
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
        print(
            f"PostgreSQL restart: {reconnects} connection attempts retried by dagster-postgres in the daemon, "
            "webserver and workers (run processes log theirs in the runs)"
        )
    if not relaunched:
        print_failures(history["failures"])
    return problems


def print_failures(failures: list[tuple]) -> None:
    for run_id, partition, message in failures:
        print(f"failed run {run_id[:8]} ({partition}): {message.splitlines()[0][:200]}")


def store_problems(report: dict, n_expected: int) -> list[str]:
    """Every granule in the store exactly once with its rows (``_store_check.verify``'s report)."""
    print(
        "store: {loaded_once} granules loaded once of {n}, {duplicated} duplicated, {missing} missing, "
        "{wrong_counts} with wrong rows, {orphan_rows} orphan rows, {part_files} temporary files".format(
            n=n_expected, **report
        )
    )
    if report["loaded_once"] != n_expected or any(report[key] for key in STORE_FAULTS):
        return [f"the store is not every granule exactly once: {report}"]
    return []
