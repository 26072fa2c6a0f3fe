"""Clustering and cluster evaluation in plain NumPy (no scikit-learn, SciPy or Dagster at run time).

* :func:`kmeans` -- k-means with greedy k-means++ seeding and Hamerly-accelerated Lloyd iterations.
* :func:`kmeans_sweep` -- k-means for several k on the same points, prepared once.
* :func:`elbow_sweep` and :func:`find_knee` -- inertia against k, and the elbow of that curve (Kneedle).
* :func:`silhouette_score` and :func:`silhouette_sweep` -- exact (or sampled) silhouette coefficients, the sweep sharing
  one pass over the pairwise distances between several clusterings of the same points.

All passes over the points are chunked, so memory grows linearly with the number of points.
"""

from lightning_eda.ml._kmeans import KMeansResult, elbow_sweep, kmeans, kmeans_sweep
from lightning_eda.ml._knee import find_knee
from lightning_eda.ml._silhouette import silhouette_score, silhouette_sweep

__all__ = ["KMeansResult", "kmeans", "kmeans_sweep", "elbow_sweep", "find_knee", "silhouette_score", "silhouette_sweep"]
