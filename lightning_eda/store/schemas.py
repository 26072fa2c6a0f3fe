"""The store's tables: every column's name and Arrow type, written once, and the one cast into them.

The decoder (:mod:`lightning_eda.goes.granule`), the ingest, the clustering and ``glm.duckdb``'s views all take their
columns from here. Id widths follow the LCFA product: ``flash_id`` and ``parent_flash_id`` are uint16 in the files
(int32 here), group and event ids uint32 (int64 here). No Dagster here.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_TS = pa.timestamp("us")
_SOURCE = pa.dictionary(pa.int32(), pa.string())
"""``source_file`` of the data tables: one name for every row of a granule, so dictionary-encoded in memory too."""

GEOMETRY_COLUMN = "geometry"
POINT_TYPE = pa.struct([pa.field("x", pa.float64(), nullable=False), pa.field("y", pa.float64(), nullable=False)])
"""GeoArrow's native ``point`` encoding: x = longitude, y = latitude, the same float64 values as ``lon``/``lat``."""
GEOPARQUET_METADATA = {
    b"geo": json.dumps(
        {
            "version": "1.1.0",
            "primary_column": GEOMETRY_COLUMN,
            # no "crs": GeoParquet's default, OGC:CRS84 (WGS 84 longitude, latitude), which GLM positions are in
            "columns": {GEOMETRY_COLUMN: {"encoding": "point", "geometry_types": ["Point"]}},
        }
    ).encode()
}
"""GeoParquet 1.1 file metadata of the flash, group and event files: geopandas, QGIS and lonboard read them as
points. The schemas below carry it; :func:`conform` appends the geometry column it names, derived from ``lon`` and
``lat`` (the column is in the files only: readers of the store, the decoder and the DuckDB views use the schema's
own columns)."""

