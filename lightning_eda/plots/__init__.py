"""Figures for the Dagster UI and for disk, one module per kind of figure.

- :mod:`~lightning_eda.plots.output`: PNG bytes, atomic saving, markdown for ``MetadataValue.md``.
- :mod:`~lightning_eda.plots.curves`: the elbow and silhouette curves against k.
- :mod:`~lightning_eda.plots.cluster_map`: flashes coloured by cluster with numbered centroids.
- :mod:`~lightning_eda.plots.fed_map`: flash extent density on equal-area cells.
- :mod:`~lightning_eda.plots.storm_rate`: flashes per minute of the largest storms, lightning jumps marked.
- :mod:`~lightning_eda.plots.geometry` (the box, projection and gridlines of a map),
  :mod:`~lightning_eda.plots.map_canvas` (the base map both maps draw on) and
  :mod:`~lightning_eda.plots.style` (shared colours) serve the figures.

Every figure function returns PNG ``bytes``, built on a :class:`matplotlib.figure.Figure` with its own Agg canvas
(never ``pyplot``), so figures can be drawn in several threads at once. Importing this package, ``output`` or
``geometry`` loads no plotting library; the drawing modules import matplotlib, and basemap is loaded when a map is
drawn. No Dagster imports here.
"""
