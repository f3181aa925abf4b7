"""The order in which expert rows are served: seeded, epoch by epoch, one window at a time.

A *unit* is one parquet row group (file, row_group). For each epoch:

1. the units are put in a seeded random order (a permutation of all units of all files);
2. consecutive units in that order form *windows* of `window_units` units (the last window of
   an epoch may be shorter);
3. the rows of a window are read together and served in a seeded random order.

Every row is served exactly once per epoch, and the whole order is a pure function of
(seed, epoch, unit row counts, window_units): nothing random is ever stored, so a resumed run
recomputes it. With `shuffle=False` units and rows keep file order.

Shuffle quality vs memory: only one window of row groups is decoded at a time, so memory is
about `window_units` row groups. The price: rows of the same row group always share a window,
so two rows that were neighbours in the file are served at most about
`window_units * rows_per_row_group` rows apart, and a batch draws from at most `window_units`
row groups. A file sorted by source or difficulty therefore stays locally sorted at that scale.
A larger window (or smaller row groups, e.g. `row_group_size=1000..10000` when writing) mixes
better; a file that fits in one window is shuffled perfectly.

Randomness: a Fisher-Yates shuffle driven by `random.Random(int).getrandbits`, whose output
Python guarantees for an integer seed, so orders do not change with library versions (a
checkpoint resumes exactly after an upgrade).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts (stable across runs and Python versions)."""
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def permutation(n: int, seed: int) -> list[int]:
    """A uniformly random permutation of range(n), fully determined by `seed`."""
    rng = random.Random(seed)
    getrandbits = rng.getrandbits
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        # uniform j in [0, i] by rejection sampling on the bit length of i
        bits = i.bit_length()
        j = getrandbits(bits)
        while j > i:
            j = getrandbits(bits)
        order[i], order[j] = order[j], order[i]
    return order


@dataclass(frozen=True)
class Window:
    """The units (indices into the unit list) of one window and the order of its rows.

    Row k of the window is the k-th row when the units' rows are laid end to end in `units`
    order; `row_order[i]` is the window row served i-th.
    """

    start: int
    units: tuple[int, ...]
    row_order: Sequence[int]

    @property
    def num_rows(self) -> int:
        return len(self.row_order)


class ShuffleOrder:
    """Epoch -> unit order -> windows -> row order; see the module docstring."""

    def __init__(self, unit_rows: Sequence[int], *, seed: int, shuffle: bool, window_units: int) -> None:
        if window_units < 1:
            raise ValueError(f"shuffle_window_row_groups must be >= 1, got {window_units}")
        if not unit_rows or sum(unit_rows) == 0:
            raise ValueError("no rows to order")
        self.unit_rows = list(unit_rows)
        self.seed = seed
        self.shuffle = shuffle
        self.window_units = window_units
        self.num_units = len(self.unit_rows)
        self.num_rows = sum(self.unit_rows)
        self._cached_epoch: int | None = None
        self._cached_order: list[int] = []
        self._cached_rows_before: list[int] = []

    def unit_order(self, epoch: int) -> list[int]:
        """The units of `epoch`, in serving order."""
        if self._cached_epoch != epoch:
            if self.shuffle:
                order = permutation(self.num_units, derive_seed("units", self.seed, epoch))
            else:
                order = list(range(self.num_units))
            rows_before = [0]
            for u in order:
                rows_before.append(rows_before[-1] + self.unit_rows[u])
            self._cached_epoch, self._cached_order, self._cached_rows_before = epoch, order, rows_before
        return self._cached_order

    def rows_before(self, epoch: int, start: int) -> int:
        """Rows of `epoch` served before unit position `start` of its unit order."""
        self.unit_order(epoch)
        return self._cached_rows_before[start]

    def window_rows(self, epoch: int, start: int) -> int:
        """Rows in the window that begins at position `start` of epoch `epoch`'s unit order."""
        return self.rows_before(epoch, min(start + self.window_units, self.num_units)) - self.rows_before(
            epoch, start
        )

    def window(self, epoch: int, start: int) -> Window:
        """The window that begins at position `start` (a multiple of window_units) of the order."""
        if not 0 <= start < self.num_units or start % self.window_units:
            raise ValueError(f"window start {start} is not a window boundary of {self.num_units} units")
        units = tuple(self.unit_order(epoch)[start : start + self.window_units])
        n = sum(self.unit_rows[u] for u in units)
        if self.shuffle:
            row_order: Sequence[int] = permutation(n, derive_seed("rows", self.seed, epoch, start))
        else:
            row_order = range(n)
        return Window(start=start, units=units, row_order=row_order)
