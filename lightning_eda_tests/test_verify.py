"""Damage in the store is found, named and healed: a truncated part and a flipped byte of a loaded hour are found by
`lightning-eda verify` and the `files_intact` check, a window read that meets one fails with one line naming the hour,
and the next run of the hour re-decodes it (from raw/, or fetched again) with the flash count back to the original."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetSelection, materialize
from ingest_runs import resources_for
from reliability_helpers import run

from lightning_eda import cli
from lightning_eda.orchestration.assets.ingestor import extract, load, transform
from lightning_eda.orchestration.assets.preprocessor import PreprocessorConfig, preprocessor
from lightning_eda.orchestration.checks import load_checks
from lightning_eda.store.parquet_store import HourKey, ParquetStore
from lightning_eda.store.verify import verify_hour
from lightning_eda.testing.real_minute import BUCKET, FIRST_THREE, HOUR_2018, KEY_2018

KEY = HourKey(BUCKET, "GLM-L2-LCFA", HOUR_2018)
COUNTS = {"glm_flash": 853, "glm_group": 21579, "glm_event": 59797}


def loaded_hour(data_dir: Path, **data_options) -> ParquetStore:
    result = run(data_dir, BUCKET, KEY_2018, data_options=data_options)
    assert result.success
    store = ParquetStore(data_dir)
    assert {t: store.read(KEY, t).num_rows for t in COUNTS} == COUNTS
    return store


def largest(store: ParquetStore, table: str) -> Path:
    return max(store.current(KEY).files(table), key=lambda path: path.stat().st_size)


def verify_cli(monkeypatch, capsys, data_dir: Path, *args: str) -> tuple[int, list[str]]:
    monkeypatch.setenv("LIGHTNING_EDA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("S3_BUCKET", BUCKET)
    code = cli.main(["verify", *args])
    return code, capsys.readouterr().out.splitlines()


def check_results(data_dir: Path) -> dict:
    """The `load` checks of the hour's partition, run on their own (as launched from the UI)."""
    result = materialize(
        [extract, transform, load, load_checks],
        selection=AssetSelection.checks_for_assets(load),
        tags={"dagster/partition": KEY_2018},  # the checks of one partition, as the UI launches them
        resources=resources_for(data_dir),
        raise_on_error=False,
    )
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_truncated_part_is_found_named_and_healed(hour_2018, monkeypatch, capsys, tmp_path):
    data_dir = tmp_path / "data"
    store = loaded_hour(data_dir)
    assert verify_cli(monkeypatch, capsys, data_dir)[0] == 0
    version = store.current(KEY).version
    part = largest(store, "glm_flash")
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # a failing disk, a partial copy

    code, lines = verify_cli(monkeypatch, capsys, data_dir)
    assert code == 1
    assert f"DAMAGED {BUCKET}/GLM-L2-LCFA 2018-07-02 04:00 {part.name}: " in lines[0] and "when committed" in lines[0]
    assert lines[-1] == "heal with: lightning-eda backfill --start 2018-07-02T04 --end 2018-07-02T04 --no-cluster"

    checks = check_results(data_dir)
    assert not checks["files_intact"].passed
    assert part.name in checks["files_intact"].metadata["damage"].value
    assert not checks["no_duplicate_keys"].passed  # not run on a hour that cannot be read, and says so
    assert "not_checked" in checks["no_duplicate_keys"].metadata

    # a window read that meets the damaged hour: one line naming the hour and the command that heals it
    window = materialize(
        [preprocessor],
        resources=resources_for(data_dir),
        run_config={"ops": {"preprocessor": {"config": PreprocessorConfig(window_start=KEY_2018).model_dump()}}},
        raise_on_error=False,
    )
    assert not window.success
    message = cli.failure_message(window)
    assert len(message.splitlines()) == 1, message
    assert "hour noaa-goes16/GLM-L2-LCFA 2018-07-02 04:00 is damaged" in message and part.name in message
    assert "lightning-eda backfill --start 2018-07-02T04 --end 2018-07-02T04" in message
    assert "magic" not in message.lower()

    healed = run(data_dir, BUCKET, KEY_2018)  # the next run of the hour: re-decoded from raw/
    assert healed.success
    assert {t: store.read(KEY, t).num_rows for t in COUNTS} == COUNTS
    assert store.current(KEY).version != version
    assert verify_hour(store, KEY, deep=True) == []
    assert verify_cli(monkeypatch, capsys, data_dir, "--deep")[0] == 0


