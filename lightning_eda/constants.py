"""Names shared across the Dagster definitions."""

INGESTOR = "ingestor"
PREPROCESSOR = "preprocessor"
CLUSTERING = "kmeans_cluster"
EVALUATORS = "evaluators"
