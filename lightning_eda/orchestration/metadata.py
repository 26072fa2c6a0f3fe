"""What the UI shows beside each materialization: tables, plots, paths."""

from __future__ import annotations

from typing import Iterable, Sequence

from dagster import MetadataValue

from lightning_eda.orchestration.resources import LightningDataResource
from lightning_eda.plots.output import png_markdown, save_png


def markdown_table(rows: Iterable[Sequence], header: Sequence[str], max_cell: int = 200) -> MetadataValue:
    """A markdown table; ``|`` inside cells is replaced so a message cannot break the table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "/")[:max_cell] for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def saved_plot(data: LightningDataResource, png: bytes, file_name: str, alt: str, key: str = "plot") -> dict:
    """Save a plot under the data folder; the metadata shows it inline in the UI and names the file."""
    path = save_png(png, data.root / "plots" / file_name)
    return {key: MetadataValue.md(png_markdown(png, alt)), f"{key}_path": MetadataValue.path(str(path))}
