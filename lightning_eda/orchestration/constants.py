"""Names shared across the Dagster definitions."""

INGESTOR = "ingestor"
PREPROCESSOR = "preprocessor"
CLUSTERING = "kmeans_cluster"
EVALUATORS = "evaluators"
DENSITY = "density"
STORM_TRACKS = "storm_tracks"

# The job of one hour's (or a batch's) ingest: what the schedule runs and `lightning-eda backfill --deployment` queues.
INGEST_JOB = "ingest_hour"

# The clustering assets share one set of files (store/analysis/): their steps run in this pool, whose limit (1, set in
# dagster.yaml) makes two clustering runs take turns. Hour partitions need no pool: each writes its own folder.
ANALYSIS_POOL = "analysis"

# Granules appear 2–3 s after they end; 20 minutes past the hour leaves room for NOAA's occasional delays. The hourly
# schedule and the automation condition both ingest an hour at this minute of the next one.
INGEST_MINUTE_OF_HOUR = 20

# The observable source asset of NOAA's archive (what it lists for each recent hour): its own group, so the ingest job
# (the ingestor group) does not observe it; the ingest automation's sensor does.
ARCHIVE = "archive"
