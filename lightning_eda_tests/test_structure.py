"""The two layers: plain modules import no Dagster, and one resource decides where the database lives."""

from __future__ import annotations

import ast
from pathlib import Path

from dagster import materialize
from import_probe import packages_loaded_by

from lightning_eda.orchestration.resources import resources_from_env
from lightning_eda.testing.real_minute import BUCKET, KEY_2018, serve_2018_minute

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_eda"
# The wiring subpackage, the module that assembles the Definitions and the CLI (which runs them) may import Dagster.
WIRING = {"orchestration", "definitions.py", "cli.py"}


def plain_modules() -> list[str]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in WIRING:
            continue
        parts = ("lightning_eda", *relative.with_suffix("").parts)
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_plain_modules_have_no_dagster_import_statement():
    offenders = []
    for module in plain_modules():
        path = PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{module}: {n}" for n in names if n.split(".")[0].startswith("dagster")]
    assert len(plain_modules()) >= 15
    assert offenders == []


def test_importing_every_plain_module_loads_no_dagster():
    """Transitively too: a fresh interpreter imports them all, then no dagster* module may be loaded."""
    assert packages_loaded_by(plain_modules(), ["dagster"]) == []


def test_overriding_the_data_folder_in_run_config_moves_the_database_too(s3, real_granules, tmp_path):
    """The launchpad's ``data.data_dir`` decides where glm.duckdb goes, not only granules, CSVs and plots."""
    serve_2018_minute(s3, real_granules)
    from_env, chosen = tmp_path / "from_env", tmp_path / "chosen"
    from lightning_eda.definitions import ingest_assets

    result = materialize(
        ingest_assets,
        partition_key=KEY_2018,
        resources=resources_from_env({"LIGHTNING_EDA_DATA_DIR": str(from_env), "S3_BUCKET": BUCKET}),
        run_config={"resources": {"data": {"config": {"data_dir": str(chosen)}}}},
    )
    assert result.success
    assert (chosen / "glm.duckdb").is_file()
    assert not from_env.exists()
    reported = result.asset_materializations_for_node("load")[0].metadata["database"].value
    assert Path(reported) == chosen / "glm.duckdb"


def test_loading_the_definitions_leaves_the_plotting_stack_unloaded():
    """Every run process and the UI's code server load the definitions: matplotlib and basemap wait until a plot."""
    assert packages_loaded_by(["lightning_eda.definitions"], ["matplotlib", "mpl_toolkits", "dagster_duckdb"]) == []


def test_the_data_resource_hands_out_one_store_and_derives_no_path_itself(tmp_path):
    from lightning_eda.analysis.analysis_store import AnalysisStore
    from lightning_eda.orchestration.resources import LightningDataResource
    from lightning_eda.store import catalog

    data = LightningDataResource(data_dir=str(tmp_path))
    assert data.store is data.store and data.analyses.tables is data.store
    assert data.database_path == catalog.database_path(tmp_path) == tmp_path / "glm.duckdb"
    assert data.analyses.plots_dir == AnalysisStore(data.store).plots_dir == tmp_path / "plots"
