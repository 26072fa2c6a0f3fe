"""Names shared across the Dagster definitions."""

INGESTOR = "ingestor"
PREPROCESSOR = "preprocessor"
CLUSTERING = "kmeans_cluster"
EVALUATORS = "evaluators"

# DuckDB allows one writing process per file: every step that opens the database runs in this pool, whose limit
# (1, set in dagster.yaml) makes concurrent runs, such as a backfill's partitions, take turns instead of failing.
DUCKDB_POOL = "duckdb"
