"""The serving order: seeded permutations, windows, and their stability."""

from __future__ import annotations

import pytest

from chord.data.order import ShuffleOrder, derive_seed, permutation


def test_permutation_is_pinned_across_versions():
    # Checkpoints resume by recomputing orders: these values must never change.
    assert permutation(10, 123) == [1, 8, 5, 7, 2, 3, 6, 9, 4, 0]
    assert derive_seed("units", 0, 0) == 3860635885335933889


def test_permutation_is_a_permutation_and_roughly_uniform():
    firsts = [permutation(4, s)[0] for s in range(4000)]
    assert all(sorted(permutation(n, 7)) == list(range(n)) for n in (0, 1, 2, 17))
    assert all(abs(firsts.count(k) - 1000) < 120 for k in range(4))


def test_windows_partition_each_epoch():
    order = ShuffleOrder([3, 5, 2, 4, 1], seed=9, shuffle=True, window_units=2)
    for epoch in range(3):
        units = order.unit_order(epoch)
        assert sorted(units) == [0, 1, 2, 3, 4]
        windows = [order.window(epoch, s) for s in (0, 2, 4)]
        assert [w.units for w in windows] == [tuple(units[0:2]), tuple(units[2:4]), tuple(units[4:5])]
        assert [w.num_rows for w in windows] == [order.window_rows(epoch, s) for s in (0, 2, 4)]
        assert sum(w.num_rows for w in windows) == 15
        assert order.rows_before(epoch, 4) == 15 - windows[2].num_rows
    assert order.unit_order(0) != order.unit_order(1) or order.unit_order(1) != order.unit_order(2)


def test_no_shuffle_keeps_file_order_and_bad_windows_are_refused():
    order = ShuffleOrder([3, 5], seed=0, shuffle=False, window_units=1)
    assert order.unit_order(4) == [0, 1]
    assert list(order.window(0, 1).row_order) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="not a window boundary"):
        ShuffleOrder([3, 5, 1], seed=0, shuffle=True, window_units=2).window(0, 1)
    with pytest.raises(ValueError, match="shuffle_window_row_groups must be >= 1"):
        ShuffleOrder([3], seed=0, shuffle=True, window_units=0)
