"""Unit tests for choosing k: lightning_eda.analysis.clustering.choose_k, the criterion of k=auto
(choose_window_k, evaluation_ks), and evaluate_elbow on a planted elbow.

Plain Python, no Dagster (but for the config check of ``criterion``).
Every test pins the exact k (and the decisive word of the reason) it expects.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lightning_eda.analysis.clustering import (
    SILHOUETTE_TIE,
    KChoice,
    choose_k,
    choose_window_k,
    evaluate_elbow,
    evaluation_ks,
    parse_criterion,
)
from lightning_eda.analysis.storm_scale import k_range_around


def test_tie_threshold_is_one_hundredth():
    # The tests below place scores relative to this value; if it changes they must be revisited.
    assert SILHOUETTE_TIE == 0.01


# --- a unique best silhouette ---------------------------------------------------------------------------------


def test_unique_best_silhouette_wins_over_a_different_knee():
    # k=4 beats every other k by far more than 0.01, so the knee at 2 is irrelevant.
    k, reason = choose_k({2: 0.40, 3: 0.45, 4: 0.70, 5: 0.50}, knee=2)
    assert k == 4
    assert "best silhouette" in reason
    assert "k=4" in reason
    assert "0.7000" in reason  # the winning score, four decimals
    assert "knee" not in reason


def test_unique_best_silhouette_without_knee():
    k, reason = choose_k({2: 0.30, 3: 0.55, 4: 0.20}, knee=None)
    assert k == 3
    assert "best silhouette 0.5500 at k=3" == reason


def test_single_silhouette_score_is_taken():
    assert choose_k({6: -0.2}, knee=3)[0] == 6  # the only scored k, even with a negative score


# --- ties within SILHOUETTE_TIE: the knee decides when it is among them ------------------------------------------


def test_knee_picks_a_larger_k_than_the_smallest_tied_one():
    # 3, 4 and 5 are within 0.01 of the best (0.600); the knee at 4 is one of them, so 4 beats the smallest, 3.
    k, reason = choose_k({2: 0.30, 3: 0.595, 4: 0.600, 5: 0.592, 6: 0.40}, knee=4)
    assert k == 4
    assert "knee at k=4" in reason
    assert "[3, 4, 5]" in reason  # the tied set, sorted


def test_knee_picks_the_smallest_tied_k_even_though_a_larger_one_scores_higher():
    # 3 and 4 tie (0.605 - 0.600 = 0.005 <= 0.01); 4 scores slightly higher but the knee at 3 breaks the tie.
    k, reason = choose_k({2: 0.20, 3: 0.600, 4: 0.605, 5: 0.50}, knee=3)
    assert k == 3
    assert "knee at k=3" in reason


def test_knee_outside_the_tie_takes_the_smallest_tied_k():
    # 4 and 5 tie; the knee at 2 scores far lower, so it cannot break the tie: the smallest tied k (4) wins.
    k, reason = choose_k({2: 0.30, 4: 0.606, 5: 0.600}, knee=2)
    assert k == 4
    assert "smallest k" in reason
    assert "[4, 5]" in reason


def test_knee_not_among_the_scored_ks_takes_the_smallest_tied_k():
    # The knee (7) has no silhouette at all, so it is not in the tie.
    k, reason = choose_k({3: 0.5, 4: 0.5}, knee=7)
    assert k == 3
    assert "smallest k" in reason


def test_tie_without_knee_takes_the_smallest_tied_k():
    k, reason = choose_k({5: 0.5, 3: 0.5, 4: 0.1}, knee=None)
    assert k == 3  # dict order does not matter: the tie set is sorted
    assert "smallest k" in reason
    assert "knee: None" in reason


def test_difference_of_exactly_the_threshold_counts_as_a_tie():
    # 0.02 - 0.01 is exactly 0.01 in binary floating point (unlike, say, 0.5 - 0.49, which is
    # 0.010000000000000009); the precondition below guards that, so the test really sits on the boundary.
    best, other = 0.02, 0.01
    assert best - other == SILHOUETTE_TIE
    k, reason = choose_k({2: other, 3: best}, knee=2)
    assert k == 2  # tied with 3, and the knee is 2
    assert "knee at k=2" in reason


def test_difference_just_above_the_threshold_is_not_a_tie():
    # One ulp below 0.01 makes the difference 0.010000000000000002 > 0.01: 3 is the unique best, knee ignored.
    best, other = 0.02, math.nextafter(0.01, 0.0)
    assert best - other > SILHOUETTE_TIE
    k, reason = choose_k({2: other, 3: best}, knee=2)
    assert k == 3
    assert "knee" not in reason


def test_ties_are_measured_from_the_best_not_chained():
    # 3 is within 0.01 of 4 (the best) and 2 is within 0.01 of 3, but 2 is 0.016 below the best: not tied.
    # So the knee at 2 is outside the tie {3, 4}, and the smallest tied k, 3, is taken.
    k, reason = choose_k({2: 0.584, 3: 0.592, 4: 0.600}, knee=2)
    assert k == 3
    assert "[3, 4]" in reason
    assert "smallest k" in reason


# --- no silhouettes -------------------------------------------------------------------------------------------


def test_no_silhouettes_but_a_knee_takes_the_knee():
    k, reason = choose_k({}, knee=5)
    assert k == 5
    assert "knee" in reason
    assert "no silhouette" in reason


def test_neither_silhouettes_nor_knee_raises():
    with pytest.raises(ValueError, match="no silhouette scores and no knee"):
        choose_k({}, knee=None)


# --- evaluate_elbow on a planted elbow ------------------------------------------------------------------------


def _three_blobs() -> np.ndarray:
    # Three tight, far-apart blobs (sd 0.3, 10 apart): inertia collapses at k=3 and barely moves after it.
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return np.concatenate([c + rng.normal(0.0, 0.3, size=(50, 2)) for c in centres])


def test_evaluate_elbow_finds_the_planted_knee():
    inertias, knee = evaluate_elbow(_three_blobs(), range(1, 9), n_init=3, seed=0)
    assert sorted(inertias) == list(range(1, 9))
    assert knee == 3
    # The curve has the planted shape: a big drop up to 3, then a nearly flat tail.
    assert inertias[3] < 0.02 * inertias[1]
    assert inertias[3] - inertias[8] < 0.01 * inertias[1]


def test_evaluate_elbow_drops_ks_above_the_distinct_points_and_needs_three_for_a_knee():
    # Two distinct rows: only k=1 and k=2 are feasible, and two points make no curve to find a knee on.
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    inertias, knee = evaluate_elbow(X, [1, 2, 3, 4], n_init=2, seed=0)
    assert sorted(inertias) == [1, 2]
    assert inertias[2] == pytest.approx(0.0)
    assert knee is None


def test_evaluate_elbow_knee_then_feeds_choose_k():
    # End to end in plain Python: with no silhouettes the elbow's knee is the answer.
    _, knee = evaluate_elbow(_three_blobs(), range(1, 9), n_init=3, seed=0)
    assert choose_k({}, knee) == (3, "knee of the elbow curve (k=3); no silhouette scores")


# --- the fits shared by the evaluators --------------------------------------------------------------------------


def test_the_fits_hash_the_features_once_and_keep_their_distinct_count(tmp_path, monkeypatch):
    from lightning_eda.analysis import clustering

    X = np.repeat(_three_blobs(), 2, axis=0)  # every row twice: half the rows are distinct
    distinct = len(np.unique(X, axis=0))
    hashed = []
    real_fingerprint = clustering.fingerprint
    monkeypatch.setattr(clustering, "fingerprint", lambda X: hashed.append(1) or real_fingerprint(X))
    fits = clustering.KMeansFits.load(tmp_path / "fits.npz", X, n_init=2, seed=0)
    evaluate_elbow(X, range(1, 5), n_init=2, seed=0, fits=fits)
    fits.save(tmp_path / "fits.npz")
    assert len(hashed) == 1 and fits.distinct_rows == distinct

    real_unique = np.unique

    def unique(a, *args, **kwargs):
        if kwargs.get("axis") == 0:
            pytest.fail("the distinct rows were counted again; the count is saved with the fits")
        return real_unique(a, *args, **kwargs)

    monkeypatch.setattr(np, "unique", unique)
    again = clustering.KMeansFits.load(tmp_path / "fits.npz", X, n_init=2, seed=0)
    sweep = clustering.evaluate_silhouette(X, range(2, 5), n_init=2, seed=0, sample_size=10_000, fits=again)
    assert len(hashed) == 2 and again.distinct_rows == distinct and sorted(sweep.scores) == [2, 3, 4]
    assert sweep.best_k == max(sweep.scores, key=sweep.scores.get)
    with pytest.raises(ValueError, match="other features"):
        again.fit(X[::-1].copy(), [2])


# --- the criterion of k=auto: the storms, the silhouette, and the fallback of a window with no storm ------------

STORM_REASON = "3 storms: cores of the flash count on 10 km cells"
# inertia falls steeply up to 3 then flattens (knee 3); the silhouette peaks clearly at 4
EVALUATION = pd.DataFrame(
    {
        "k": [1, 2, 3, 4, 5, 6],
        "inertia": [100.0, 40.0, 10.0, 8.0, 7.0, 6.5],
        "silhouette": [np.nan, 0.3, 0.5, 0.7, 0.4, 0.3],
    }
)


def test_the_storms_criterion_takes_the_storm_count_and_its_reason():
    choice = choose_window_k("auto", "storms", storm_count=3, storm_reason=STORM_REASON, evaluation=EVALUATION)
    assert choice == KChoice(3, STORM_REASON, "storms")  # not the silhouette's 4


def test_the_silhouette_criterion_is_the_previous_rule():
    choice = choose_window_k("auto", "silhouette", storm_count=3, storm_reason=STORM_REASON, evaluation=EVALUATION)
    assert choice == KChoice(4, "best silhouette 0.7000 at k=4", "silhouette")


def test_a_window_with_no_storm_falls_back_to_the_silhouette_and_says_so():
    reason = "0 storms: cores of the flash count on 10 km cells"
    choice = choose_window_k("auto", "storms", storm_count=0, storm_reason=reason, evaluation=EVALUATION)
    assert (choice.k, choice.criterion) == (4, "silhouette")
    assert choice.reason == f"no storm in the window ({reason}), so by silhouette: best silhouette 0.7000 at k=4"


def test_a_whole_number_k_is_that_k_whatever_the_criterion():
    for criterion in ("storms", "silhouette"):
        choice = choose_window_k(7, criterion, storm_count=3, storm_reason=STORM_REASON, evaluation=EVALUATION)
        assert choice == KChoice(7, "set in config", "config")


def test_the_criterion_is_checked_before_anything_runs(tmp_path):
    from dagster import materialize

    from lightning_eda.orchestration.assets.clustering import KMeansConfig, kmeans_cluster
    from lightning_eda.orchestration.resources import build_resources

    assert parse_criterion(" Storms ") == "storms" and parse_criterion("silhouette") == "silhouette"
    assert KMeansConfig().criterion == "storms"
    assert KMeansConfig(criterion="SILHOUETTE").criterion == "silhouette"
    for bad in ("knee", "", 3):
        with pytest.raises(ValueError, match="must be one of storms, silhouette"):
            parse_criterion(bad)
    with pytest.raises(Exception, match="must be one of storms, silhouette"):
        KMeansConfig(criterion="knee")
    with pytest.raises(Exception, match="must be one of storms, silhouette"):
        materialize(
            [kmeans_cluster],
            resources=build_resources(tmp_path),
            run_config={"ops": {"kmeans_cluster": {"config": {"criterion": "knee"}}}},
        )
    assert not (tmp_path / "store").exists()  # refused before the step read or wrote anything


def test_the_evaluators_try_the_ks_configured_or_about_ten_around_the_storm_count():
    assert evaluation_ks([5, 3, 3], storm_count=189, without_storms=range(2, 41)) == [3, 5]
    around = evaluation_ks([], storm_count=189, without_storms=range(2, 41))
    assert around == k_range_around(189) and min(around) < 189 < max(around) and 189 in around
    assert 9 <= len(around) <= 11 and min(around) == 94 and max(around) == 284  # 0.5k .. 1.5k
    assert evaluation_ks([], storm_count=0, without_storms=range(2, 41)) == list(range(2, 41))
