"""Helpers for the UI tests: a real `dagster dev` subprocess, its GraphQL API, runs launched through it, and headless
Chromium. The fixtures built on them are in ``fixtures_ui.py``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# Keep the instance quiet and offline: no telemetry, no "join the community" dialog over the screenshots.
DAGSTER_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
# What the UI tests serve and run: the busy real minute of 2018, its hour's partition and the two jobs.
BUCKET = "noaa-goes16"
PARTITION = "2018-07-02-04:00"
INGEST_JOB = "ingest_hour"
CLUSTER_JOB = "cluster_window"
GRANULES_2018 = (
    "OR_GLM-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231.nc",
    "OR_GLM-L2-LCFA_G16_s20181830433200_e20181830433400_c20181830433424.nc",
    "OR_GLM-L2-LCFA_G16_s20181830433400_e20181830434000_c20181830434029.nc",
)
RUN_TIMEOUT = 150.0
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

REPOSITORY_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on PythonError { message }
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        schedules { name }
        sensors { name }
        assetNodes {
          assetKey { path }
          groupName
          isPartitioned
          partitionDefinition { type description fmt }
          partitionKeyConnection(limit: 2, ascending: true) { results }
          partitionStats { numPartitions }
          assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
        }
      }
    }
  }
}
"""

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on PresetNotFoundError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status tags { key value } } ... on PythonError { message } }
}
"""

RUN_ERRORS = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { error { message } }
      }
    }
  }
}
"""


