"""chord.prefix: step splitting, UFT's hint draw, TRAPO's slot plan and cuts (hand-computed)."""

from __future__ import annotations

import math

import pytest

from chord.prefix import (
    TrapoSchedule,
    TrapoStage,
    UftSchedule,
    step_ends,
    step_token_ends,
    tokens_before,
    trapo_cut,
    uft_hint_parts,
    uft_hint_steps,
)


def test_step_ends_blank_lines_and_custom_separator():
    text = "a=1\n\nb=2  \n\n\n\nc=3"
    # steps "a=1" (ends 3), "b=2" (ends 8, trailing spaces dropped), a blank piece, "c=3" (the end)
    assert step_ends(text) == [3, 8, len(text)]
    assert step_ends("x;y;", separator=";") == [1, 4]
    assert step_ends("   ") == []
    with pytest.raises(ValueError, match="separator"):
        step_ends("x", separator="")


def test_tokens_before_and_step_token_ends():
    offsets = [(0, 2), (2, 3), (3, 5), (5, 8), (8, 9)]
    assert tokens_before(offsets, 3) == 2
    assert tokens_before(offsets, 4) == 2  # the token (3, 5) crosses the cut
    assert tokens_before(offsets, 0) == 0
    assert step_token_ends(offsets, [3, 8, 9]) == [2, 4, 5]


def test_uft_probability_is_the_cosine_of_the_paper():
    s = UftSchedule()
    assert s.probability(0) == pytest.approx(0.95)
    assert s.probability(150) == pytest.approx(0.05 + 0.45)
    assert s.probability(300) == pytest.approx(0.05)
    assert s.probability(301) == 0.0
    assert s.probability(75) == pytest.approx(0.05 + 0.45 * (1 + math.cos(math.pi / 4)))


def test_uft_draw_is_a_pure_function_of_seed_step_and_prompt():
    s = UftSchedule(seed=3)
    draws = [uft_hint_parts(s, step, "p7", 5) for step in range(20)]
    assert draws == [uft_hint_parts(UftSchedule(seed=3), step, "p7", 5) for step in range(20)]
    assert all(0 <= k <= 5 for k in draws)
    other_seed = [uft_hint_parts(UftSchedule(seed=4), step, "p7", 5) for step in range(20)]
    assert other_seed != draws
    # p = 1 (low 1, amp 0) always gives K = num, p = 0 (after T) always 0
    assert uft_hint_parts(UftSchedule(low=1.0, amp=0.0), 5, "q", 4) == 4
    assert uft_hint_parts(UftSchedule(total_steps=10), 11, "q", 4) == 0


def test_uft_binomial_mean_matches_p():
    s = UftSchedule(total_steps=300)
    draws = [uft_hint_parts(s, 150, f"prompt{i}", 5) for i in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(5 * 0.5, abs=0.06)


def test_uft_hint_steps_groups_long_solutions_into_parts():
    full = UftSchedule(low=1.0, amp=0.0)  # K = num always
    assert uft_hint_steps(full, 0, "k", 3) == 3  # num = 3, c_3 = 3
    assert uft_hint_steps(full, 0, "k", 12) == 12  # num = 5, c_5 = 12
    assert uft_hint_steps(full, 0, "k", 0) == 0
    none = UftSchedule(low=0.0, amp=0.0)
    assert uft_hint_steps(none, 0, "k", 12) == 0
    # c_K = floor(K * steps / num): find a draw with K = 2 for 12 steps (num 5) -> 4 steps
    half = UftSchedule(low=0.0, amp=0.25)
    for key in range(200):
        if uft_hint_parts(half, 0, str(key), 5) == 2:
            assert uft_hint_steps(half, 0, str(key), 12) == 4
            break
    else:
        pytest.fail("no K = 2 draw in 200 prompts")


def test_uft_schedule_refuses_probabilities_outside_0_1():
    with pytest.raises(ValueError, match="chord.prefix.uft.low / amp"):
        UftSchedule(low=0.2, amp=0.5)


def test_trapo_default_slots_and_decisions():
    sched = TrapoSchedule()
    sched.check(8)
    slots = sched.slots()
    assert [s.stage for s in slots] == [None] * 4 + [0, 0, 1, 2]
    assert [s.fraction for s in slots] == [0, 0, 0, 0, 0.25, 0.25, 0.5, 1.0]
    assert [s.first_slot_of_stage for s in slots[4:]] == [4, 4, 6, 7]
    # 25% stage: guided when fewer than 2 of the 4 plain rollouts are correct
    assert sched.guided(slots[4], [True, False, False, False])
    assert not sched.guided(slots[4], [True, True, False, False])
    # 50%: fewer than 4 of 6; 100%: any of 7 failed
    assert sched.guided(slots[6], [True, True, True, False, False, False])
    assert not sched.guided(slots[6], [True, True, True, True, False, False])
    assert sched.guided(slots[7], [True] * 6 + [False])
    assert not sched.guided(slots[7], [True] * 7)
    assert not sched.guided(slots[0], [])
    with pytest.raises(ValueError, match="needs the scores of 4"):
        sched.guided(slots[4], [True])


def test_trapo_schedule_must_match_n():
    with pytest.raises(ValueError, match="actor_rollout_ref.rollout.n = 4"):
        TrapoSchedule().check(4)
    TrapoSchedule(plain=2, stages=(TrapoStage(2, 1.0, 1),)).check(4)
    with pytest.raises(ValueError, match=r"stages\[0\].fraction"):
        TrapoSchedule(plain=2, stages=(TrapoStage(2, 0.0, 1),)).check(4)


def test_trapo_cut_nearest_step_end():
    cuts = [10, 25, 40]  # a 3-step solution of 40 tokens
    assert trapo_cut(cuts, 0.25) == 10  # target 10
    assert trapo_cut(cuts, 0.5) == 25  # target 20: 25 is nearer than 10
    assert trapo_cut(cuts, 0.4375) == 10  # target 17.5: tie 10 / 25 -> the shorter
    assert trapo_cut(cuts, 1.0) == 40
    assert trapo_cut([4], 0.25) == 1  # one step: token cut, round(1.0)
    assert trapo_cut([2], 0.25) == 1  # round(0.5) = 1 (at least one token)
    assert trapo_cut([7], 0.5) == 4  # round(3.5) half up
    assert trapo_cut([], 0.5) == 0
