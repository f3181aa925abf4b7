"""`chord.rewards.compute_score`: dispatch by data_source, uniform keys, tiny-task reward, light import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chord.rewards import compute_score, register_reward, resolve_reward, result_defaults
from chord.rewards.tiny_task import compute_tiny_reward


@pytest.mark.parametrize(
    ("data_source", "name"),
    [
        ("chord/tiny_arith", "tiny"),
        ("openr1", "math"),
        ("aime24", "math"),
        ("amc23", "math"),
        ("math500", "math"),
        ("HuggingFaceH4/MATH-500", "math"),
        ("lighteval/MATH", "math"),
        ("toolace", "tool_call"),
        ("bfcl_simple", "tool_call"),
    ],
)
def test_data_source_dispatches_to_the_registered_reward(data_source, name):
    assert resolve_reward(data_source).name == name


def test_unknown_data_source_raises_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match="'unknown/thing'") as info:
        compute_score("unknown/thing", "7", "7")
    assert "chord/tiny_arith" in str(info.value) and "toolace*" in str(info.value)


def test_every_data_source_returns_the_same_keys():
    tiny = compute_score("chord/tiny_arith", "7", "7")
    tool = compute_score("toolace", "junk", "[f(a=1)]")
    math = compute_score("openr1", "no box", "7")
    assert set(tiny) == set(tool) == set(math) == set(result_defaults())
    assert (tiny["score"], tool["score"], math["score"]) == (1.0, 0.0, -0.1)
    assert tiny["parse_error"] == "" and tool["parse_error"] != ""


def test_tiny_reward_strips_whitespace_and_eos_and_requires_exact_match():
    assert compute_tiny_reward("chord/tiny_arith", " 7<|im_end|>", "7")["score"] == 1.0
    assert compute_tiny_reward("chord/tiny_arith", "7 ", " 7\n")["score"] == 1.0
    assert compute_tiny_reward("chord/tiny_arith", "77", "7")["score"] == 0.0
    assert compute_tiny_reward("chord/tiny_arith", "7.0", "7")["score"] == 0.0


def test_registered_reward_is_used_and_a_float_result_is_wrapped(tmp_path, monkeypatch):
    from chord import rewards

    (tmp_path / "chord_test_len_reward.py").write_text(
        "def length_reward(data_source, solution_str, ground_truth, extra_info=None, **kw):\n"
        "    return len(solution_str)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    register_reward("length", "chord_test_len_reward:length_reward", exact=("test/length",))
    try:
        out = compute_score("test/length", "abcd", "")
    finally:
        rewards._REGISTRY.pop("length", None)
        rewards._LOADED.pop("length", None)
        rewards._DEFAULTS_CACHE = None
    assert out["score"] == 4.0 and out["reason"] == ""
    with pytest.raises(ValueError, match="module:function"):
        register_reward("bad", "no_colon")


def test_importing_chord_rewards_stays_light():
    heavy = ("sympy", "math_verify", "ray", "verl")
    code = f"import sys, chord.rewards; print(any(m in sys.modules for m in {heavy!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
