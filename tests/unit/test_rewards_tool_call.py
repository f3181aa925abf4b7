"""Tool-call reward: ToolACE bracket and JSON parsing, multiset comparison, unparsable predictions."""

from __future__ import annotations

import pytest

from chord.rewards.call_syntax import ToolCall, ToolCallParseError, call_key, parse_tool_calls
from chord.rewards.tool_call import compute_tool_call_reward

GT = '[Get Weather(city="Paris", unit="c"), Stock Price(symbol="AAPL", days=[1, 2])]'


def test_bracket_syntax_with_spaces_in_names_and_literal_values():
    calls = parse_tool_calls(
        "[Sport Highlighted Markets(sport_id=1, only_primary=True, opts={'a': [1.5, -2]}, x=None)]"
    )
    assert calls == [
        ToolCall(
            "Sport Highlighted Markets",
            {"sport_id": 1, "only_primary": True, "opts": {"a": [1.5, -2]}, "x": None},
        )
    ]


def test_strings_with_brackets_commas_and_equals_are_kept_whole():
    calls = parse_tool_calls("[search(q=\"a, b = (c)]\", lang='en')]")
    assert calls == [ToolCall("search", {"q": "a, b = (c)]", "lang": "en"})]


def test_json_single_list_and_string_arguments():
    assert parse_tool_calls('{"name": "f", "arguments": {"a": 1}}') == [ToolCall("f", {"a": 1})]
    assert parse_tool_calls(
        '[{"name": "f", "parameters": {"a": 1}}, {"name": "g", "arguments": "{\\"b\\": 2}"}]'
    ) == [
        ToolCall("f", {"a": 1}),
        ToolCall("g", {"b": 2}),
    ]


def test_match_ignores_call_order_argument_order_and_eos():
    pred = '[Stock Price(days=[1, 2], symbol="AAPL"), Get Weather(unit="c", city="Paris")]<|eot_id|>'
    out = compute_tool_call_reward("toolace", pred, GT)
    assert (out["score"], out["acc"], out["reason"], out["parse_error"]) == (1.0, 1.0, "match", "")


def test_json_prediction_matches_bracket_ground_truth():
    pred = (
        '[{"name": "Get Weather", "arguments": {"city": "Paris", "unit": "c"}}, '
        '{"name": "Stock Price", "arguments": {"symbol": "AAPL", "days": [1.0, 2]}}]'
    )
    assert compute_tool_call_reward("toolace", pred, GT)["score"] == 1.0


def test_wrong_value_missing_call_or_duplicate_call_is_a_mismatch():
    assert (
        compute_tool_call_reward("toolace", '[Get Weather(city="Rome", unit="c")]', GT)["reason"]
        == "mismatch"
    )
    assert compute_tool_call_reward("toolace", '[Get Weather(city="Paris", unit="c")]', GT)["score"] == 0.0
    twice = "[f(a=1), f(a=1)]"
    assert compute_tool_call_reward("toolace", twice, "[f(a=1)]")["score"] == 0.0


def test_bool_is_not_int_but_integral_float_is_int():
    assert call_key(ToolCall("f", {"a": 1})) == call_key(ToolCall("f", {"a": 1.0}))
    assert call_key(ToolCall("f", {"a": 1})) != call_key(ToolCall("f", {"a": True}))
    assert call_key(ToolCall("f", {"a": "1"})) != call_key(ToolCall("f", {"a": 1}))


@pytest.mark.parametrize(
    "pred",
    [
        "Sure! I will call the weather tool.",
        "[f(1, 2)]",
        "[f(a=__import__('os').system('echo pwned'))]",
        "[f(a=1]",
        '{"name": "f", "arguments": [1]}',
        "",
    ],
)
def test_unparsable_prediction_scores_zero_with_the_reason(pred):
    out = compute_tool_call_reward("toolace", pred, "[f(a=1)]")
    assert out["score"] == 0.0 and out["reason"] == "parse_error"
    assert out["parse_error"] != "" and out["pred"] == ""


def test_function_calls_in_values_are_never_evaluated():
    with pytest.raises(ToolCallParseError, match="not a literal"):
        parse_tool_calls("[f(a=open('/etc/passwd').read())]")


def test_unparsable_ground_truth_is_a_data_error():
    with pytest.raises(ValueError, match="ground truth"):
        compute_tool_call_reward("toolace", "[f(a=1)]", "not a call")


def test_result_keys_are_identical_for_every_outcome():
    keys = {"score", "acc", "pred", "reason", "parse_error"}
    assert set(compute_tool_call_reward("t", "[f(a=1)]", "[f(a=1)]")) == keys
    assert set(compute_tool_call_reward("t", "junk", "[f(a=1)]")) == keys
