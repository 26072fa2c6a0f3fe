"""Writing files so that readers never see half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], None],
    *,
    expected_size: int | None = None,
    size_error: Callable[[int], Exception] = lambda size: ValueError(f"wrote {size} bytes"),
    suffix: str = ".tmp",
) -> Path:
    """Run ``write(handle)`` into a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see the old file or the complete new one, never a partial write; a failure (or a size other than
    ``expected_size``, reported by ``size_error(size)``) removes the temporary file and leaves ``path`` untouched.
    The file gets the usual 0644 permissions (``mkstemp`` creates 0600). Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if expected_size is not None:
            size = os.path.getsize(tmp_name)
            if size != expected_size:
                raise size_error(size)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
