"""The store users query (``glm.duckdb``) and the data-quality queries over it."""
