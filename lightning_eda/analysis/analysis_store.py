"""Where the analyses keep what they make: tables under ``store/analysis/``, the k-means fits, and ``plots/``.

One object owns these paths, so an asset, the CLI and a new analysis (storm tracks, gridded products) never derive
them again: :meth:`AnalysisStore.write_table` writes a table, :meth:`AnalysisStore.save_plot` a PNG with what the UI
shows of it, :meth:`AnalysisStore.write_window` / :meth:`AnalysisStore.read_window` the window every analysis shares,
and :attr:`AnalysisStore.fits_path` is the k-means fits' file; :attr:`AnalysisStore.tracks` keeps the storm tracks
hour by hour. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from lightning_eda.analysis.window import AnalysisWindow
from lightning_eda.store import catalog, database
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.store.track_hours import TrackHours
from lightning_eda.utc import utc_now

PLOTS_DIR = "plots"
FITS_FILE = "kmeans_fits.npz"
#: The evaluators' tables, by the score they hold (the view ``cluster_evaluation`` joins them).
SCORE_TABLES = {"inertia": "elbow_scores", "silhouette": "silhouette_scores"}
#: The plots' file names, by what they draw (in the order the CLI lists them).
PLOT_FILES = {
    "cluster_map": "cluster_map.png",
    "elbow": "elbow.png",
    "silhouette": "silhouette.png",
    "flash_extent_density": "fed_map.png",
    "gridded_fed": "gridded_fed_map.png",
    "storm_flash_rate": "storm_flash_rate.png",
    "storm_tracks": "storm_tracks.png",
    "track_flash_rate": "track_flash_rate.png",
}


@dataclass(frozen=True)
class SavedPlot:
    """A plot on disk and the markdown that shows it inline in the UI."""

    path: Path
    markdown: str


class AnalysisStore:
    """The analyses' side of the data folder ``<data_dir>``."""

    def __init__(self, tables: ParquetStore):
        self.tables = tables
        self.plots_dir = tables.data_dir / PLOTS_DIR
        self.fits_path = tables.analysis_root / FITS_FILE
        self.tracks = TrackHours(tables)

    def connect(self, hours: Sequence[HourKey] = ()) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB over the store's views: the analyses' tables, and the GLM tables holding ``hours`` only
        (none by default: the steps after the preprocessor read the analyses' tables; it passes its window's hours).

        Why not every hour: views over the whole store list every hour folder when made, 7.9 s a step with a year
        of hours in the store.
        """
        return catalog.open_views(self.tables, hours=hours)

    def write_table(self, table: str, frame: pd.DataFrame) -> None:
        self.tables.write_analysis(table, frame)

    def write_scores(
        self,
        column: str,
        scores: dict[int, float],
        *,
        window: AnalysisWindow,
        n_points: int,
        sample_size: int | None = None,
    ) -> None:
        """One evaluator's score by k for the window (each evaluator has its own table: they may run together)."""
        if column not in SCORE_TABLES:
            raise ValueError(f"not an evaluation column: {column!r}")
        ks = sorted(scores)
        frame = pd.DataFrame(
            {
                "k": [int(k) for k in ks],
                column: [float(scores[k]) for k in ks],
                "n_points": n_points,
                "window_start": pd.Timestamp(window.start),
                "window_end": pd.Timestamp(window.end),
                "evaluated_at": pd.Timestamp(utc_now()),
            }
        )
        if column == "silhouette":
            frame["silhouette_sample_size"] = pd.array([sample_size] * len(frame), dtype="Int32")
        self.write_table(SCORE_TABLES[column], frame)

    def write_window(self, window: AnalysisWindow, features: pd.DataFrame) -> None:
        """Replace the preprocessed flashes and their window; the fits of the previous features go."""
        self.fits_path.unlink(missing_ok=True)
        self.write_table("flash_features", features)
        self.write_table("feature_window", pd.DataFrame([window.to_row()]))

    @staticmethod
    def read_window(con: duckdb.DuckDBPyConnection) -> AnalysisWindow:
        """The window of the preprocessed flashes; ``LookupError`` before the preprocessor has run."""
        row = database.read_window_row(con)
        if row is None:
            raise LookupError("no preprocessed flashes: materialize `preprocessor` first")
        if pd.isna(row.get("storm_count")):
            raise LookupError("the preprocessed flashes predate storm segmentation: materialize `preprocessor` again")
        return AnalysisWindow.from_row(row)

    def plot_path(self, plot: str) -> Path:
        """Where the plot named in :data:`PLOT_FILES` is saved."""
        return self.plots_dir / PLOT_FILES[plot]

    def save_plot(self, png: bytes, plot: str, alt: str) -> SavedPlot:
        """Write the PNG of ``plot`` (a key of :data:`PLOT_FILES`); ``alt`` names it where the UI shows it."""
        from lightning_eda.plots.output import png_markdown, save_png

        path = save_png(png, self.plot_path(plot))
        return SavedPlot(path, png_markdown(png, alt))
