"""Events → groups → flashes: GLM ids are unique only inside a granule, so the store's tables join on
(granule, id), packed into one int64 per row. No Dagster here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lightning_eda.sorted_keys import lookup


def file_codes(*columns: pd.Series) -> list[np.ndarray]:
    """Each ``source_file`` column as integer codes on one set of names: the codes themselves when the columns are
    categoricals on the same categories (as the store's hours are read), else codes of the names."""
    dtypes = [column.dtype for column in columns]
    if all(isinstance(d, pd.CategoricalDtype) for d in dtypes) and all(d == dtypes[0] for d in dtypes):
        return [column.cat.codes.to_numpy(np.int64) for column in columns]
    names = pd.Index(pd.unique(pd.concat([pd.Series(pd.unique(column.astype(str))) for column in columns])))
    return [names.get_indexer(column.astype(str)).astype(np.int64) for column in columns]


def granule_key(file_code: np.ndarray, ids: pd.Series) -> np.ndarray:
    """(granule, id) as one int64: GLM ids are unsigned 32-bit at most, and unique only inside a granule."""
    return file_code * (1 << 32) + ids.to_numpy(np.int64)


def event_flash_rows(events: pd.DataFrame, groups: pd.DataFrame, flashes: pd.DataFrame) -> np.ndarray:
    """The row of ``flashes`` each event belongs to through its group; -1 for an orphan (no such group or flash)."""
    file_f, file_g, file_e = file_codes(flashes["source_file"], groups["source_file"], events["source_file"])
    group_flash = lookup(granule_key(file_f, flashes["flash_id"]), granule_key(file_g, groups["parent_flash_id"]))
    event_group = lookup(granule_key(file_g, groups["group_id"]), granule_key(file_e, events["parent_group_id"]))
    return np.where(event_group >= 0, group_flash[np.maximum(event_group, 0)], -1)
