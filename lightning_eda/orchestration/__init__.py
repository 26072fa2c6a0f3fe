"""The Dagster wiring: assets, checks, resources, partitions and automation. Every Dagster import lives here,
in ``lightning_eda.definitions`` (which assembles them) and in ``lightning_eda.cli``."""
