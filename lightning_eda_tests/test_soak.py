"""The soak (``scripts/soak.py``) reduced to two hours: faults, a killed load and a reader holding glm.duckdb."""

from __future__ import annotations

import importlib

import pytest
from reliability_helpers import PROJECT_DIR


@pytest.mark.slow
def test_soak_two_hours_through_faults_loads_every_granule_once(s3, tmp_path, glm_dir, monkeypatch):
    # as when it runs as a script, its folder is on sys.path: it imports its sibling modules by name, and so do the
    # worker processes it starts (they are given the parent's sys.path)
    monkeypatch.syspath_prepend(str(PROJECT_DIR / "scripts"))
    soak = importlib.import_module("soak")
    figures = soak.run_soak(
        s3, workdir=tmp_path, hours=2, fault_every=20, read_timeout=1.0, real_dir=glm_dir, real_every=60
    )
    assert figures["granules"] == 360 and figures["loaded_once"] == 360
    for problem in (
        "missing",
        "unexpected",
        "duplicated",
        "failed",
        "wrong_counts",
        "duplicate_ids",
        "bad_bytes",
        "part_files",
    ):
        assert figures[problem] == 0, (problem, figures)
    assert figures["faults"] > 0 and figures["failed_runs"] == 0
    assert figures["orphan_rows"] == 0, figures
    # a load killed mid-hour (at its staging) left nothing; the hour's rerun loaded it once
    assert figures["killed_hours"] == 1, figures["kill_notes"]
    # a reader holding glm.duckdb read-write the whole time: never an error, never a count going down, and its
    # connection, opened after the first hour, saw the second hour and the final totals
    assert figures["reader_queries"] > 0 and figures["reader_errors"] == 0, figures["reader_error_samples"]
    assert figures["reader_exit_code"] == 0 and not figures["reader_saw_decrease"]
    assert figures["reader_final_matches"], (figures["reader_final_counts"], figures["final_counts"])
    assert figures["reader_first_counts"]["glm_hour"] == 1 and figures["reader_final_counts"]["glm_hour"] == 2