def test_a_flipped_byte_is_found_by_checksum_and_healed_by_fetching_again(hour_2018, monkeypatch, capsys, tmp_path):
    data_dir = tmp_path / "data"
    store = loaded_hour(data_dir, keep_raw=False)  # raw/ is gone: healing must fetch the granules again
    assert not list((data_dir / "raw").rglob("*.nc"))
    part = largest(store, "glm_event")
    body = bytearray(part.read_bytes())
    body[len(body) // 3] ^= 0xFF  # inside a data page: the footer still reads, the rows are wrong
    part.write_bytes(bytes(body))

    assert verify_cli(monkeypatch, capsys, data_dir)[0] == 0  # footers and sizes cannot see it
    code, lines = verify_cli(monkeypatch, capsys, data_dir, "--deep")
    assert code == 1
    assert lines[0].startswith(f"DAMAGED {BUCKET}/GLM-L2-LCFA 2018-07-02 04:00 {part.name}: checksum differs")
    assert lines[-1].endswith("--no-cluster --deep")
    checks = check_results(data_dir)
    assert not checks["files_intact"].passed and part.name in checks["files_intact"].metadata["damage"].value

    healed = run(data_dir, BUCKET, KEY_2018, data_options={"keep_raw": False})
    assert healed.success
    extract = healed.asset_materializations_for_node("extract")[0].metadata
    assert extract["damaged_files"].value == 1 and extract["downloaded"].value == 3
    assert {t: store.read(KEY, t).num_rows for t in COUNTS} == COUNTS
    assert verify_hour(store, KEY, deep=True) == []


@pytest.mark.parametrize("table", ["glm_file", "glm_group"])
def test_verify_names_a_missing_or_added_file(hour_2018, tmp_path, table):
    data_dir = tmp_path / "data"
    store = loaded_hour(data_dir)
    folder = store.current(KEY).path
    if table == "glm_file":
        (folder / "glm_file.parquet").unlink()
        expected = [("glm_file.parquet", "missing")]
    else:
        extra = folder / f"{table}-copy.parquet"
        extra.write_bytes(largest(store, table).read_bytes())
        expected = [(extra.name, "not in the hour's manifest (added after its commit)")]
    assert [(d.file, d.problem) for d in verify_hour(store, KEY)] == expected


def plant_duplicate_granule(staged: Path) -> str:
    """A staged version holding one granule twice, consistent with itself (glm_file's row and every data row
    doubled, the manifest rewritten): what a writer bug would commit. Only the checks can see it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lightning_eda.store.parquet_store import table_files, write_manifest

    files = pq.read_table(staged / "glm_file.parquet")
    first = files.slice(0, 1)
    pq.write_table(pa.concat_tables([files, first]), staged / "glm_file.parquet")
    name = first.column("source_file")[0].as_py()
    for table in COUNTS:
        rows = pa.concat_tables([pq.read_table(path) for path in table_files(staged, table)])
        mask = pa.compute.equal(rows.column("source_file").cast(pa.string()), name)
        pq.write_table(rows.filter(mask), staged / f"{table}-planted.parquet")
    write_manifest(staged)
    return name


def test_a_blocking_check_fails_the_ingest_run_on_a_planted_duplicate(hour_2018, tmp_path):
    """The duplicate reaches the store (its counts agree with themselves); `no_duplicate_keys` is blocking, so the
    hour's ingest run fails, and the clustering that follows a successful ingest (the sensor, the CLI) never runs."""
    import json

    from dagster import DagsterInstance

    from lightning_eda.orchestration.checks import BLOCKING

    data_dir = tmp_path / "data"
    staged = run(data_dir, BUCKET, KEY_2018, assets=(extract, transform))
    assert staged.success
    report = json.loads(next((data_dir / "work").rglob("transform.json")).read_text())
    planted = plant_duplicate_granule(Path(report["staged"]))
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [extract, transform, load, load_checks],
            selection=AssetSelection.assets(load) | AssetSelection.checks_for_assets(load),
            partition_key=KEY_2018,
            resources=resources_for(data_dir),
            instance=instance,
            raise_on_error=False,
        )
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert result.asset_materializations_for_node("load")  # committed: the checks are what catch it
        duplicates = checks["no_duplicate_keys"].metadata
        assert not checks["no_duplicate_keys"].passed
        assert duplicates["glm_flash_duplicates"].value == FIRST_THREE[planted][0]
        assert checks["files_intact"].passed  # the planted files are in the manifest: only the keys say it
        # a failed blocking check fails the run, so the clustering that follows a successful ingest (the
        # cluster_after_ingest sensor, `lightning-eda run`) does not start on this hour
        assert not result.success
        assert cli.failure_message(result).startswith("load_checks")
    specs = {spec.name: spec.blocking for spec in load_checks.check_specs}
    assert {name for name, blocking in specs.items() if blocking} == BLOCKING
