"""Storm tracking and lightning jumps per track, on planted moving storms and on hand-made rate series."""

from __future__ import annotations

import resource
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from moving_storms import CENTRE, NOISE_CELL, moving_storms, storm_day
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score

from lightning_eda.analysis.jumps import ERDMANN_POELMAN_2023, SCHULTZ_2009, JumpCriteria, JumpHistory, sigma_jumps
from lightning_eda.analysis.storms import lightning_jumps
from lightning_eda.analysis.track_frames import FrameStorms, link_storms
from lightning_eda.analysis.tracks import TrackingOptions, TrackState, track_window
from lightning_eda.ml import kmeans

CELL_KM = 10.0
T0 = pd.Timestamp("2024-06-01 18:00")


def grid_storms(x_km: np.ndarray, y_km: np.ndarray, expected: np.ndarray | None, *, min_separation_km: float = 15.0):
    """Stand-in for the storm-scale clusterer: connected 10 km cells holding flashes, then k-means seeded from the
    tracks expected in a component when there are several of them at least ``min_separation_km`` apart."""
    ix = np.floor((x_km - x_km.min()) / CELL_KM).astype(np.int64)
    iy = np.floor((y_km - y_km.min()) / CELL_KM).astype(np.int64)
    occupied = np.zeros((ix.max() + 1, iy.max() + 1), dtype=bool)
    occupied[ix, iy] = True
    components, _ = ndimage.label(occupied, structure=np.ones((3, 3)))
    labels = components[ix, iy].astype(np.int64) - 1
    if expected is None:
        return labels
    ex = np.floor((expected[:, 0] - x_km.min()) / CELL_KM).astype(np.int64)
    ey = np.floor((expected[:, 1] - y_km.min()) / CELL_KM).astype(np.int64)
    on_grid = (ex >= 0) & (ex < occupied.shape[0]) & (ey >= 0) & (ey < occupied.shape[1])
    seed_component = np.full(len(expected), -1)
    seed_component[on_grid] = components[ex[on_grid], ey[on_grid]] - 1
    next_label = labels.max() + 1
    for component in np.unique(seed_component[seed_component >= 0]):
        seeds: list[np.ndarray] = []
        for seed in expected[seed_component == component]:
            if all(np.hypot(*(seed - kept)) >= min_separation_km for kept in seeds):
                seeds.append(seed)
        members = np.flatnonzero(labels == component)
        if len(seeds) < 2 or len(members) < 2 * len(seeds):
            continue
        fit = kmeans(np.column_stack([x_km[members], y_km[members]]), len(seeds), init=np.array(seeds))
        labels[members] = np.where(fit.labels == 0, component, next_label + fit.labels - 1)
        next_label += len(seeds) - 1
    return labels


OPTIONS = TrackingOptions(projection_centre=CENTRE)


@pytest.fixture(scope="module")
def scene():
    return moving_storms(T0, seed=0)


@pytest.fixture(scope="module")
def two_hours(scene):
    return track_window(scene.flashes, T0, T0 + pd.Timedelta(hours=2), TrackState.empty(), grid_storms, OPTIONS)


def majority_track(flash_track: pd.DataFrame, cells: np.ndarray, cell: int) -> int:
    return int(flash_track.loc[cells == cell, "track_id"].mode().iloc[0])


def planted_cells(scene, result) -> np.ndarray:
    """The planted cell of each row of ``result.flash_track``."""
    cells = scene.flashes.set_index(["source_file", "flash_id"])["cell"]
    return cells.loc[
        list(zip(result.flash_track["source_file"], result.flash_track["flash_id"], strict=True))
    ].to_numpy()


