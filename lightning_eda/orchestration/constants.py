"""Names shared across the Dagster definitions."""

INGESTOR = "ingestor"
PREPROCESSOR = "preprocessor"
CLUSTERING = "kmeans_cluster"
EVALUATORS = "evaluators"
DENSITY = "density"
STORM_TRACKS = "storm_tracks"

# The clustering assets share one set of files (store/analysis/): their steps run in this pool, whose limit (1, set in
# dagster.yaml) makes two clustering runs take turns. Hour partitions need no pool: each writes its own folder.
ANALYSIS_POOL = "analysis"
