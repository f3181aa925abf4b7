"""The shifted-expert task family: splits, styles, quality, its reward and the base policy."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from chord.prepare.shift_task import (
    SKILL_SOURCE,
    TASK_SOURCE,
    addition_problems,
    generate_shift_task,
    subtraction_problems,
)
from chord.rewards import compute_score
from chord.rewards.shift_task import compute_shift_reward, last_integer


def _rows(path):
    return pq.read_table(path).to_pylist()


def _problem(row) -> str:
    return row["prompt"][0]["content"] if "prompt" in row else row["messages"][0]["content"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    out = tmp_path_factory.mktemp("shift")
    paths = generate_shift_task(out, max_operand=5, num_held_out=6, num_train=50, num_expert=40,
                                low_quality_fraction=0.25, seed=3)  # fmt: skip
    return {name: _rows(path) for name, path in paths.items()}


def test_problem_spaces():
    assert len(addition_problems(5)) == 36
    assert len(subtraction_problems(5)) == 21 and all(a >= b for a, b in subtraction_problems(5))
    with pytest.raises(ValueError, match="max_operand"):
        addition_problems(0)


def test_held_out_problems_never_reach_rl_or_expert_rows(task):
    held = {_problem(r) for r in task["val"]}
    assert len(held) == 6 and all(r["data_source"] == TASK_SOURCE for r in task["val"])
    assert held.isdisjoint(_problem(r) for r in task["train"])
    assert held.isdisjoint(_problem(r) for r in task["expert"])
    assert len(task["train"]) == 50 and len(task["expert"]) == 40


def test_expert_rows_use_the_worked_form_and_a_quarter_are_wrong_with_quality_zero(task):
    wrong = 0
    for row in task["expert"]:
        problem, response = row["messages"][0]["content"], row["messages"][1]["content"]
        a, b = (int(x) for x in problem.rstrip("=").split("+"))
        assert response.startswith(f"{a}+{b}=")  # "12+7=19": the equation restated
        correct = int(response.rsplit("=", 1)[1]) == a + b
        assert row["quality"] == (1.0 if correct else 0.0)
        if not correct:
            assert abs(int(response.rsplit("=", 1)[1]) - (a + b)) in (1, 2)
            wrong += 1
    assert wrong == 10  # round(0.25 * 40)


def test_rl_rows_carry_the_correct_worked_form_as_the_paired_demonstration(task):
    for row in task["train"]:
        a, b = (int(x) for x in _problem(row).rstrip("=").split("+"))
        assert row["reward_model"]["ground_truth"] == str(a + b)
        assert row["extra_info"]["expert_response"] == f"{a}+{b}={a + b}"


def test_second_skill_and_pretraining_rows(task):
    retention = task["retention"]
    assert len(retention) == 21 and {r["data_source"] for r in retention} == {SKILL_SOURCE}
    for row in retention:
        a, b = (int(x) for x in _problem(row).rstrip("=").split("-"))
        assert row["reward_model"]["ground_truth"] == str(a - b)
    pretrain = task["pretrain"]
    assert len(pretrain) == 36 + 21  # every problem of both skills, answer only
    assert all(r["messages"][1]["content"].isdigit() for r in pretrain)


def test_hedged_pretraining_rows_follow_every_addition_answer_with_a_near_miss(tmp_path):
    paths = generate_shift_task(tmp_path, max_operand=5, num_held_out=6, num_train=50, num_expert=40,
                                hedge_rows=2, seed=3)  # fmt: skip
    pretrain = _rows(paths["pretrain"])
    clean, hedged = pretrain[: 36 + 21], pretrain[36 + 21 :]
    assert {r["quality"] for r in clean} == {1.0} and {r["quality"] for r in hedged} == {0.0}
    assert len(hedged) == 2 * 36 and {r["data_source"] for r in hedged} == {TASK_SOURCE}
    for row in hedged:
        a, b = (int(x) for x in _problem(row).rstrip("=").split("+"))
        answer, near_miss = row["messages"][1]["content"].split(", not ")
        assert int(answer) == a + b and abs(int(near_miss) - (a + b)) in (1, 2) and int(near_miss) >= 0
        # the habit scores 0: the reward reads the near miss
        assert compute_shift_reward(TASK_SOURCE, row["messages"][1]["content"], answer)["score"] == 0.0
    # each problem is hedged hedge_rows times, whatever its answer: a habit, not a per-problem slip
    assert sorted(_problem(r) for r in hedged) == sorted(2 * [_problem(r) for r in clean[:36]])
    # hedging adds pre-training rows only: the RL, held-out, retention and expert files are unchanged
    plain = generate_shift_task(tmp_path / "plain", max_operand=5, num_held_out=6, num_train=50,
                                num_expert=40, seed=3)  # fmt: skip
    for name in ("train", "val", "retention", "expert"):
        assert _rows(paths[name]) == _rows(plain[name]), name
    assert _rows(plain["pretrain"]) == clean


def test_generation_is_deterministic(tmp_path):
    a = generate_shift_task(tmp_path / "a", max_operand=4, num_held_out=3, num_train=9, num_expert=8)
    b = generate_shift_task(tmp_path / "b", max_operand=4, num_held_out=3, num_train=9, num_expert=8)
    for name in a:
        assert _rows(a[name]) == _rows(b[name]), name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_held_out": 30}, "too few"),
        ({"low_quality_fraction": 1.0}, "low_quality_fraction"),
        ({"num_train": 0}, "num_train"),
        ({"hedge_rows": -1}, "hedge_rows"),
    ],  # fmt: skip
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_shift_task(tmp_path, max_operand=5, **kwargs)


@pytest.mark.parametrize(
    ("response", "score", "pred"),
    [
        ("19", 1.0, "19"),
        ("12+7=19<|im_end|>", 1.0, "19"),
        (" 019 ", 1.0, "19"),
        ("19+1", 0.0, "1"),
        ("nineteen", 0.0, ""),
        ("12+7=18", 0.0, "18"),
    ],  # fmt: skip
)
def test_reward_scores_the_last_integer(response, score, pred):
    result = compute_shift_reward(TASK_SOURCE, response, "19")
    assert (result["score"], result["pred"]) == (score, pred)
    assert compute_score(TASK_SOURCE, response, "19")["score"] == score  # dispatched by prefix
    assert compute_score(SKILL_SOURCE, response, "19")["score"] == score


def test_last_integer():
    assert last_integer("a1b22c") == "22" and last_integer("00") == "0" and last_integer("x") is None


def test_base_policy_stops_in_its_band_records_it_and_is_reused(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chord.prepare.base_policy import PretrainSpec, _examples, expected_rewards, pretrain_base_policy
    from chord.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", hidden_size=32, num_layers=1, num_heads=2,
                                 num_kv_heads=1, intermediate_size=64)  # fmt: skip
    paths = generate_shift_task(tmp_path / "data", max_operand=3, num_held_out=2, num_train=8, num_expert=8)
    spec = PretrainSpec(TASK_SOURCE, SKILL_SOURCE, task_target=0.0, skill_target=2.0, max_steps=20,
                        eval_every=10, batch_size=8)  # fmt: skip
    record = pretrain_base_policy(model_dir, paths["pretrain"], tmp_path / "base", spec)
    # skill phase: an unreachable target stops at max_steps; task phase: target 0 needs no step
    assert (record["skill_steps"], record["task_steps"]) == (20, 0)
    saved = json.loads((tmp_path / "base" / "base_policy.json").read_text())
    assert saved == record

    # the recorded rewards are P(answer + EOS | prompt), recomputed by hand for one problem
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "base").eval()
    example = _examples(paths["pretrain"], tokenizer)[0]
    ids = torch.tensor([example.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    by_hand = sum(logp[t - 1, ids[0, t]].item() for t in range(example.answer_start, ids.shape[1]))
    assert expected_rewards(model, [example], tokenizer.pad_token_id)[0] == pytest.approx(math.exp(by_hand))

    # same arguments: the saved folder is reused, not trained again
    (tmp_path / "base" / "model.safetensors").unlink()
    assert pretrain_base_policy(model_dir, paths["pretrain"], tmp_path / "base", spec) == record

    # other pre-training data under the same path: trained again
    generate_shift_task(tmp_path / "data", max_operand=4, num_held_out=2, num_train=8, num_expert=8)
    again = pretrain_base_policy(model_dir, paths["pretrain"], tmp_path / "base", spec)
    assert again["key"]["pretrain_sha256"] != record["key"]["pretrain_sha256"]
    assert (tmp_path / "base" / "model.safetensors").exists()


def test_base_policy_reward_is_measured_on_the_clean_answers_only(tmp_path):
    pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chord.prepare.base_policy import _examples, _mean_by_source, expected_rewards
    from chord.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "model", hidden_size=32, num_layers=1, num_heads=2,
                                 num_kv_heads=1, intermediate_size=64)  # fmt: skip
    paths = generate_shift_task(tmp_path / "data", max_operand=3, num_held_out=2, num_train=8,
                                num_expert=8, hedge_rows=1)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    examples = _examples(paths["pretrain"], tokenizer)
    assert [e.measured for e in examples] == [True] * (16 + 10) + [False] * 16  # hedged rows last
    clean_task = examples[:16]
    by_hand = sum(expected_rewards(model, clean_task, tokenizer.pad_token_id)) / 16
    assert _mean_by_source(model, examples, tokenizer.pad_token_id, TASK_SOURCE) == pytest.approx(by_hand)
