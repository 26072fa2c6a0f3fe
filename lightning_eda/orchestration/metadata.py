"""What the UI shows beside each materialization (tables, plots, paths), and how a user's error fails a step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue

from lightning_eda.analysis.analysis_store import SavedPlot
from lightning_eda.analysis.runs import Markdown, Report
from lightning_eda.store.verify import damaged_hour_note


def markdown_table(rows: Iterable[Sequence], header: Sequence[str], max_cell: int = 200) -> MetadataValue:
    """A markdown table; ``|`` inside cells is replaced so a message cannot break the table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "/")[:max_cell] for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def metadata_values(facts: Mapping[str, object]) -> dict:
    """Dagster's metadata for a report's facts: a plot shows inline under its key and names its file under
    ``<key>_path``; markdown renders; dicts show as JSON; numbers, booleans and text stay as they are."""
    values = {}
    for key, value in facts.items():
        if isinstance(value, SavedPlot):
            values[key] = MetadataValue.md(value.markdown)
            values[f"{key}_path"] = MetadataValue.path(str(value.path))
        elif isinstance(value, Markdown):
            values[key] = MetadataValue.md(value)
        elif isinstance(value, dict):
            values[key] = MetadataValue.json(value)
        elif isinstance(value, Path):
            values[key] = MetadataValue.path(str(value))
        else:
            values[key] = value
    return values


def materialized(context: AssetExecutionContext, analysis: Callable[[], Report]) -> MaterializeResult:
    """Run one plain analysis, log its line and return its facts as the materialization's metadata.

    A setting or an input the user can fix (``ValueError``, ``LookupError``) fails the step with the plain module's
    message, without a traceback. A read that meets a damaged file of the store (DuckDB's or Arrow's error quoting
    its path) fails with one line naming the hour and the command that heals it.
    """
    try:
        report = analysis()
    except (duckdb.Error, pa.ArrowException, OSError, ValueError, LookupError) as exc:
        note = damaged_hour_note(str(exc))
        if note is not None:
            raise Failure(description=note) from None
        if isinstance(exc, ValueError | LookupError) and not isinstance(exc, duckdb.Error):
            raise Failure(description=str(exc)) from None
        raise
    context.log.info(report.log)
    return MaterializeResult(metadata=metadata_values(report.metadata))
