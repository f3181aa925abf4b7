"""Math reward: boxed-answer extraction, the +1/0/-0.1/-1 scheme, truncation signals, timeouts, threads."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from chord.rewards.answer import boxed_answers, last_boxed_answer, strip_eos
from chord.rewards.math import compute_math_reward, is_truncated
from chord.rewards.verify_pool import VerifierPool, get_pool


def test_last_boxed_answer_takes_the_last_complete_box_with_nested_braces():
    text = "first \\boxed{1}, then \\boxed{\\frac{1}{2}} and a cut-off \\boxed{3"
    assert boxed_answers(text) == ["1", "\\frac{1}{2}"]
    assert last_boxed_answer(text) == "\\frac{1}{2}"


def test_last_boxed_answer_accepts_fbox_and_braceless_form_and_rejects_empty():
    assert last_boxed_answer("so $\\boxed 5$") == "5"
    assert last_boxed_answer("answer \\fbox{12}") == "12"
    assert last_boxed_answer("answer \\boxed{}") is None
    assert last_boxed_answer("no box at all") is None


def test_strip_eos_removes_trailing_markers_and_whitespace():
    assert strip_eos("  7 <|im_end|><|endoftext|>\n") == "7"
    assert strip_eos("7<|im_end|>", None) == "7<|im_end|>"


def test_correct_answer_scores_one_even_in_another_form():
    out = compute_math_reward("openr1", "... so the answer is \\boxed{\\dfrac{1}{2}}.", "0.5")
    assert out == {"score": 1.0, "acc": 1.0, "pred": "\\dfrac{1}{2}", "reason": "correct"}


def test_wrong_but_formatted_scores_zero_and_only_last_box_counts():
    out = compute_math_reward("openr1", "\\boxed{42} wait, no: \\boxed{41}", "42")
    assert (out["score"], out["reason"], out["pred"]) == (0.0, "wrong", "41")


def test_no_answer_scores_minus_point_one_when_finished():
    out = compute_math_reward("openr1", "I think it is 42.", "42", extra_info={"finish_reason": "stop"})
    assert (out["score"], out["reason"]) == (-0.1, "no_answer")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"truncated": True},
        {"extra_info": {"truncated": True}},
        {"extra_info": {"finish_reason": "length"}},
        {"finish_reason": "length"},
        {"eos_text": "<|im_end|>"},
    ],
)
def test_truncated_without_answer_scores_minus_one(kwargs):
    out = compute_math_reward("openr1", "Let me think step by step and", "42", **kwargs)
    assert (out["score"], out["reason"]) == (-1.0, "truncated")


def test_truncation_signals_take_precedence_in_documented_order():
    assert is_truncated("x", {"truncated": True}, truncated=False) is False
    assert is_truncated("x", {"truncated": False, "finish_reason": "length"}) is False
    assert is_truncated("x<|im_end|>", None, eos_text="<|im_end|>") is False
    assert is_truncated("x", None) is False


def test_truncated_response_with_an_answer_is_scored_on_it():
    out = compute_math_reward("openr1", "\\boxed{42} and then more", "42", truncated=True)
    assert (out["score"], out["reason"]) == (1.0, "correct")


def test_scores_are_configurable():
    kw = dict(correct_score=2.0, wrong_score=-0.5, format_score=-0.2, truncated_score=-3.0)
    assert compute_math_reward("m", "\\boxed{1}", "1", **kw)["score"] == 2.0
    assert compute_math_reward("m", "\\boxed{2}", "1", **kw)["score"] == -0.5
    assert compute_math_reward("m", "none", "1", **kw)["score"] == -0.2
    assert compute_math_reward("m", "none", "1", truncated=True, **kw)["score"] == -3.0


def test_unknown_keyword_arguments_are_ignored():
    out = compute_math_reward("m", "\\boxed{3}", "3", reward_router_address=None, something_else=1)
    assert out["score"] == 1.0


def test_empty_ground_truth_is_a_clear_error():
    with pytest.raises(ValueError, match="ground truth"):
        compute_math_reward("m", "\\boxed{3}", "  ")


def test_pathological_expression_times_out_with_score_zero_and_does_not_hang():
    start = time.monotonic()
    out = compute_math_reward("openr1", "\\boxed{9^{9^{9^{9}}}}", "7", timeout_s=1.0)
    elapsed = time.monotonic() - start
    assert (out["score"], out["acc"], out["reason"]) == (0.0, 0.0, "timeout")
    assert elapsed < 30.0


def test_call_from_a_non_main_thread_verifies():
    results: list[dict] = []
    thread = threading.Thread(target=lambda: results.append(compute_math_reward("m", "\\boxed{x=3}", "3")))
    thread.start()
    thread.join(timeout=120)
    assert results == [{"score": 1.0, "acc": 1.0, "pred": "x=3", "reason": "correct"}]


@pytest.fixture
def slow_verifier(tmp_path, monkeypatch):
    """An importable module with a check that never returns and one that raises."""
    name = f"chord_test_slow_verifier_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "import time\n"
        "def never_returns(gold, pred):\n    time.sleep(600)\n    return True\n"
        "def fails(gold, pred):\n    raise RuntimeError('boom')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_injected_slow_verifier_times_out_from_a_worker_thread_and_pool_recovers(slow_verifier):
    results: list[dict] = []

    def run() -> None:
        results.append(
            compute_math_reward(
                "openr1", "\\boxed{1}", "1", verify_fn=f"{slow_verifier}:never_returns", timeout_s=0.5
            )
        )

    start = time.monotonic()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert results[0]["reason"] == "timeout" and results[0]["score"] == 0.0
    assert time.monotonic() - start < 30.0
    pool = get_pool(f"{slow_verifier}:never_returns")
    assert pool.num_workers == 0  # the stuck worker was killed, not left running


def test_verifier_exception_gives_verify_error(slow_verifier):
    out = compute_math_reward("openr1", "\\boxed{1}", "1", verify_fn=f"{slow_verifier}:fails")
    assert (out["score"], out["reason"]) == (0.0, "verify_error")


def test_pool_serves_concurrent_threads_with_fewer_workers():
    pool = VerifierPool("chord.rewards.math_equiv:answers_equal", max_workers=2)
    outcomes: list[bool] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        res = pool.verify(str(i), str(i), timeout_s=60)
        with lock:
            outcomes.append(res.status == "ok" and res.equal)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert outcomes == [True] * 5
    assert pool.num_workers <= 2
    pool.close()


def test_pool_rejects_a_non_importable_function():
    with pytest.raises(ValueError, match="module-level"):
        VerifierPool(lambda g, p: True)
