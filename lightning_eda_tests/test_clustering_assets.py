"""The clustering assets end to end on real flashes: S3 → DuckDB → features → evaluators → k-means → map."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.image
import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import adjusted_rand_score

from lightning_eda.analysis.storm_scale import segment_storms, storm_kmeans
from lightning_eda.ml import silhouette_score
from lightning_eda.orchestration.checks import all_checks
from lightning_eda.store import database

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rows(data_dir: Path, sql: str):
    with database.connect(data_dir / "glm.duckdb", read_only=True) as con:
        return con.execute(sql).fetchall()


def test_features_cover_the_window_and_map_back(pipeline):
    data_dir, *_ = pipeline
    (n,) = rows(data_dir, "SELECT count(*) FROM flash_features")[0]
    assert n == 853  # every real flash of the minute has valid coordinates and a unique key
    (start, end, n_input) = rows(data_dir, "SELECT window_start, window_end, n_input FROM feature_window")[0]
    assert (start.hour, end.hour, n_input) == (4, 5, 853)


def test_the_window_carries_the_storms_and_each_flash_its_storm(pipeline):
    data_dir, result, _ = pipeline
    (storm_count, reason) = rows(data_dir, "SELECT storm_count, storm_reason FROM feature_window")[0]
    assert storm_count == 29 and reason.startswith("29 storms: cores of the flash count")  # as tobac: 29 segments
    storms = rows(data_dir, "SELECT DISTINCT storm FROM flash_features WHERE storm >= 0 ORDER BY 1")
    assert [r[0] for r in storms] == list(range(29))
    meta = result.asset_materializations_for_node("preprocessor")[0].metadata
    assert meta["storm_count"].value == 29 and meta["storm_reason"].value == reason
    for node in ("elbow_evaluator", "silhouette_evaluator"):  # drawn around it, though their ks are set here
        assert result.asset_materializations_for_node(node)[0].metadata["storm_count"].value == 29


def test_evaluation_table_and_chosen_k(pipeline):
    data_dir, result, _ = pipeline
    evaluation = rows(
        data_dir, "SELECT k, inertia, silhouette, silhouette_sample_size FROM cluster_evaluation ORDER BY k"
    )
    assert [r[0] for r in evaluation] == list(range(1, 9))
    inertias = [r[1] for r in evaluation]
    assert all(a >= b * 0.999 for a, b in itertools.pairwise(inertias))  # more clusters never fit worse
    assert evaluation[0][2] is None and all(r[2] is not None for r in evaluation[1:])
    assert all(r[3] == 500 for r in evaluation[1:])  # 853 > 500: scored on a seeded sample, and it says so
    meta = result.asset_materializations_for_node("silhouette_evaluator")[0].metadata
    assert meta["sampled"].value is True and meta["sample_size"].value == 500
    meta = result.asset_materializations_for_node("kmeans_cluster")[0].metadata
    # k=auto's default criterion: the storm count, not the best silhouette of the ks the evaluators tried
    assert (meta["k"].value, meta["k_criterion"].value, meta["storm_count"].value) == (29, "storms", 29)
    assert meta["k_reason"].value.startswith("29 storms")


def test_clusters_are_consistent_with_a_refit(pipeline):
    data_dir, result, _ = pipeline
    k = result.asset_materializations_for_node("kmeans_cluster")[0].metadata["k"].value
    features = np.array(rows(data_dir, "SELECT f_x, f_y FROM flash_features ORDER BY row_id"))
    labels = np.array(
        [
            r[0]
            for r in rows(
                data_dir,
                "SELECT c.cluster FROM flash_features f JOIN flash_cluster c "
                "USING (source_file, flash_id) ORDER BY f.row_id",
            )
        ]
    )
    assert len(labels) == len(features) and set(labels) == set(range(k))
    summary = rows(data_dir, "SELECT cluster, lat, lon, n_flashes, total_energy FROM cluster_summary ORDER BY cluster")
    assert [r[0] for r in summary] == list(range(k))
    assert sum(r[3] for r in summary) == len(features)
    assert all(-90 <= r[1] <= 90 and -180 <= r[2] < 180 and r[4] > 0 for r in summary)
    storm = np.array([r[0] for r in rows(data_dir, "SELECT storm FROM flash_features ORDER BY row_id")])
    xy_km = np.array(rows(data_dir, "SELECT x_km, y_km FROM flash_features ORDER BY row_id"))
    refit = storm_kmeans(features, segment_storms(xy_km[:, 0], xy_km[:, 1]))
    np.testing.assert_array_equal(labels, refit.labels)  # k-means from the storms the preprocessor kept
    in_storms = storm >= 0
    assert adjusted_rand_score(storm[in_storms], labels[in_storms]) >= 0.9
    meta = result.asset_materializations_for_node("kmeans_cluster")[0].metadata
    assert meta["silhouette"].value == pytest.approx(silhouette_score(features, labels), abs=1e-9)  # 853 < sample


def test_plots_are_pngs_on_disk_and_in_the_ui_metadata(pipeline):
    data_dir, result, _ = pipeline
    for name, node, key in (
        ("elbow.png", "elbow_evaluator", "plot"),
        ("silhouette.png", "silhouette_evaluator", "plot"),
        ("cluster_map.png", "cluster_map", "map"),
        ("storm_flash_rate.png", "storm_flash_rate", "plot"),
    ):
        path = data_dir / "plots" / name
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert matplotlib.image.imread(path).shape[0] > 300
        markdown = result.asset_materializations_for_node(node)[0].metadata[key].value
        assert markdown.startswith("![") and "data:image/png;base64," in markdown


def test_the_summary_describes_each_storm(pipeline):
    data_dir, result, _ = pipeline
    stats = rows(
        data_dir,
        "SELECT cluster, n_flashes, time_start, time_end, flash_rate, mean_energy, median_energy, "
        "mean_area, median_area, extent_km, duration_min, n_jumps FROM cluster_summary",
    )
    for _cluster, n, start, end, rate, mean_e, median_e, mean_a, median_a, extent, duration, jumps in stats:
        assert duration == pytest.approx((end - start).total_seconds() / 60)
        assert rate == pytest.approx(n / max(duration, 1.0))
        assert mean_e > 0 and median_e > 0 and mean_a > 0 and median_a > 0 and extent > 0
        assert jumps == 0  # a minute of data is far too short for the 2σ algorithm's 12 minutes of history
    per_minute = rows(data_dir, "SELECT cluster, sum(flashes) FROM storm_rate GROUP BY 1 ORDER BY 1")
    assert per_minute == [(c, n) for c, n, *_ in sorted(stats)]
    storms = result.asset_materializations_for_node("kmeans_cluster")[0].metadata["largest_storms"].value
    assert "flash_rate" in storms and "extent_km" in storms


def test_every_check_passes_on_the_real_hour(pipeline):
    _, result, ingest = pipeline
    evaluations = result.get_asset_check_evaluations() + ingest.get_asset_check_evaluations()
    assert len(evaluations) == sum(len(list(c.check_keys)) for c in all_checks) == 9  # 7 on load, 2 after
    failed = [(e.check_name, e.metadata) for e in evaluations if not e.passed]
    assert not failed


def test_numbers_in_the_metadata_stay_numbers(pipeline):
    """Dagster plots a key over time only while its type holds: a missing number is left out, never 'none'/'n/a'."""
    _, result, _ = pipeline
    kinds = {}
    for node in ("preprocessor", "elbow_evaluator", "silhouette_evaluator", "kmeans_cluster"):
        for key, entry in result.asset_materializations_for_node(node)[0].metadata.items():
            kinds[(node, key)] = type(entry.value)
            assert entry.value not in ("none", "n/a"), (node, key)
    assert kinds[("elbow_evaluator", "knee")] is int and kinds[("silhouette_evaluator", "best_k")] is int
    assert kinds[("kmeans_cluster", "silhouette")] is float and kinds[("kmeans_cluster", "k")] is int
    assert kinds[("kmeans_cluster", "storm_count")] is int and kinds[("kmeans_cluster", "k_criterion")] is str
    assert kinds[("preprocessor", "storm_count")] is int and kinds[("preprocessor", "storm_reason")] is str
    assert kinds[("preprocessor", "flashes_kept")] is int


def test_the_plots_are_where_the_analysis_store_says(pipeline):
    from lightning_eda.analysis.analysis_store import PLOT_FILES, AnalysisStore
    from lightning_eda.store.parquet_store import ParquetStore

    data_dir, result, _ = pipeline
    analyses = AnalysisStore(ParquetStore(data_dir))
    for plot, node, key in (("elbow", "elbow_evaluator", "plot_path"), ("cluster_map", "cluster_map", "map_path")):
        reported = result.asset_materializations_for_node(node)[0].metadata[key].value
        assert Path(reported) == analyses.plot_path(plot) == data_dir / "plots" / PLOT_FILES[plot]


def test_the_analysis_store_owns_its_files_and_a_new_window_drops_the_old_fits(tmp_path):
    from datetime import datetime

    import pandas as pd

    from lightning_eda.analysis.analysis_store import AnalysisStore
    from lightning_eda.analysis.features import preprocess
    from lightning_eda.analysis.window import AnalysisWindow
    from lightning_eda.store.parquet_store import ParquetStore

    analyses = AnalysisStore(ParquetStore(tmp_path))
    assert analyses.plots_dir == tmp_path / "plots" and analyses.fits_path.parent == tmp_path / "store" / "analysis"
    flashes = pd.DataFrame(
        {
            "source_file": ["a.nc"] * 3,
            "flash_id": [1, 2, 3],
            "lat": [10.0, 10.5, 11.0],
            "lon": [-60.0, -60.5, -61.0],
            "time_start": pd.to_datetime(["2018-07-02 04:00:01"] * 3),
            "time_end": pd.to_datetime(["2018-07-02 04:00:02"] * 3),
            "energy": [1e-15] * 3,
            "quality_flag": [0] * 3,
            "area": [1e8] * 3,
        }
    )
    result = preprocess(flashes)
    window = AnalysisWindow(
        "noaa-goes16",
        datetime(2018, 7, 2, 4),
        datetime(2018, 7, 2, 5),
        result.transform,
        n_input=3,
        n_features=3,
        dropped=result.dropped,
    )
    analyses.fits_path.parent.mkdir(parents=True, exist_ok=True)
    analyses.fits_path.write_bytes(b"fits of the previous features")
    analyses.write_window(window, result.features)
    analyses.write_scores("inertia", {2: 1.5, 1: 3.0}, window=window, n_points=3)
    assert not analyses.fits_path.exists()
    with analyses.connect() as con:
        assert analyses.read_window(con) == window
        scores = con.execute("SELECT k, inertia, n_points, window_start FROM cluster_evaluation ORDER BY k").fetchall()
    assert scores == [(1, 3.0, 3, datetime(2018, 7, 2, 4)), (2, 1.5, 3, datetime(2018, 7, 2, 4))]
    with pytest.raises(ValueError, match="not an evaluation column"):
        analyses.write_scores("knee", {}, window=window, n_points=3)


def test_a_window_written_before_storm_segmentation_asks_for_the_preprocessor_again(tmp_path):
    from datetime import datetime

    import pandas as pd

    from lightning_eda.analysis.analysis_store import AnalysisStore
    from lightning_eda.analysis.features import FeatureTransform
    from lightning_eda.analysis.window import AnalysisWindow
    from lightning_eda.store.parquet_store import ParquetStore, write_parquet

    tables = ParquetStore(tmp_path)
    analyses = AnalysisStore(tables)
    transform = FeatureTransform.fit(np.array([10.0, 11.0]), np.array([-60.0, -61.0]))
    window = AnalysisWindow("noaa-goes16", datetime(2018, 7, 2, 4), datetime(2018, 7, 2, 5), transform, storm_count=2)
    analyses.write_table("feature_window", pd.DataFrame([window.to_row()]))
    with analyses.connect() as con:
        assert analyses.read_window(con).storm_count == 2
    old_row = {k: v for k, v in window.to_row().items() if k not in ("storm_count", "storm_reason")}
    write_parquet(pa.Table.from_pandas(pd.DataFrame([old_row])), tables.analysis_file("feature_window"))
    with analyses.connect() as con, pytest.raises(LookupError, match="materialize `preprocessor` again"):
        analyses.read_window(con)
