"""chord.schedules: the CHORD mu schedule at hand-computed steps, the other schedules, the registry."""

from __future__ import annotations

import pytest

from chord.schedules import (
    ConstantMu,
    CosineMu,
    LinearMu,
    RewardAdaptiveMu,
    build_mu_schedule,
    mu_schedule,
)

# CHORD-mu preset W=0, D=200, peak 0.9, valley 0.05:
#   s=0:   cosine at progress 0   -> 0.9
#   s=100: 0.05 + 0.85 * 0.5 * (1 + cos(pi/2)) = 0.05 + 0.425 = 0.475
#   s=200, 300: past W + D        -> 0.05
CHORD_MU = {"warmup_steps": 0, "decay_steps": 200, "peak": 0.9, "valley": 0.05}
CHORD_MU_HAND = {0: 0.9, 100: 0.475, 200: 0.05, 300: 0.05}
# tuned-both W=200, D=400, peak 0.5, valley 0.02:
#   s=100: warmup 0.5 * 100/200 = 0.25;  s=200: 0.5
#   s=400: 0.02 + 0.48 * 0.5 * (1 + cos(pi/2)) = 0.26;  s=600: 0.02
TUNED = {"warmup_steps": 200, "decay_steps": 400, "peak": 0.5, "valley": 0.02}
TUNED_HAND = {0: 0.0, 100: 0.25, 200: 0.5, 400: 0.26, 600: 0.02, 10_000: 0.02}


@pytest.mark.parametrize(("step", "expected"), sorted(CHORD_MU_HAND.items()))
def test_chord_mu_preset_at_hand_computed_steps(step, expected):
    assert mu_schedule(step, **CHORD_MU) == pytest.approx(expected, abs=1e-12)
    assert CosineMu(**CHORD_MU)(step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("step", "expected"), sorted(TUNED_HAND.items()))
def test_tuned_both_preset_at_hand_computed_steps(step, expected):
    assert mu_schedule(step, **TUNED) == pytest.approx(expected, abs=1e-12)
    assert build_mu_schedule("cosine", **TUNED)(step) == pytest.approx(expected, abs=1e-12)


def test_cosine_quarter_point_of_decay():
    # s = W + D/4: 0.05 + 0.85 * 0.5 * (1 + cos(pi/4)) = 0.05 + 0.425 * 1.707107 = 0.775520
    assert mu_schedule(50, **CHORD_MU) == pytest.approx(0.775520, abs=1e-6)


def test_zero_warmup_and_zero_decay_give_valley_from_the_start():
    assert mu_schedule(0, warmup_steps=0, decay_steps=0, peak=0.9, valley=0.1) == 0.1


def test_zero_decay_jumps_from_warmup_to_valley():
    params = {"warmup_steps": 10, "decay_steps": 0, "peak": 0.8, "valley": 0.1}
    assert [mu_schedule(s, **params) for s in (5, 9, 10)] == pytest.approx([0.4, 0.72, 0.1])


def test_constant_schedule_ignores_step_and_reward():
    schedule = build_mu_schedule("constant", value=0.1)
    assert [schedule(0), schedule(10**6, mean_reward=0.9)] == [0.1, 0.1]


def test_linear_schedule_interpolates_then_holds():
    schedule = LinearMu(start=1.0, end=0.2, steps=10)
    assert [schedule(s) for s in (0, 5, 10, 50)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    assert LinearMu(start=1.0, end=0.2, steps=0)(0) == 0.2


@pytest.mark.parametrize(
    ("reward", "expected"), [(0.2, 0.3), (0.5, 0.0), (0.9, 0.0), (-1.0, 1.0), (-0.3, 0.8)]
)
def test_adaptive_mu_is_tau_minus_reward_clipped_to_unit_interval(reward, expected):
    assert RewardAdaptiveMu(tau=0.5)(7, mean_reward=reward) == pytest.approx(expected)


def test_adaptive_mu_requires_mean_reward():
    with pytest.raises(ValueError, match="^mean_reward"):
        build_mu_schedule("adaptive")(3)


def test_schedules_are_stateless_so_call_order_does_not_matter():
    schedule = build_mu_schedule("cosine", **CHORD_MU)
    forward = [schedule(s) for s in range(0, 300, 25)]
    backward = [schedule(s) for s in reversed(range(0, 300, 25))]
    assert forward == list(reversed(backward))
    assert schedule == CosineMu(**CHORD_MU)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: build_mu_schedule("exponential"), r"^name: unknown mu schedule 'exponential'"),
        (
            lambda: build_mu_schedule("cosine", warmup=1, decay_steps=2, peak=0.5, valley=0.1),
            r"^warmup: unknown",
        ),
        (lambda: build_mu_schedule("cosine", warmup_steps=1, decay_steps=2, peak=0.5), r"^valley: missing"),
        (lambda: build_mu_schedule("constant"), r"^value: missing"),
        (lambda: ConstantMu(1.5), r"^value: must be in \[0\.0, 1\.0\]"),
        (lambda: LinearMu(start=0.5, end=-0.1, steps=3), r"^end:"),
        (lambda: LinearMu(start=0.5, end=0.1, steps=-3), r"^steps:"),
        (lambda: CosineMu(warmup_steps=-1, decay_steps=2, peak=0.5, valley=0.1), r"^warmup_steps:"),
        (lambda: CosineMu(warmup_steps=1, decay_steps=2.5, peak=0.5, valley=0.1), r"^decay_steps:"),
        (lambda: CosineMu(warmup_steps=1, decay_steps=2, peak=1.2, valley=0.1), r"^peak:"),
        (lambda: mu_schedule(-1, **CHORD_MU), r"^step:"),
        (lambda: RewardAdaptiveMu(tau=float("inf")), r"^tau:"),
    ],
)
def test_bad_schedule_parameters_raise_value_error_naming_them(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
