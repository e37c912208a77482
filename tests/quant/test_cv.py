"""Tests for pairdesk.quant.cv (spec 004 §時系列CV・評価KPI 仕様 v1, docs/quant-contracts.md §Validation)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pairdesk.quant.cv import (
    PurgedKFold,
    WalkForwardFold,
    walk_forward_indices,
    walk_forward_splits,
)

CV = PurgedKFold(n_splits=5, purge_bars=24, embargo_bars=24, min_block_len_bars=240)


def random_samples(n_bars: int, seed: int, density: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.flatnonzero(rng.random(n_bars) < density).astype(np.int64)
    te = t + rng.integers(0, 49, t.size)
    return t, te


def check_folds(cv: PurgedKFold, t: np.ndarray, te: np.ndarray, n_bars: int) -> None:
    """Independent restatement of the guarantees for every fold."""
    folds = list(cv.split(t, te, n_bars))
    assert len(folds) == cv.n_splits
    seen = np.zeros(t.size, dtype=int)
    base, extra = divmod(n_bars, cv.n_splits)
    start = 0
    for k, (train, test) in enumerate(folds):
        length = base + (k < extra)
        bs, be = start, start + length - 1
        start += length
        assert length >= cv.min_block_len_bars
        seen[test] += 1
        assert np.all((t[test] >= bs) & (t[test] <= be))
        assert np.intersect1d(train, test).size == 0
        # contract: no training label interval [t, t_end] meets [bs - purge, be + embargo]
        lo, hi = bs - cv.purge_bars, be + cv.embargo_bars
        assert not np.any((t[train] <= hi) & (te[train] >= lo))
        # stronger: nor the span of the test labels extended the same way
        hi2 = max(be, int(te[test].max()) if test.size else be) + cv.embargo_bars
        assert not np.any((t[train] <= hi2) & (te[train] >= lo))
        # and nothing else is dropped
        others = np.setdiff1d(np.arange(t.size), test)
        clean = others[(te[others] < lo) | (t[others] > hi2)]
        np.testing.assert_array_equal(np.sort(train), clean)
    np.testing.assert_array_equal(seen, 1)  # every sample is a test sample exactly once


@pytest.mark.parametrize(("n_bars", "seed"), [(1200, 0), (3001, 1), (10_007, 2)])
def test_purge_and_coverage_random(n_bars: int, seed: int) -> None:
    t, te = random_samples(n_bars, seed)
    check_folds(CV, t, te, n_bars)


@settings(max_examples=40, deadline=None)
@given(
    n_bars=st.integers(600, 3000),
    k=st.integers(2, 5),
    purge=st.integers(0, 60),
    embargo=st.integers(0, 60),
    seed=st.integers(0, 2**16),
)
def test_purge_property(n_bars: int, k: int, purge: int, embargo: int, seed: int) -> None:
    cv = PurgedKFold(k, purge, embargo, min_block_len_bars=100)
    t, te = random_samples(n_bars, seed, density=0.5)
    check_folds(cv, t, te, n_bars)


def test_purge_hand_worked() -> None:
    cv = PurgedKFold(n_splits=4, purge_bars=24, embargo_bars=24, min_block_len_bars=240)
    assert cv.blocks(1000) == [(0, 249), (250, 499), (500, 749), (750, 999)]
    t = np.array([100, 220, 230, 260, 480, 510, 530, 760])
    te = np.array([148, 225, 240, 300, 528, 520, 560, 800])
    folds = list(cv.split(t, te, 1000))
    train1, test1 = folds[1]  # block [250, 499]; test labels end at 528 -> window [226, 552]
    assert test1.tolist() == [3, 4]
    # 220..225 ends before 226: kept; 230..240 reaches 226: purged; 510 and 530 start <= 552:
    # embargoed; 760 kept
    assert train1.tolist() == [0, 1, 7]
    train2, test2 = folds[2]  # block [500, 749], labels end <= 560 -> window [476, 773]
    assert test2.tolist() == [5, 6]
    assert train2.tolist() == [0, 1, 2, 3]  # 480..528 purged, 760 embargoed


def test_min_block_length_error() -> None:
    t = np.arange(0, 1199, 3)
    with pytest.raises(ValueError, match="min_block_len_bars=240"):
        list(CV.split(t, t + 10, 1199))
    assert len(list(CV.split(t, t + 10, 1200))) == 5


def test_split_input_errors() -> None:
    t = np.arange(0, 1200, 2)
    with pytest.raises(ValueError, match="same length"):
        list(CV.split(t, t[:-1], 1200))
    with pytest.raises(ValueError, match=">= t_pos"):
        list(CV.split(t, t - 1, 1200))
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        list(CV.split(t, t + 1, 1000))
    with pytest.raises(ValueError, match="integer"):
        list(CV.split(t.astype(float), t + 1.0, 1200))
    with pytest.raises(ValueError, match="n_splits"):
        PurgedKFold(n_splits=1)


def test_walk_forward_expanding_non_overlapping() -> None:
    n_bars = 24 * (360 + 95)
    folds = walk_forward_splits(n_bars, bars_per_day=24)
    assert folds[0] == WalkForwardFold(0, 8640, 8640, 9360)
    assert [f.test_start for f in folds] == [8640, 9360, 10080, 10800]
    assert folds[-1].test_end == n_bars  # truncated final step of 5 days
    for prev, cur in itertools.pairwise(folds):
        assert cur.train_start == 0
        assert cur.train_end > prev.train_end  # expanding
        assert cur.test_start == prev.test_end  # contiguous, non-overlapping
    for f in folds:
        assert f.train_end == f.test_start
        assert f.train_end - f.train_start >= 360 * 24
        assert 0 < f.test_end - f.test_start <= 30 * 24


def test_walk_forward_other_timeframe_and_errors() -> None:
    folds = walk_forward_splits(6 * 400, bars_per_day=6, step_days=30, min_train_days=360)
    assert [(f.train_end, f.test_end) for f in folds] == [(2160, 2340), (2340, 2400)]
    with pytest.raises(ValueError, match="no out-of-sample bar"):
        walk_forward_splits(360 * 24, bars_per_day=24)
    with pytest.raises(ValueError, match="> 0"):
        walk_forward_splits(10_000, bars_per_day=0)


def test_walk_forward_indices_purge() -> None:
    fold = WalkForwardFold(0, 1000, 1000, 1720)
    t = np.array([10, 900, 950, 960, 980, 999, 1000, 1500, 1719, 1720])
    te = np.array([50, 975, 975, 976, 1020, 1040, 1048, 1540, 1767, 1760])
    train, test = walk_forward_indices(fold, t, te, purge_bars=24)
    assert train.tolist() == [0, 1, 2]  # label ends must be < 1000 - 24 = 976
    assert test.tolist() == [6, 7, 8]
    train0, _ = walk_forward_indices(fold, t, te, purge_bars=0)
    assert train0.tolist() == [0, 1, 2, 3]
    # property over a full walk-forward: no training label reaches the test window
    t2, te2 = random_samples(24 * 420, 3)
    for f in walk_forward_splits(24 * 420, 24):
        tr, ts = walk_forward_indices(f, t2, te2)
        assert te2[tr].max() < f.test_start - 24
        assert np.all((t2[ts] >= f.test_start) & (t2[ts] < f.test_end))
    with pytest.raises(ValueError, match="purge_bars"):
        walk_forward_indices(fold, t, te, purge_bars=-1)
