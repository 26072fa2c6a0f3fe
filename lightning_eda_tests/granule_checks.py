"""What the decoder tests share: each table's columns and time columns, and the dtype check."""

from lightning_eda.goes.granule import EVENT_COLUMNS, FLASH_COLUMNS, GROUP_COLUMNS

COLUMNS = {"flashes": FLASH_COLUMNS, "groups": GROUP_COLUMNS, "events": EVENT_COLUMNS}
TIME_COLUMNS = {"flashes": ("time_start", "time_end"), "groups": ("time",), "events": ("time",)}
LEVEL = {"flashes": "flash", "groups": "group", "events": "event"}


def assert_dtypes(granule) -> None:
    for table, columns in COLUMNS.items():
        frame = getattr(granule, table)
        assert list(frame.columns) == list(columns), table
        assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == columns, table