def test_every_planted_cell_is_one_track(scene, two_hours):
    cells = planted_cells(scene, two_hours)
    planted = cells != NOISE_CELL
    found = two_hours.flash_track["track_id"].fillna(-1).to_numpy()
    assert adjusted_rand_score(cells[planted], found[planted]) >= 0.9
    majority = {cell: majority_track(two_hours.flash_track, cells, cell) for cell in np.unique(cells[planted])}
    assert len(set(majority.values())) == len(majority), "two planted cells share their main track"
    # a split-off cell can be told apart only once the gap between the children shows, a merging one only until
    # the two touch: those two are scored from the split and up to the merge the tracker recorded
    events = two_hours.track_event.set_index("event")["frame_start"]
    times = two_hours.flash_track["time_start"].to_numpy()
    seen = np.ones(len(cells), dtype=bool)
    seen[cells == scene.split[1]] = times[cells == scene.split[1]] >= events["split"]
    seen[cells == scene.merge[0]] = times[cells == scene.merge[0]] < events["merge"]
    for cell, track in majority.items():
        scored = (cells == cell) & seen
        assert (found[scored] == track).mean() >= 0.9, f"cell {cell}: under 90 % of its flashes in one track"


def test_the_split_and_the_merge_are_recorded(scene, two_hours):
    cells = planted_cells(scene, two_hours)
    events = two_hours.track_event
    parent, child, split_at = scene.split
    parent_track, child_track = (majority_track(two_hours.flash_track, cells, c) for c in (parent, child))
    split = events[(events["event"] == "split") & (events["track_id"] == child_track)]
    assert split["other_track_id"].tolist() == [parent_track]
    assert split_at <= split["frame_start"].iloc[0] <= split_at + pd.Timedelta(minutes=30)
    summary = two_hours.track_summary.set_index("track_id")
    assert summary.loc[child_track, "parent_id"] == parent_track
    ending, continuing, merge_at = scene.merge
    ending_track, continuing_track = (majority_track(two_hours.flash_track, cells, c) for c in (ending, continuing))
    merge = events[(events["event"] == "merge") & (events["track_id"] == ending_track)]
    assert merge["other_track_id"].tolist() == [continuing_track]
    assert merge_at - pd.Timedelta(minutes=30) <= merge["frame_start"].iloc[0] <= merge_at
    assert summary.loc[ending_track, "merged_into"] == continuing_track and not summary.loc[ending_track, "is_open"]
    assert summary.loc[continuing_track, "is_open"]


def test_the_planted_jump_is_flagged_and_steady_cells_have_none(scene, two_hours):
    cells = planted_cells(scene, two_hours)
    jump_cell, jump_at = scene.jump
    jumps = two_hours.jumps
    jump_track = majority_track(two_hours.flash_track, cells, jump_cell)
    found = jumps.loc[jumps["track_id"] == jump_track, "period_start"]
    assert len(found) == 1 and abs(found.iloc[0] - jump_at) <= pd.Timedelta(minutes=2)
    steady_tracks = {majority_track(two_hours.flash_track, cells, c) for c in scene.steady_cells}
    assert not jumps["track_id"].isin(steady_tracks).any()
    rates = two_hours.track_rate
    assert rates["track_id"].isin(steady_tracks).sum() >= 10 * 50, "the steady cells were judged, period by period"


