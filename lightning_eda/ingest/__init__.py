"""Getting granules into the store: the archive (S3 or a local mirror) and the hour-level transform and load."""
