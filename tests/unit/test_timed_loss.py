"""`TimedLoss`: the worker's loss wrapper adds up the seconds spent in the loss function and the
tokens (real, padded) of the micro-batches it saw."""

from __future__ import annotations

import time

import pytest
import torch

from recipe.train.workers import TimedLoss, micro_batch_tokens


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


def test_micro_batch_tokens_counts_real_and_padded_tokens():
    # verl's micro-batches: jagged input_ids (rows of 3, 5 and 2 tokens), padded to 5 for the forward
    jagged = torch.nested.nested_tensor(
        [torch.arange(3), torch.arange(5), torch.arange(2)], layout=torch.jagged
    )
    assert micro_batch_tokens({"input_ids": jagged}) == (10, 15)
    dense = {
        "input_ids": torch.zeros(2, 4, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]]),
    }
    assert micro_batch_tokens(dense) == (5, 6)
    assert micro_batch_tokens({"input_ids": torch.zeros(3, 4, dtype=torch.long)}) == (12, 12)


def test_timed_loss_adds_up_the_tokens_of_the_micro_batches_it_saw():
    timed = TimedLoss(lambda model_output, data, dp_group=None: (0.0, {}))
    rows = [torch.arange(4), torch.arange(1)]
    for _ in range(2):
        timed(model_output={}, data={"input_ids": torch.nested.nested_tensor(rows, layout=torch.jagged)})
    assert (timed.tokens, timed.padded_tokens) == (10, 16)
