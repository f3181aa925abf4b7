"""chord.advantages: GRPO advantages over on-policy group members, expert rows kept out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from chord.advantages import broadcast_to_tokens, grpo_outcome_advantages

# row:        0    1    2    3    4(E) 5(E) 6
# group:      a    a    a    b    b    a    c
# score:      1    0    1    1    0.5  0.7  0.3
# group a on-policy {1, 0, 1}: mean 2/3, unbiased std sqrt(((1/3)^2 * 2 + (2/3)^2) / 2) = sqrt(1/3)
#   -> A = (1/3)/0.57735 = 0.577350, (-2/3)/0.57735 = -1.154701, 0.577350
# group b on-policy {1} (row 4 is expert): single member -> 0;  group c {0.3}: single -> 0
# expert rows 4, 5 -> 0 and excluded (row 5 would otherwise shift group a's mean to 0.675)
SCORES = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.7, 0.3])
GROUPS = ["a", "a", "a", "b", "b", "a", "c"]
EXPERT = torch.tensor([False, False, False, False, True, True, False])
HAND = [0.577350, -1.154701, 0.577350, 0.0, 0.0, 0.0, 0.0]

# expert_in_groups=True (LUFFY):
# group a {1, 0, 1, 0.7}: mean 0.675, devs 0.325, -0.675, 0.325, 0.025,
#   unbiased var (0.105625 + 0.455625 + 0.105625 + 0.000625) / 3 = 0.2225, std 0.471699
#   -> 0.689000, -1.430997, 0.689000, 0.053000
# group b {1, 0.5}: mean 0.75, std sqrt(0.125) = 0.353553 -> 0.707107, -0.707107
HAND_LUFFY = [0.689000, -1.430997, 0.689000, 0.707107, -0.707107, 0.053000, 0.0]


def test_advantages_match_hand_values_with_expert_rows_excluded():
    adv = grpo_outcome_advantages(SCORES, GROUPS, EXPERT)
    assert adv.tolist() == pytest.approx(HAND, abs=1e-5)


def test_expert_in_groups_joins_statistics_and_gets_advantages():
    adv = grpo_outcome_advantages(SCORES, GROUPS, EXPERT, expert_in_groups=True)
    assert adv.tolist() == pytest.approx(HAND_LUFFY, abs=1e-5)


def test_without_std_normalisation_advantage_is_score_minus_group_mean():
    adv = grpo_outcome_advantages(SCORES, GROUPS, EXPERT, norm_by_std=False)
    assert adv.tolist() == pytest.approx([1 / 3, -2 / 3, 1 / 3, 0.0, 0.0, 0.0, 0.0], abs=1e-6)


def test_single_member_group_gets_zero_not_its_raw_reward():
    adv = grpo_outcome_advantages(torch.tensor([0.8]), ["only"], torch.tensor([False]))
    assert adv.tolist() == [0.0]


def test_group_with_identical_scores_gets_zero_not_nan():
    adv = grpo_outcome_advantages(torch.tensor([1.0, 1.0, 1.0]), [0, 0, 0], torch.zeros(3, dtype=torch.bool))
    assert adv.tolist() == [0.0, 0.0, 0.0]


def test_all_expert_batch_gives_all_zero_advantages():
    adv = grpo_outcome_advantages(torch.tensor([1.0, 0.0]), ["a", "a"], torch.ones(2, dtype=torch.bool))
    assert adv.tolist() == [0.0, 0.0]
    assert not any(math.isnan(x) for x in adv.tolist())


@pytest.mark.parametrize(
    "ids",
    [
        torch.tensor([7, 7, 7, 8, 8, 7, 9]),
        np.array(["a", "a", "a", "b", "b", "a", "c"], dtype=object),
        ("a", "a", "a", "b", "b", "a", "c"),
    ],
)
def test_group_ids_may_be_tensor_array_or_sequence(ids):
    adv = grpo_outcome_advantages(SCORES, ids, EXPERT)
    assert adv.tolist() == pytest.approx(HAND, abs=1e-5)


def test_broadcast_to_tokens_spreads_row_advantage_over_counted_tokens():
    out = broadcast_to_tokens(
        torch.tensor([2.0, -1.0]), torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    )
    assert out.tolist() == [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: grpo_outcome_advantages(SCORES, GROUPS[:-1], EXPERT), r"^group_ids: expected 7 ids"),
        (lambda: grpo_outcome_advantages(SCORES, [[1]] * 7, EXPERT), r"^group_ids: ids must be hashable"),
        (lambda: grpo_outcome_advantages(SCORES, GROUPS, EXPERT[:3]), r"^is_expert: expected shape"),
        (lambda: grpo_outcome_advantages(SCORES[None], GROUPS, EXPERT), r"^scores: expected shape \[B\]"),
        (lambda: grpo_outcome_advantages(SCORES.long(), GROUPS, EXPERT), r"^scores: expected a floating"),
        (lambda: grpo_outcome_advantages(SCORES, GROUPS, EXPERT, eps=-1.0), r"^eps:"),
        (lambda: broadcast_to_tokens(torch.ones(2), torch.ones(3, 4)), r"^mask: expected shape \[2, T\]"),
        (lambda: broadcast_to_tokens(torch.ones(2, 1), torch.ones(2, 4)), r"^adv: expected shape \[B\]"),
    ],
)
def test_bad_advantage_inputs_raise_value_error_naming_them(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
