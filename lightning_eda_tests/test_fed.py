"""Flash extent density against an independent count on small planted data."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from lightning_eda.analysis.features import FeatureTransform, laea_inverse
from lightning_eda.analysis.fed import FlashExtentDensity, flash_cells

CENTRE = FeatureTransform(lat0=30.0, lon0=-90.0, x_mean=0.0, y_mean=0.0, x_std=1.0, y_std=1.0)


def at_km(x_km: float, y_km: float) -> tuple[float, float]:
    """The (lat, lon) of a point given in the grid's plane (km from the centre)."""
    lat, lon = laea_inverse(np.array([x_km]), np.array([y_km]), CENTRE.lat0, CENTRE.lon0)
    return float(lat[0]), float(lon[0])


def planted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two granules. In g1: flash 1 has three events in cell (0, 0) and one in (1, 0); flash 2 one in (0, 0);
    an orphan event (group 99 does not exist). In g2: flash 1 again (another flash: ids are per granule) in (0, 0)."""
    groups = pd.DataFrame(
        {"source_file": ["g1", "g1", "g1", "g2"], "group_id": [10, 11, 20, 10], "parent_flash_id": [1, 1, 2, 1]}
    )
    points = [
        ("g1", 10, 2.0, 3.0),
        ("g1", 10, 5.0, 5.0),
        ("g1", 11, 9.0, 1.0),
        ("g1", 11, 15.0, 2.0),
        ("g1", 20, 4.0, 4.0),
        ("g1", 99, 4.0, 4.0),
        ("g2", 10, 1.0, 1.0),
    ]
    rows = [(f, g, *at_km(x, y)) for f, g, x, y in points]
    events = pd.DataFrame(rows, columns=["source_file", "parent_group_id", "lat", "lon"])
    return events, groups


def independent_count(
    events: pd.DataFrame, groups: pd.DataFrame, cell_km: float, transform: FeatureTransform = CENTRE
) -> dict[tuple[int, int], int]:
    """The definition, literally: for every flash, the set of cells its events fall in; then flashes per cell."""
    flash_of = {(f, g): p for f, g, p in groups[["source_file", "group_id", "parent_flash_id"]].itertuples(index=False)}
    cells_of_flash = defaultdict(set)
    for f, g, lat, lon in events.itertuples(index=False):
        if (f, g) not in flash_of:
            continue
        x, y = transform.to_xy(np.array([lat]), np.array([lon]))
        cells_of_flash[(f, flash_of[(f, g)])].add((int(np.floor(x[0] / cell_km)), int(np.floor(y[0] / cell_km))))
    counts = defaultdict(int)
    for cells in cells_of_flash.values():
        for cell in cells:
            counts[cell] += 1
    return dict(counts)


def test_a_flash_counts_once_per_cell_its_events_touch():
    events, groups = planted()
    fed = FlashExtentDensity(CENTRE, cell_km=10.0)
    fed.add(events, groups)
    table = fed.table()
    got = {
        (round(x / 10 - 0.5), round(y / 10 - 0.5)): n for x, y, n in table[["x_km", "y_km", "flash_count"]].to_numpy()
    }
    # cell (0,0): g1 flash 1, g1 flash 2, g2 flash 1; cell (1,0): g1 flash 1; the orphan counts nowhere
    assert got == {(0, 0): 3, (1, 0): 1}
    assert got == independent_count(events, groups, 10.0)
    centre = table.loc[table["flash_count"] == 3, ["lat", "lon"]].to_numpy()[0]
    np.testing.assert_allclose(centre, at_km(5.0, 5.0), atol=1e-9)  # the cell centre, mapped back to degrees


@pytest.mark.parametrize("cell_km", [2.0, 10.0, 25.0])
def test_random_storms_match_the_independent_count_and_chunks_add_up(cell_km):
    rng = np.random.default_rng(int(cell_km))
    groups, events = [], []
    for granule in ("g1", "g2", "g3"):
        n_groups = 400
        groups.append(
            pd.DataFrame(
                {
                    "source_file": granule,
                    "group_id": np.arange(n_groups),
                    "parent_flash_id": rng.integers(0, 60, n_groups),
                }
            )
        )
        centre = rng.uniform(-200, 200, 2)
        xy = centre + rng.normal(0, 30, (3000, 2))
        lat, lon = laea_inverse(xy[:, 0], xy[:, 1], CENTRE.lat0, CENTRE.lon0)
        events.append(
            pd.DataFrame(
                {
                    "source_file": granule,
                    "parent_group_id": rng.integers(0, n_groups + 20, 3000),
                    "lat": lat,
                    "lon": lon,
                }
            )
        )
    whole = FlashExtentDensity(CENTRE, cell_km=cell_km)
    chunked = FlashExtentDensity(CENTRE, cell_km=cell_km)
    whole.add(pd.concat(events), pd.concat(groups))
    for e, g in zip(events, groups, strict=True):  # an hour at a time, as the asset reads them
        chunked.add(e, g)
    expected = independent_count(pd.concat(events), pd.concat(groups), cell_km)
    for fed in (whole, chunked):
        table = fed.table()
        got = {
            (int(np.floor(x / cell_km)), int(np.floor(y / cell_km))): n
            for x, y, n in table[["x_km", "y_km", "flash_count"]].to_numpy()
        }
        assert got == expected


def test_cells_are_equal_area_squares_and_bad_sizes_are_refused():
    events, groups = planted()
    cells = flash_cells(events, groups, CENTRE, 10.0)
    assert set(map(tuple, cells[["ix", "iy"]].to_numpy())) == {(0, 0), (1, 0)}
    with pytest.raises(ValueError, match="cell_km"):
        flash_cells(events, groups, CENTRE, 0.0)
    assert FlashExtentDensity(CENTRE).table().empty


def test_the_asset_maps_the_windows_density_as_the_definition_counts_it(s3, real_granules, tmp_path):
    """The real busy 2018 minute through the ingest, the preprocessor and ``flash_extent_density``."""
    import json

    import duckdb
    import matplotlib.image
    from dagster import materialize
    from ingest_runs import resources_for, run_hour

    from lightning_eda.orchestration.assets.density import flash_extent_density
    from lightning_eda.orchestration.assets.preprocessor import preprocessor
    from lightning_eda.testing.real_minute import KEY_2018, serve_2018_minute

    serve_2018_minute(s3, real_granules)
    assert run_hour(tmp_path).success
    result = materialize(
        [preprocessor, flash_extent_density],
        resources=resources_for(tmp_path),
        run_config={
            "ops": {
                "preprocessor": {"config": {"window_start": KEY_2018}},
                "flash_extent_density": {"config": {"cell_km": 20.0}},
            }
        },
    )
    assert result.success
    with duckdb.connect(str(tmp_path / "glm.duckdb"), read_only=True) as con:
        table = con.execute("SELECT x_km, y_km, flash_count, cell_km FROM flash_extent_density").df()
        transform = json.loads(con.execute("SELECT transform FROM feature_window").fetchone()[0])
        events = con.execute("SELECT source_file, parent_group_id, lat, lon FROM glm_event").df()
        groups = con.execute("SELECT source_file, group_id, parent_flash_id FROM glm_group").df()
    expected = independent_count(events, groups, 20.0, FeatureTransform.from_dict(transform))
    got = {(int(np.floor(x / 20.0)), int(np.floor(y / 20.0))): n for x, y, n, _ in table.to_numpy()}
    assert got == expected and set(table["cell_km"]) == {20.0}
    assert sum(expected.values()) >= 853  # every flash of the minute touches at least one cell
    meta = result.asset_materializations_for_node("flash_extent_density")[0].metadata
    image = matplotlib.image.imread(meta["map_path"].value)
    assert image.shape[:2] == (910, 1300) and meta["cells"].value == len(table)
