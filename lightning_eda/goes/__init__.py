"""The GOES-R GLM format: decoding Level-2 LCFA granules and the archive's key layout (plain Python, no Dagster)."""
