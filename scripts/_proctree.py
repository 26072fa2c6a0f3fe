"""A process's children and CPU time, from /proc: which Celery pool process to kill, what the deployment cost."""

from __future__ import annotations

import glob
import os
from pathlib import Path


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