def test_hour_by_hour_equals_one_two_hour_run(scene, two_hours, tmp_path):
    hour = pd.Timedelta(hours=1)
    first = track_window(scene.flashes, T0, T0 + hour, TrackState.empty(), grid_storms, OPTIONS)
    first.state_after.to_frame().to_parquet(tmp_path / "track_state.parquet")  # as the store would keep it
    handed_over = TrackState.from_frame(pd.read_parquet(tmp_path / "track_state.parquet"))
    second = track_window(scene.flashes, T0 + hour, T0 + 2 * hour, handed_over, grid_storms, OPTIONS)
    for name in ("storm_track", "flash_track", "track_event", "track_rate"):
        joined = pd.concat([getattr(first, name), getattr(second, name)], ignore_index=True)
        pd.testing.assert_frame_equal(joined, getattr(two_hours, name), check_exact=True, check_dtype=False)
    pd.testing.assert_frame_equal(second.state_after.to_frame(), two_hours.state_after.to_frame(), check_exact=True)
    whole = two_hours.track_summary.set_index("track_id")
    late = second.track_summary.set_index("track_id")
    pd.testing.assert_frame_equal(late, whole.loc[late.index], check_exact=True)
    again = track_window(scene.flashes, T0 + hour, T0 + 2 * hour, handed_over, grid_storms, OPTIONS)
    pd.testing.assert_frame_equal(again.storm_track, second.storm_track, check_exact=True)  # a re-run changes nothing
    crossing = set(first.state_after.tracks["track_id"]) & set(second.storm_track["track_id"])
    assert len(crossing) >= 12, "the planted cells' tracks continue across the hour with their ids"
    jump_cell_history = first.state_after.tracks["recent_rates"].map(len)
    assert (jump_cell_history == SCHULTZ_2009.carried_periods).any()


def test_a_state_from_another_projection_is_refused(scene):
    first = track_window(scene.flashes, T0, T0 + pd.Timedelta(minutes=20), TrackState.empty(), grid_storms, OPTIONS)
    elsewhere = TrackingOptions(projection_centre=(40.0, -90.0))
    with pytest.raises(ValueError, match="projection_centre"):
        track_window(
            scene.flashes,
            T0 + pd.Timedelta(minutes=20),
            T0 + pd.Timedelta(minutes=40),
            first.state_after,
            grid_storms,
            elsewhere,
        )


def test_tracks_coast_through_missed_frames_then_end_and_quiet_windows_give_empty_tables(scene):
    twenty, ten = pd.Timedelta(minutes=20), pd.Timedelta(minutes=10)
    first = track_window(scene.flashes, T0, T0 + twenty, TrackState.empty(), grid_storms, OPTIONS)
    quiet = scene.flashes.iloc[:0]
    patient = replace(OPTIONS, max_missed_frames=2)
    coasting = track_window(quiet, T0 + twenty, T0 + twenty + ten, first.state_after, grid_storms, patient)
    assert len(first.state_after) >= 12 and len(coasting.state_after) == len(first.state_after)
    assert (coasting.state_after.tracks["missed"] == 2).all() and coasting.track_summary["is_open"].all()
    ended = track_window(quiet, T0 + twenty, T0 + twenty + ten, first.state_after, grid_storms, OPTIONS)
    assert len(ended.state_after) == 0 and len(ended.storm_track) == 0 and len(ended.track_rate) == 0
    assert not ended.track_summary["is_open"].any()
    assert ended.track_summary["track_id"].tolist() == sorted(first.state_after.tracks["track_id"])
    assert ended.track_summary["end"].max() <= T0 + twenty
    assert list(ended.storm_track.columns) == list(first.storm_track.columns)


@pytest.mark.parametrize("start, end", [(T0 + pd.Timedelta(minutes=3), T0 + pd.Timedelta(hours=1)), (T0, T0)])
def test_windows_off_the_frame_grid_are_refused(scene, start, end):
    with pytest.raises(ValueError):
        track_window(scene.flashes, start, end, TrackState.empty(), grid_storms, OPTIONS)


def test_options_refuse_frames_that_do_not_tile_an_hour():
    with pytest.raises(ValueError, match="frame_minutes"):
        TrackingOptions(projection_centre=CENTRE, frame_minutes=7)


# --- the linking rule on hand-placed storms ---


def link(last, sizes_before, centres, sizes, gate=20.0):
    last = np.asarray(last, dtype=float)
    return link_storms(
        last, last, np.full(len(last), gate), np.asarray(sizes_before), np.asarray(centres, float), np.asarray(sizes)
    )


