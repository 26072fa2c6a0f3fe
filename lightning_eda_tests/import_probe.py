"""What importing some modules loads, seen from a fresh interpreter (the test process has imported everything)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable


def packages_loaded_by(modules: Iterable[str], prefixes: Iterable[str]) -> list[str]:
    """The top-level packages whose names start with one of ``prefixes`` that importing ``modules`` loads."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0].startswith({tuple(prefixes)!r})}}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip())