GLM_SCHEMAS: dict[str, pa.Schema] = {
    "glm_file": pa.schema(
        [
            ("source_file", pa.string()),
            ("platform", pa.string()),
            ("orbital_slot", pa.string()),
            ("time_start", _TS),
            ("time_end", _TS),
            ("n_flashes", pa.int32()),
            ("n_groups", pa.int32()),
            ("n_events", pa.int32()),
            ("size_bytes", pa.int64()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("loaded_at", _TS),
        ]
    ),
    "glm_flash": pa.schema(
        [
            ("source_file", _SOURCE),
            ("flash_id", pa.int32()),
            ("time_start", _TS),
            ("time_end", _TS),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("energy", pa.float64()),
            ("area", pa.float64()),
            ("area_saturated", pa.bool_()),
            ("quality_flag", pa.int16()),
        ],
        metadata=GEOPARQUET_METADATA,
    ),
    "glm_group": pa.schema(
        [
            ("source_file", _SOURCE),
            ("group_id", pa.int64()),
            ("parent_flash_id", pa.int32()),
            ("time", _TS),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("energy", pa.float64()),
            ("area", pa.float64()),
            ("area_saturated", pa.bool_()),
            ("quality_flag", pa.int16()),
        ],
        metadata=GEOPARQUET_METADATA,
    ),
    "glm_event": pa.schema(
        [
            ("source_file", _SOURCE),
            ("event_id", pa.int64()),
            ("parent_group_id", pa.int64()),
            ("time", _TS),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("energy", pa.float64()),
        ],
        metadata=GEOPARQUET_METADATA,
    ),
}
GLM_TABLES = tuple(GLM_SCHEMAS)
DATA_TABLES = ("glm_flash", "glm_group", "glm_event")
COUNT_COLUMN = {"glm_flash": "n_flashes", "glm_group": "n_groups", "glm_event": "n_events"}
"""The ``glm_file`` column counting each data table's rows of a granule."""
ID_COLUMN = {"glm_flash": "flash_id", "glm_group": "group_id", "glm_event": "event_id"}
"""Each data table's id: unique only inside one granule, so rows are keyed by (``source_file``, id)."""

ANALYSIS_SCHEMAS: dict[str, pa.Schema] = {
    "flash_features": pa.schema(
        [
            *[GLM_SCHEMAS["glm_flash"].field(name) for name in ("source_file", "flash_id", "time_start", "time_end")],
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("energy", pa.float64()),
            ("quality_flag", pa.int16()),
            ("area", pa.float64()),
            ("row_id", pa.int64()),
            ("x_km", pa.float64()),
            ("y_km", pa.float64()),
            ("f_x", pa.float64()),
            ("f_y", pa.float64()),
            ("f_t", pa.float64()),
            ("storm", pa.int32()),  # storm region of the flash (segment_storms), -1 outside every storm
        ]
    ),
    "feature_window": pa.schema(
        [
            ("bucket", pa.string()),
            ("window_start", _TS),
            ("window_end", _TS),
            ("n_input", pa.int64()),
            ("n_features", pa.int64()),
            ("dropped", pa.string()),
            ("transform", pa.string()),
            ("box", pa.string()),
            ("time_weight_km_per_min", pa.float64()),
            ("storm_count", pa.int64()),
            ("storm_reason", pa.string()),
        ]
    ),
    # Each evaluator writes its own file (they run at the same time); the view cluster_evaluation joins them.
    "elbow_scores": pa.schema(
        [
            ("k", pa.int32()),
            ("inertia", pa.float64()),
            ("n_points", pa.int32()),
            ("window_start", _TS),
            ("window_end", _TS),
            ("evaluated_at", _TS),
        ]
    ),
    "silhouette_scores": pa.schema(
        [
            ("k", pa.int32()),
            ("silhouette", pa.float64()),
            ("silhouette_sample_size", pa.int32()),
            ("n_points", pa.int32()),
            ("window_start", _TS),
            ("window_end", _TS),
            ("evaluated_at", _TS),
        ]
    ),
    "flash_cluster": pa.schema([("source_file", pa.string()), ("flash_id", pa.int32()), ("cluster", pa.int32())]),
    "flash_extent_density": pa.schema(
        [
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("flash_count", pa.int64()),
            ("x_km", pa.float64()),
            ("y_km", pa.float64()),
            ("cell_km", pa.float64()),
        ]
    ),
    # The gridded products' N-minute accumulations on the ABI fixed grid, one row per non-empty cell (grids/).
    "grid_cell": pa.schema(
        [
            ("time", _TS),
            ("minutes", pa.int32()),
            ("x", pa.float64()),
            ("y", pa.float64()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("flash_extent_density", pa.int32()),
            ("minimum_flash_area", pa.float64()),
            ("total_optical_energy", pa.float64()),
            ("average_flash_area", pa.float64()),
            ("flash_centroid_density", pa.int32()),
            ("resolution_km", pa.float64()),
        ]
    ),
    "cluster_summary": pa.schema(
        [
            ("cluster", pa.int64()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("n_flashes", pa.int64()),
            ("total_energy", pa.float64()),
            ("time_start", _TS),
            ("time_end", _TS),
            ("flash_rate", pa.float64()),
            ("mean_energy", pa.float64()),
            ("median_energy", pa.float64()),
            ("mean_area", pa.float64()),
            ("median_area", pa.float64()),
            ("extent_km", pa.float64()),
            ("duration_min", pa.float64()),
            ("n_jumps", pa.int64()),
            ("first_jump", _TS),
        ]
    ),
    "storm_rate": pa.schema([("cluster", pa.int64()), ("minute", _TS), ("flashes", pa.int64())]),
    "lightning_jump": pa.schema(
        [
            ("cluster", pa.int64()),
            ("time", _TS),
            ("flash_rate", pa.float64()),
            ("dfrdt", pa.float64()),
            ("threshold", pa.float64()),
            ("jump", pa.bool_()),
        ]
    ),
}


#: The storm tracks' tables, kept one folder per hour under ``store/tracks/`` (columns: docs/tracking.md). Ids are
#: int64, nullable where a track may have none (``parent_id``, a flash in no storm); ``track_state`` is what the
#: next hour continues, its floats float64 so that continuing from the store is continuing in memory.
TRACK_SCHEMAS: dict[str, pa.Schema] = {
    "storm_track": pa.schema(
        [
            ("track_id", pa.int64()),
            ("frame_start", _TS),
            ("frame_end", _TS),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("x_km", pa.float64()),
            ("y_km", pa.float64()),
            ("n_flashes", pa.int64()),
            ("flash_rate", pa.float64()),
            ("extent_km", pa.float64()),
            ("total_energy", pa.float64()),
            ("mean_area", pa.float64()),
            ("parent_id", pa.int64()),
            ("event", pa.string()),
        ]
    ),
    "flash_track": pa.schema(
        [
            ("source_file", pa.string()),
            ("flash_id", pa.int32()),
            ("time_start", _TS),
            ("frame_start", _TS),
            ("track_id", pa.int64()),
        ]
    ),
    "track_event": pa.schema(
        [("frame_start", _TS), ("event", pa.string()), ("track_id", pa.int64()), ("other_track_id", pa.int64())]
    ),
    "track_summary": pa.schema(
        [
            ("track_id", pa.int64()),
            ("parent_id", pa.int64()),
            ("merged_into", pa.int64()),
            ("start", _TS),
            ("end", _TS),
            ("duration_min", pa.float64()),
            ("n_frames", pa.int64()),
            ("n_flashes", pa.int64()),
            ("path_km", pa.float64()),
            ("mean_speed_ms", pa.float64()),
            ("peak_flash_rate", pa.float64()),
            ("n_jumps", pa.int64()),
            ("first_jump", _TS),
            ("is_open", pa.bool_()),
        ]
    ),
    "track_rate": pa.schema(
        [
            ("track_id", pa.int64()),
            ("period_start", _TS),
            ("flash_rate", pa.float64()),
            ("dfrdt", pa.float64()),
            ("threshold", pa.float64()),
            ("flagged", pa.bool_()),
            ("jump", pa.bool_()),
        ]
    ),
    "track_state": pa.schema(
        [
            ("track_id", pa.int64()),
            ("parent_id", pa.int64()),
            ("start", _TS),
            ("last_seen", _TS),
            ("end", _TS),
            ("x_km", pa.float64()),
            ("y_km", pa.float64()),
            ("lat", pa.float64()),
            ("lon", pa.float64()),
            ("vx_ms", pa.float64()),
            ("vy_ms", pa.float64()),
            ("missed", pa.int64()),
            ("n_frames", pa.int64()),
            ("n_flashes", pa.int64()),
            ("last_n_flashes", pa.int64()),
            ("path_km", pa.float64()),
            ("peak_flash_rate", pa.float64()),
            ("n_jumps", pa.int64()),
            ("first_jump", _TS),
            ("recent_rates", pa.list_(pa.float64())),
            ("last_flagged", _TS),
        ]
    ),
}


def empty_table(table: str) -> pa.Table:
    """A table with no rows, as the store writes it (a data table with its empty geometry column)."""
    schema = GLM_SCHEMAS.get(table) or ANALYSIS_SCHEMAS[table]
    return conform(schema.empty_table(), schema)


def is_geoparquet(schema: pa.Schema) -> bool:
    """Whether tables of ``schema`` are stored as GeoParquet (with a point geometry column)."""
    return bool(schema.metadata) and b"geo" in schema.metadata


def point_geometry(lon: pa.ChunkedArray, lat: pa.ChunkedArray) -> pa.ChunkedArray:
    """GeoArrow points (x = lon, y = lat) sharing the coordinates' buffers; null where either is null."""
    if [len(c) for c in lon.chunks] != [len(c) for c in lat.chunks]:
        lon, lat = pa.chunked_array([lon.combine_chunks()]), pa.chunked_array([lat.combine_chunks()])
    chunks = []
    for x, y in zip(lon.chunks, lat.chunks, strict=True):
        missing = pc.or_(x.is_null(), y.is_null())
        mask = missing if missing.true_count else None
        chunks.append(pa.StructArray.from_arrays([x, y], fields=list(POINT_TYPE), mask=mask))
    return pa.chunked_array(chunks, type=POINT_TYPE)


def conform(data: pa.Table | pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``data`` with exactly ``schema``'s columns, in order and type: the one cast into the store.

    A GeoParquet schema (:func:`is_geoparquet`) also gets the point ``geometry`` of ``lon``/``lat``, last.

    Timestamps are truncated to the store's microseconds (the decoder works in ns). Every other cast must keep the
    values: an integer that does not fit its column, a float with a fraction bound for an integer column, raise.

    Raises
    ------
    ValueError
        If a column is missing or a value cannot be stored without loss; the message names the column.
    """
    if isinstance(data, pd.DataFrame):
        data = pa.Table.from_pandas(data, preserve_index=False)
    present = set(data.column_names)  # a property that builds a new list on every call
    missing = [name for name in schema.names if name not in present]
    if missing:
        raise ValueError(f"table lacks columns {missing}; has {data.column_names}")
    columns = [data.column(name) for name in schema.names]
    table = pa.Table.from_arrays(
        [_cast(column, field) for column, field in zip(columns, schema, strict=True)], schema=schema
    )
    if is_geoparquet(schema):
        table = table.append_column(GEOMETRY_COLUMN, point_geometry(table.column("lon"), table.column("lat")))
    return table


def _cast(column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    if column.type == field.type:  # the decoder's tables arrive typed: a no-op cast costs more than the comparison
        return column
    try:
        return pc.cast(column, options=pc.CastOptions(field.type, allow_time_truncate=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"column {field.name!r}: cannot store {column.type} as {field.type}: {exc}") from exc
