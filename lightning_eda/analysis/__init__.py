"""From loaded flashes to answers: features for clustering, choosing k, cluster summaries."""
