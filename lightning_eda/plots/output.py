"""PNG bytes out of a figure, onto disk and into markdown.

Saving and markdown need no plotting library, so the Dagster wiring can import this module for free; matplotlib is
imported only when :func:`new_figure` makes a figure.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

from lightning_eda.files import atomic_write

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 130
#: (width, height) in inches: the maps render to 1300 x 910 pixels, the curves to 1040 x 650.
MAP_FIGSIZE = (10.0, 7.0)
CURVE_FIGSIZE = (8.0, 5.0)


def new_figure(figsize: tuple[float, float], *, layout: str | None = "constrained"):
    """A white :class:`matplotlib.figure.Figure` on its own Agg canvas, never through ``pyplot``.

    No global figure state is shared, so figures can be drawn in several threads at once.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout=layout, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    """The figure as PNG bytes of exactly its size times :data:`DPI`, with no timestamp or software tag."""
    buf = io.BytesIO()
    # No bbox_inches="tight": the pixel size stays exactly figsize * DPI, whatever the labels.
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def save_png(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Write PNG bytes to ``path`` atomically and return the path.

    The bytes go to a temporary file in the same directory, are flushed to disk, then renamed over ``path``
    (``os.replace``), so readers see either the old file or the complete new one, never a partial write.
    Parent directories are created. Raises ``ValueError`` if ``data`` is not a PNG.
    """
    if not bytes(data[:8]) == PNG_SIGNATURE:
        raise ValueError(f"save_png: data does not start with the PNG signature (got {bytes(data[:8])!r})")
    return atomic_write(path, lambda handle: handle.write(data))


def png_markdown(data: bytes, alt: str) -> str:
    """Markdown image with the PNG inlined as a data URI, for ``MetadataValue.md``.

    Brackets and backslashes in ``alt`` are escaped and newlines flattened so the markdown stays one image.
    """
    safe_alt = " ".join(alt.split()).replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"
