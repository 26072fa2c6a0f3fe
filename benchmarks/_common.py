"""What every benchmark's report shares: the machine's state beside each figure, timing, peak memory, and the report
itself, printed as it grows and kept in ``benchmarks/results/``.

The benchmarks run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``: ``import _common``.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_GLM_DIR = ROOT.parent / "shared" / "data" / "glm"

T = TypeVar("T")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine, what to read each timing against."""
    return "({:.2f}, {:.2f}, {:.2f})".format(*os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def cores() -> int:
    """The cores this process may run on (fewer than ``os.cpu_count()`` under a CPU affinity mask)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine() -> str:
    """The line that opens every report: the cores available and the load when the benchmark started."""
    return f"cores available: {cores()}, load average {load_average()}"


def versions(*modules: str) -> str:
    """``python X.Y.Z`` and the version of each named module (netCDF4 with the HDF5 library it was built with)."""
    parts = [f"python {platform.python_version()}"]
    for name in modules:
        module = importlib.import_module(name)
        version = f"{name} {module.__version__}"
        if name == "netCDF4":
            version += f" (HDF5 {module.__hdf5libversion__})"
        parts.append(version)
    return ", ".join(parts)


def real_granules(glm_dir: Path) -> list[Path]:
    """The real LCFA granules the ingest benchmarks copy; exits with status 2 when ``glm_dir`` has none."""
    granules = sorted(glm_dir.glob("OR_GLM-L2-LCFA_*.nc"))
    if not granules:
        print(f"no real granules in {glm_dir}", file=sys.stderr)
        raise SystemExit(2)
    return granules


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``fn()`` took, and what it returned."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def high_water_mib() -> float:
    """This process image's peak resident set (VmHWM; ``ru_maxrss`` would include a forking parent's peak). Linux."""
    return _status_mib("VmHWM")


def rss_mib() -> float:
    """This process's resident set now (VmRSS). Linux."""
    return _status_mib("VmRSS")


def reset_high_water() -> None:
    """Reset the peak resident set to the current one, so a later :func:`high_water_mib` sees only what follows."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


class Report:
    """A benchmark's report: each line printed at once (a long run shows progress) and kept for its results file.

    Parameters
    ----------
    name : str
        The benchmark's name: its results go to ``benchmarks/results/<name>.txt`` unless ``path`` says otherwise.
    path : Path, optional
        Where :meth:`write` puts the report.
    """

    def __init__(self, name: str, path: Path | None = None) -> None:
        self.path = path or RESULTS_DIR / f"{name}.txt"
        self.lines: list[str] = []

    def say(self, *lines: str) -> None:
        """Print ``lines`` (none: an empty line) and keep them."""
        for text in lines or ("",):
            print(text, flush=True)
            self.lines.extend(text.splitlines() or [""])

    def write(self) -> None:
        """Write the kept lines under a header naming the time and the command that made them."""
        command = " ".join(["python", str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *sys.argv[1:]])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC {command}\n" + "\n".join(self.lines) + "\n"
        )
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        print(f"written to {shown}")