def test_a_split_keeps_the_id_on_the_larger_child():
    # one track at the origin; storms 5 km west and 7 km east of it, the farther one larger
    links = link([[0.0, 0.0]], [50], [[-5.0, 0.0], [7.0, 0.0]], [10, 40])
    assert links.track_of_storm.tolist() == [-1, 0] and links.parent_of_storm.tolist() == [0, -1]


def test_a_merge_continues_the_larger_parent():
    # two tracks 12 km apart, one storm between them, nearer the smaller
    links = link([[0.0, 0.0], [12.0, 0.0]], [40, 10], [[8.0, 0.0]], [50])
    assert links.track_of_storm.tolist() == [0] and links.merged.tolist() == [True]
    assert links.merged_into.tolist() == [-1, 0]


def test_storms_beyond_the_gate_start_new_tracks_and_the_track_coasts():
    links = link([[0.0, 0.0]], [30], [[25.0, 0.0]], [30])
    assert links.track_of_storm.tolist() == [-1] and links.parent_of_storm.tolist() == [-1]
    assert links.merged_into.tolist() == [-1]


def test_frame_storms_by_hand():
    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 5, 60), rng.normal(0, 5, 60)
    labels = np.repeat([7, -1, 3, 9], [30, 5, 22, 3])  # label 9 has too few flashes, -1 is no storm
    energy = np.ones(60)
    area = np.full(60, 2.0)
    area[0] = np.nan
    storms = FrameStorms.of(x, y, energy, area, labels, min_flashes=5)
    # storms numbered in label order: 3 -> 0, 7 -> 1
    assert storms.storm_of.tolist() == [1] * 30 + [-1] * 5 + [0] * 22 + [-1] * 3
    assert storms.n_flashes.tolist() == [22, 30] and storms.total_energy.tolist() == [22.0, 30.0]
    assert storms.mean_area.tolist() == [2.0, 2.0], "a flash without an area does not count"
    for storm, rows in ((0, slice(35, 57)), (1, slice(0, 30))):
        spread = [np.subtract(*np.percentile(v[rows], [95, 5])) for v in (x, y)]
        assert storms.extent_km[storm] == pytest.approx(np.hypot(*spread), rel=1e-12)
        assert storms.centres[storm].tolist() == pytest.approx([x[rows].mean(), y[rows].mean()], rel=1e-12)


# --- the jump algorithm on hand-made rate series ---


def periods(n: int) -> pd.DatetimeIndex:
    return pd.date_range(T0, periods=n, freq="2min")


def test_the_same_periods_as_the_per_cluster_algorithm_with_schultz_criteria():
    rng = np.random.default_rng(3)
    per_minute = rng.poisson(20, 120).astype(float)
    per_minute[60:] *= 3
    expected = lightning_jumps(pd.Series(per_minute, index=pd.date_range(T0, periods=120, freq="min")))
    judged, _ = sigma_jumps(expected["time"], expected["flash_rate"].to_numpy(), SCHULTZ_2009)
    np.testing.assert_array_equal(judged["flagged"].to_numpy(), expected["jump"].to_numpy(bool))
    np.testing.assert_allclose(judged["threshold"].to_numpy(), expected["threshold"].to_numpy(float))
    assert judged["flagged"].iloc[30]


def test_no_jump_on_a_steady_series_and_one_where_planted():
    steady = np.tile([22.0, 18.0], 15)
    judged, _ = sigma_jumps(periods(30), steady)
    assert not judged["flagged"].any()
    surged = steady.copy()
    surged[20:] *= 3
    judged, _ = sigma_jumps(periods(30), surged)
    assert judged["jump"].tolist() == [i == 20 for i in range(30)]
    # DFRDT of period 20: (3·22 - 18) / 2 min = 24 fl/min²; the previous five alternate ±2 (σ 1.96): threshold 3.92
    assert judged["dfrdt"].iloc[20] == 24.0 and judged["threshold"].iloc[20] == pytest.approx(2 * 2 * np.sqrt(0.96))


