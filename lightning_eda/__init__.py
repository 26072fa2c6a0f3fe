"""lightning_eda: explore GOES GLM lightning with Dagster.

``defs`` is imported lazily so that the plain modules (``lightning_eda.goes.granule``, ``lightning_eda.ml``, ...) can
be used without loading Dagster.
"""

__all__ = ["defs"]


def __getattr__(name):
    if name == "defs":
        from lightning_eda.definitions import defs

        return defs
    raise AttributeError(f"module 'lightning_eda' has no attribute {name!r}")
