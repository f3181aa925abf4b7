"""ToolACE preparation on a small local data.json in the dataset's real schema."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from chord.prepare.counts import InsufficientDataError
from chord.prepare.toolace import main, prepare_toolace
from chord.rewards import compute_score

TOOLS = [
    {
        "name": "Get Weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
    {
        "name": "Stock Price",
        "description": "Closing prices of a ticker.",
        "parameters": {"type": "dict", "properties": {"symbol": {"type": "string"}, "days": {"type": "int"}}},
    },
]
SYSTEM = (
    "You can call functions. Answer only with calls in the form [func(param=value, ...)].\n"
    "Available functions:\n" + json.dumps(TOOLS)
)
GOOD = 13  # single-turn dialogs whose first reply is a call (incl. one with two calls)


def _dialog(user: str, reply: str, *more: tuple[str, str]) -> dict:
    turns = [{"from": "user", "value": user}, {"from": "assistant", "value": reply}]
    turns += [{"from": who, "value": text} for who, text in more]
    return {"system": SYSTEM, "conversations": turns}


def write_fake_toolace(path: Path) -> Path:
    records = [
        _dialog(
            f"What is the weather in city number {i}?",
            f'[Get Weather(city="City{i}")]',
            ("tool", json.dumps({"temp": 20 + i})),
            ("assistant", f"It is {20 + i} degrees."),
        )
        for i in range(12)
    ]
    records.append(
        _dialog(
            "Weather in Oslo and AAPL for 3 days?",
            '[Get Weather(city="Oslo"), Stock Price(symbol="AAPL", days=3)]',
        )
    )
    records.append(
        _dialog(
            "Price of MSFT?",
            '[Stock Price(symbol="MSFT", days=1)]',
            ("tool", "{}"),
            ("user", "And IBM?"),
            ("assistant", '[Stock Price(symbol="IBM", days=1)]'),
        )
    )
    records.append(_dialog("Price of TSLA?", '[Stock Price(symbol="TSLA")]', ("user", "thanks")))
    records.append(_dialog("What's the weather?", "Which city do you mean?"))
    records.append({"system": SYSTEM, "conversations": [{"from": "assistant", "value": "Hello"}]})
    records.append(records[0])
    records.append({"system": SYSTEM, "conversations": []})
    records.append({"system": SYSTEM, "conversations": [{"from": "user", "value": "anyone?"}]})
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def toolace_file(tmp_path):
    return write_fake_toolace(tmp_path / "data.json")


def _key(prompt: list[dict]) -> str:
    return prompt[-1]["content"]


def test_splits_are_disjoint_and_ground_truth_scores_one(toolace_file, tmp_path):
    res = prepare_toolace(str(toolace_file), tmp_path / "o", num_rl=6, num_expert=3, num_eval=2)
    rl = pq.read_table(res.paths["rl"]).to_pylist()
    expert = pq.read_table(res.paths["expert"]).to_pylist()
    ev = pq.read_table(res.paths["eval"]).to_pylist()
    assert (len(rl), len(expert), len(ev)) == (6, 3, 2)
    rl_users = {_key(r["prompt"]) for r in rl}
    ex_users = {_key(r["messages"][:-1]) for r in expert}
    ev_users = {_key(r["prompt"]) for r in ev}
    assert not (rl_users & ex_users) and not (rl_users & ev_users) and not (ex_users & ev_users)
    assert [m["role"] for m in rl[0]["prompt"]] == ["system", "user"] and rl[0]["prompt"][0][
        "content"
    ] == SYSTEM
    assert [m["role"] for m in expert[0]["messages"]] == ["system", "user", "assistant"]
    assert {r["extra_info"]["split"] for r in rl} == {"train"} and {r["extra_info"]["split"] for r in ev} == {
        "test"
    }
    for r in rl + ev:
        gt = r["reward_model"]["ground_truth"]
        assert r["data_source"] == "toolace" and compute_score(r["data_source"], gt, gt)["score"] == 1.0
    for r in expert:
        gt = r["messages"][-1]["content"]
        assert compute_score("toolace", gt, gt)["score"] == 1.0


def test_every_dropped_dialog_is_counted(toolace_file, tmp_path):
    res = prepare_toolace(str(toolace_file), tmp_path / "o", num_rl=GOOD, num_expert=0)
    c = res.counts
    assert c["dialogs_read"] == 20 and c["usable_samples"] == GOOD == c["rl_written"]
    assert (c["dropped/multi_turn"], c["dropped/reply_not_tool_call"], c["dropped/first_turn_not_user"]) == (
        2,
        1,
        1,
    )
    assert (
        c["dropped/duplicate_prompt"],
        c["dropped/empty_conversation"],
        c["dropped/no_assistant_reply"],
    ) == (1, 1, 1)
    assert c["dialogs_read"] == c["usable_samples"] + sum(v for k, v in c.items() if k.startswith("dropped/"))


def test_multi_turn_first_calls_are_used_on_request(toolace_file, tmp_path):
    res = prepare_toolace(
        str(toolace_file), tmp_path / "o", num_rl=GOOD + 2, num_expert=0, include_multi_turn=True
    )
    assert res.counts["usable_samples"] == GOOD + 2


def test_shortage_names_the_flags(toolace_file, tmp_path):
    with pytest.raises(InsufficientDataError, match="--include-multi-turn"):
        prepare_toolace(str(toolace_file), tmp_path / "o", num_rl=5000, num_expert=500)
    res = prepare_toolace(str(toolace_file), tmp_path / "p", num_rl=5000, num_expert=5, allow_fewer=True)
    assert (res.counts["expert_written"], res.counts["rl_written"]) == (5, GOOD - 5)


def test_same_seed_same_split(toolace_file, tmp_path):
    a = prepare_toolace(str(toolace_file), tmp_path / "a", num_rl=4, num_expert=2, seed=3)
    b = prepare_toolace(str(toolace_file), tmp_path / "b", num_rl=4, num_expert=2, seed=3)
    assert pq.read_table(a.paths["rl"]).equals(pq.read_table(b.paths["rl"]))


def test_bad_record_is_named_by_row_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"system": "s", "conversations": [{"from": "user", "value": 3}]}]))
    with pytest.raises(ValueError, match="row 0, column 'conversations', turn 0"):
        prepare_toolace(str(path), tmp_path / "o", num_rl=1, num_expert=0)


def test_cli(toolace_file, tmp_path, capsys):
    main(
        [
            "--source",
            str(toolace_file),
            "--out-dir",
            str(tmp_path / "c"),
            "--num-rl",
            "5",
            "--num-expert",
            "2",
        ]
    )
    assert "multi_turn: 2" in capsys.readouterr().out
    assert pq.read_metadata(tmp_path / "c" / "expert.parquet").num_rows == 2


# --- paired mode (LUFFY, HPT, SRFT, ReLIFT) -----------------------------------------------------


def test_paired_mode_keeps_the_reference_call_with_each_rl_prompt(toolace_file, tmp_path):
    res = prepare_toolace(str(toolace_file), tmp_path / "o", num_rl=6, num_expert=3, num_eval=2, paired=True)
    rl = pq.read_table(res.paths["rl"]).to_pylist()
    assert len(rl) == 6
    for r in rl:
        demo, gt = r["extra_info"]["expert_response"], r["reward_model"]["ground_truth"]
        assert demo == gt and compute_score("toolace", demo, gt)["score"] == 1.0
    assert all("expert_response" not in r["extra_info"] for r in pq.read_table(res.paths["eval"]).to_pylist())
    default = prepare_toolace(str(toolace_file), tmp_path / "d", num_rl=6, num_expert=3, num_eval=2)
    assert all(
        "expert_response" not in r["extra_info"] for r in pq.read_table(default.paths["rl"]).to_pylist()
    )
