"""Test doubles and data factories shared by the test suite, the scripts and the benchmarks (like ``numpy.testing``).

- ``s3_server.LocalS3``: a local S3-compatible server (moto) laid out like NOAA's buckets; needs the ``dev`` extra;
- ``faulty_s3.FaultyS3``: a fault-injecting proxy in front of it;
- ``lcfa_factory``: small GLM L2 LCFA granules with known values;
- ``synthetic_hour``: an hour of real granules re-stamped into every 20 s slot;
- ``real_minute``: the busy real minute of 2018 that many tests serve;
- ``storm_points.flash_like``: lon/lat points in storm cells, for the k-means and silhouette tests and benchmarks.

Nothing in the pipeline imports this package; it imports no Dagster.
"""
