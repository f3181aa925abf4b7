"""`TimedLoss`: the worker's loss wrapper adds up the seconds spent in the loss function."""

from __future__ import annotations

import time

import pytest

from recipe.train.workers import TimedLoss


def test_timed_loss_returns_the_result_and_adds_up_seconds_even_on_error():
    def loss(x, *, scale):
        time.sleep(0.02)
        if x < 0:
            raise ValueError("negative")
        return x * scale, {"m": 1}

    timed = TimedLoss(loss)
    assert timed.seconds == 0.0
    assert timed(2, scale=3) == (6, {"m": 1})
    first = timed.seconds
    assert first >= 0.02
    with pytest.raises(ValueError, match="negative"):
        timed(-1, scale=1)
    assert timed.seconds >= first + 0.02