def test_no_jump_below_the_rate_threshold_and_the_criteria_are_configurable():
    quiet = np.concatenate([np.tile([5.0, 4.0], 6), [9.0, 9.0]])  # a sharp rise, but to 9 flashes/min
    assert not sigma_jumps(periods(14), quiet)[0]["flagged"].any()
    assert sigma_jumps(periods(14), quiet, JumpCriteria(rate_threshold=8.0))[0]["jump"].sum() == 1
    # DFRDT alternates ±1 (σ = √0.96 ≈ 0.98), then a rise of 3.5 flashes/min: DFRDT 1.75, between 1.5σ and 2σ
    weak = np.concatenate([np.tile([11.0, 9.0], 6), [12.5]])
    assert not sigma_jumps(periods(13), weak)[0]["flagged"].any()
    assert sigma_jumps(periods(13), weak, JumpCriteria(sigma_level=1.5))[0]["jump"].iloc[-1]
    assert not sigma_jumps(periods(13), weak, ERDMANN_POELMAN_2023)[0]["flagged"].any(), "12.5 fl/min is under 15"
    strong = weak + 5.0  # the same rise at 17.5 flashes/min
    assert not sigma_jumps(periods(13), strong)[0]["flagged"].any()
    assert sigma_jumps(periods(13), strong, ERDMANN_POELMAN_2023)[0]["jump"].iloc[-1]


def test_flagged_periods_within_six_minutes_are_one_jump():
    # a staircase: each period 2 fl/min above the last after 14 steady minutes, then steady, then another rise
    steady = [20.0, 20.5] * 4
    rates = np.array(steady + [30.0, 45.0, 70.0, 110.0] + [110.0, 111.0] * 4 + [300.0])
    judged, history = sigma_jumps(periods(len(rates)), rates)
    flagged = judged.index[judged["flagged"]].tolist()
    assert flagged[:2] == [8, 9]
    assert judged["jump"].sum() == 2 and judged.index[judged["jump"]].tolist() == [8, len(rates) - 1]
    assert history.last_flagged == periods(len(rates))[-1] and len(history.rates) == SCHULTZ_2009.carried_periods


def test_history_carries_a_series_across_windows():
    rates = np.concatenate([np.tile([22.0, 18.0], 8), [60.0, 60.0, 61.0]])
    whole, _ = sigma_jumps(periods(len(rates)), rates)
    first, history = sigma_jumps(periods(len(rates))[:14], rates[:14])
    second, _ = sigma_jumps(periods(len(rates))[14:], rates[14:], history=history)
    pd.testing.assert_frame_equal(pd.concat([first, second], ignore_index=True), whole, check_exact=True)
    assert second["jump"].sum() == 1
    # a jump flagged just before the boundary merges with one just after it
    late, flagged_late = sigma_jumps(
        periods(1), [50.0], history=JumpHistory(rates=(20.0,) * 6, last_flagged=T0 - pd.Timedelta(minutes=4))
    )
    assert late["flagged"].iloc[0] and not late["jump"].iloc[0] and flagged_late.last_flagged == T0
    assert sigma_jumps(periods(1), [50.0], history=JumpHistory(rates=(20.0,) * 6))[0]["jump"].iloc[0]


@pytest.mark.slow
def test_a_day_of_storms_is_tracked_within_five_minutes():
    flashes = storm_day("2024-06-01", copies=3, seed=1)
    assert len(flashes) >= 1_000_000
    day = pd.Timestamp("2024-06-01")
    began = time.perf_counter()
    result = track_window(flashes, day, day + pd.Timedelta(days=1), TrackState.empty(), grid_storms, OPTIONS)
    elapsed = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{len(flashes)} flashes, {len(result.track_summary)} tracks: {elapsed:.1f} s, peak RSS {peak_mib:.0f} MiB")
    assert elapsed <= 300
    assert result.flash_track["track_id"].notna().mean() >= 0.9