SCHEDULE_STATE = """
query ScheduleState($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { name scheduleState { status } }
    ... on PythonError { message }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GraphQLError(AssertionError):
    pass


class DagsterDev:
    """`dagster dev` in its own process group, from the project root, exactly as `make dev` starts it."""

    def __init__(self, home: Path, env: dict[str, str], log_path: Path, instance_yaml: str = DAGSTER_YAML) -> None:
        self.home = home
        self.instance_yaml = instance_yaml
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> DagsterDev:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(self.instance_yaml)
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(self.port)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env={**self.env, "DAGSTER_HOME": str(self.home)},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: webserver, daemon and code server stop together
        )
        return self

    def dagster_cli(self, *arguments: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
        """The ``dagster`` command line a user runs beside this server: same project folder, DAGSTER_HOME and
        environment (what ``make dev``'s shell has)."""
        dagster = Path(sys.executable).with_name("dagster")
        return subprocess.run(
            [str(dagster), *arguments],
            cwd=PROJECT_ROOT,
            env={**self.env, "DAGSTER_HOME": str(self.home)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def schedule_status(self, repository: dict, schedule: str) -> str:
        """The schedule's state as the UI and the daemon see it: ``RUNNING`` or ``STOPPED``."""
        selector = {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "scheduleName": schedule,
        }
        found = self.graphql(SCHEDULE_STATE, {"selector": selector})["scheduleOrError"]
        if found["__typename"] != "Schedule":
            raise GraphQLError(f"schedule {schedule}: {found}")
        return found["scheduleState"]["status"]

    def output(self, tail: int = 8000) -> str:
        try:
            return self.log_path.read_bytes()[-tail:].decode("utf-8", "replace")
        except OSError:
            return "<no output>"

    def fail(self, why: str) -> None:
        raise AssertionError(f"{why}\n--- dagster dev output (tail) ---\n{self.output()}")

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the webserver answers and the code location has loaded (or failed to)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                self.fail(f"dagster dev exited early with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.fail(f"dagster dev did not become ready at {self.url} within {timeout:.0f} s")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        statuses = self.location_statuses()
                        if statuses and all(status != "LOADING" for status, _ in statuses.values()):
                            errors = {name: err for name, (_, err) in statuses.items() if err}
                            if errors:
                                self.fail(f"code location failed to load: {errors}")
                            return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, GraphQLError):
                pass
            time.sleep(0.5)

    def location_statuses(self) -> dict[str, tuple[str, str | None]]:
        data = self.graphql(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        entries = data["workspaceOrError"].get("locationEntries", [])
        return {e["name"]: (e["loadStatus"], (e["locationOrLoadError"] or {}).get("message")) for e in entries}

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise GraphQLError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def stop(self, grace: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of the group (a run worker, a code server) goes too
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self._log.close()


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def chromium_driver(user_data_dir: Path, width: int = 1600, height: int = 1000):
    """A headless Chromium driven by Selenium, with a viewport of exactly width × height CSS pixels."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.set_page_load_timeout(60)
    return driver


def page_text(driver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''") or ""


def shows(text: str, name: str) -> bool:
    """Whether the rendered text shows name, whole or shortened in the middle the way the graph does ("ab…yz")."""
    if name in text:
        return True
    for word in text.split():
        head, sep, tail = word.partition("\u2026")
        if sep and len(head) >= 3 and len(tail) >= 3 and name.startswith(head) and name.endswith(tail):
            return True
    return False


def wait_for_texts(driver, texts: Iterable[str], timeout: float = 60.0) -> str:
    """Poll the rendered page until every text is shown; the page's text on timeout."""
    texts = list(texts)
    deadline = time.monotonic() + timeout
    while True:
        text = page_text(driver)
        missing = [t for t in texts if not shows(text, t)]
        if not missing:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"page {driver.current_url} never showed {missing}; it shows:\n{text[:3000]}")
        time.sleep(0.5)


def show_whole_graph(driver) -> None:
    """Give the asset graph the whole window (hide the navigation and the asset tree), then fit it to the window."""
    from selenium.webdriver.common.action_chains import ActionChains

    for xpath in (
        "//button[normalize-space()='Hide navigation']",
        "//button[.//*[@aria-label='panel_show_right']]",  # the asset tree's toggle
    ):
        buttons = driver.find_elements("xpath", xpath)
        if buttons:
            buttons[0].click()
            wait_until_still(driver)
    # a double click on the graph's background re-fits the graph to its (now wider) viewport
    body = driver.find_element("tag name", "body")
    height = driver.execute_script("return window.innerHeight")
    ActionChains(driver).move_to_element_with_offset(body, 0, -(height // 2) + 130).double_click().perform()


def wait_until_still(driver, timeout: float = 15.0, interval: float = 0.25) -> None:
    """Poll screenshots until two in a row are identical: animations (the graph's fit-to-screen) have finished."""
    deadline = time.monotonic() + timeout
    previous = driver.get_screenshot_as_png()
    while time.monotonic() < deadline:
        time.sleep(interval)
        current = driver.get_screenshot_as_png()
        if current == previous:
            return
        previous = current
    raise AssertionError(f"the page was still changing after {timeout:.0f} s")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR", "PNG without IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# --- the instance `dagster dev` runs on, and runs launched through its API ----------------------------------------


def instance_yaml() -> str:
    """The project's dagster.yaml (if any) with the first-visit dialog and telemetry switched off."""
    project_yaml = PROJECT_ROOT / "dagster.yaml"
    config = yaml.safe_load(project_yaml.read_text()) if project_yaml.is_file() else None
    config = dict(config or {})
    config.update(yaml.safe_load(DAGSTER_YAML))
    return yaml.safe_dump(config, sort_keys=False)


def launch_and_wait(ui, repository, job: str, *, tags=(), run_config=None) -> dict:
    """Launch a job through GraphQL as the launchpad does and wait for the run to end."""
    params = {
        "selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "jobName": job,
        },
        "executionMetadata": {"tags": list(tags)},
    }
    if run_config is not None:
        params["runConfigData"] = run_config
    started = time.monotonic()
    launched = ui.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        run = ui.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        return run if run["status"] in TERMINAL else None

    try:
        run = wait_for(finished, timeout=RUN_TIMEOUT, interval=1.0, what=f"run {run_id} to finish")
    except AssertionError as exc:
        ui.fail(f"{exc}\n--- run events ---\n{run_errors(ui, run_id)}")
    run["runId"] = run_id
    run["seconds"] = time.monotonic() - started
    return run


def run_errors(ui, run_id: str) -> str:
    try:
        logs = ui.graphql(RUN_ERRORS, {"runId": run_id})["logsForRun"]
    except Exception as exc:  # noqa: BLE001 - only for the failure message
        return f"<could not read the run's events: {exc}>"
    lines = []
    for event in logs.get("events", []):
        if event.get("error"):
            lines.append(f"{event['__typename']}: {event['error']['message']}")
        elif event.get("level") in ("ERROR", "CRITICAL", "WARNING"):
            lines.append(f"{event['__typename']} [{event.get('stepKey')}]: {event.get('message')}")
    return "\n".join(lines[-30:]) or "<no error events>"
