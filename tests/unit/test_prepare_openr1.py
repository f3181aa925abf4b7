"""OpenR1-Math preparation on a small local parquet in the dataset's real schema."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chord.prepare.counts import InsufficientDataError
from chord.prepare.openr1 import MATH_INSTRUCTION, main, math_user_turn, prepare_openr1
from chord.prepare.text_filters import has_non_english_script, integer_answer

OPENR1_SCHEMA = pa.schema(
    [
        ("problem", pa.string()),
        ("solution", pa.string()),
        ("answer", pa.string()),
        ("problem_type", pa.string()),
        ("question_type", pa.string()),
        ("source", pa.string()),
        ("uuid", pa.string()),
        ("is_reasoning_complete", pa.list_(pa.bool_())),
        ("generations", pa.list_(pa.string())),
        ("correctness_math_verify", pa.list_(pa.bool_())),
        ("correctness_llama", pa.list_(pa.bool_())),
        ("finish_reasons", pa.list_(pa.string())),
        ("correctness_count", pa.int64()),
        ("messages", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
    ]
)

EXPERT_ELIGIBLE = 24  # rows 0-19, 20-22 and 24 below
RL_ELIGIBLE = 22  # rows 0-19, 25 (all generations wrong) and 26 (all too long)


def _row(i: int, problem: str, answer: str, gens: list[tuple[str, bool]], finish: list[str] | None = None):
    finish = finish or ["stop"] * len(gens)
    return {
        "problem": problem,
        "solution": f"solution {i}",
        "answer": answer,
        "problem_type": "Algebra",
        "question_type": "math-word-problem",
        "source": "olympiads",
        "uuid": f"uuid-{i:03d}",
        "is_reasoning_complete": [True] * len(gens),
        "generations": [g for g, _ in gens],
        "correctness_math_verify": [ok for _, ok in gens],
        "correctness_llama": None,
        "finish_reasons": finish,
        "correctness_count": sum(ok for _, ok in gens),
        "messages": [{"content": problem, "role": "user"}, {"content": gens[0][0], "role": "assistant"}],
    }


def write_fake_openr1(path: Path) -> Path:
    """30 rows: 20 plain, 3 fractional answers, CJK, 1-generation, all-wrong, too long, duplicate,
    cut-off and CJK-trace rows."""
    rows = []
    for i in range(20):
        a, b = i, 2 * i + 1
        rows.append(
            _row(
                i,
                f"What is {a} + {b}?",
                str(a + b),
                [(f"<think>add</think> CORRECT-{i} \\boxed{{{a + b}}}", True), ("\\boxed{0}", False)],
            )
        )
    for i in range(20, 23):
        rows.append(
            _row(i, f"Halve {i - 19}.", f"\\frac{{{i - 19}}}{{2}}", [(f"CORRECT-{i} \\boxed{{x}}", True)] * 3)
        )
    rows.append(_row(23, "计算 1 + 1 的值。", "2", [("CORRECT-23 \\boxed{2}", True)] * 2))
    rows.append(_row(24, "What is 100 + 1?", "101", [("CORRECT-24 \\boxed{101}", True)]))
    rows.append(_row(25, "What is 5 * 5?", "25", [("\\boxed{24}", False), ("\\boxed{26}", False)]))
    rows.append(
        _row(26, "Sum the first 1000 squares.", "333833500", [("step " * 5000 + "CORRECT-26", True)] * 2)
    )
    rows.append(_row(27, "What is 0 + 1?", "1", [("CORRECT-27 \\boxed{1}", True)] * 2))  # duplicate of row 0
    rows.append(
        _row(28, "What is 7 * 8?", "56.0", [("CORRECT-28 \\boxed{56", True)] * 2, finish=["length", "length"])
    )
    rows.append(_row(29, "What is 9 * 9?", "81.5", [("CORRECT-29 答案 \\boxed{81}", True)] * 2))
    pq.write_table(pa.Table.from_pylist(rows, schema=OPENR1_SCHEMA), path)
    return path


@pytest.fixture
def openr1_file(tmp_path):
    return write_fake_openr1(tmp_path / "openr1.parquet")


def _problem_of(user_content: str) -> str:
    assert user_content.startswith(MATH_INSTRUCTION + "\n")
    return user_content[len(MATH_INSTRUCTION) + 1 :]


def test_text_filters():
    assert (
        has_non_english_script("计算")
        and has_non_english_script("Найти x")
        and has_non_english_script("（1）")
    )
    assert not has_non_english_script("Find $\\alpha + \\beta$ where π ≈ 3.14")
    assert [integer_answer(a) for a in ("042", " $-7$ ", "1,000", "2.0", "\\frac{4}{2}")] == [
        "42",
        "-7",
        None,
        None,
        None,
    ]


def test_writes_disjoint_expert_and_rl_sets_with_the_instruction(openr1_file, tmp_path, tiny_model_dir):
    result = prepare_openr1(
        str(openr1_file),
        tmp_path / "out",
        num_expert=5,
        num_rl=10,
        tokenizer=str(tiny_model_dir),
        max_tokens=2000,
    )
    expert = pq.read_table(result.paths["expert"]).to_pylist()
    rl = pq.read_table(result.paths["rl"]).to_pylist()
    assert (len(expert), len(rl)) == (5, 10)
    expert_problems = {_problem_of(r["messages"][0]["content"]) for r in expert}
    rl_problems = {_problem_of(r["prompt"][0]["content"]) for r in rl}
    assert not expert_problems & rl_problems
    assert all(
        r["messages"][1]["role"] == "assistant" and "CORRECT-" in r["messages"][1]["content"] for r in expert
    )
    assert all(r["data_source"] == "openr1" for r in expert + rl)
    assert all(
        integer_answer(r["reward_model"]["ground_truth"]) == r["reward_model"]["ground_truth"] for r in rl
    )
    assert [r["extra_info"]["index"] for r in rl] == list(range(10))
    assert rl[0]["reward_model"]["style"] == "rule" and rl[0]["ability"] == "math"
    assert result.counts["dropped/problem_non_english"] == 1
    assert result.counts["dropped/problem_duplicate"] == 1


def test_too_few_problems_is_an_error_unless_allowed(openr1_file, tmp_path, tiny_model_dir):
    with pytest.raises(InsufficientDataError, match=f"only {EXPERT_ELIGIBLE} expert problems"):
        prepare_openr1(
            str(openr1_file), tmp_path / "a", num_expert=100, num_rl=0, tokenizer=str(tiny_model_dir)
        )
    result = prepare_openr1(
        str(openr1_file),
        tmp_path / "b",
        num_expert=100,
        num_rl=100,
        tokenizer=str(tiny_model_dir),
        max_tokens=2000,
        allow_fewer=True,
    )
    counts = result.counts
    assert counts["expert_written"] == EXPERT_ELIGIBLE
    # every RL-eligible problem not used as expert: rows 25 and 26
    assert counts["rl_written"] == RL_ELIGIBLE - 20
    assert counts["dropped/generation_over_token_limit"] == 2
    assert counts["dropped/generation_cut_off"] == 2
    assert counts["dropped/generation_non_english"] == 2
    assert counts["dropped/expert_problem_without_usable_generation"] == 3
    texts = [r["messages"][1]["content"] for r in pq.read_table(result.paths["expert"]).to_pylist()]
    assert not any(marker in t for t in texts for marker in ("CORRECT-26", "CORRECT-28", "CORRECT-29"))


def test_selection_is_seeded(openr1_file, tmp_path):
    def problems(seed: int, name: str) -> list[str]:
        res = prepare_openr1(str(openr1_file), tmp_path / name, num_expert=5, num_rl=5, seed=seed)
        return [r["messages"][0]["content"] for r in pq.read_table(res.paths["expert"]).to_pylist()]

    assert problems(0, "a") == problems(0, "b")
    assert problems(0, "a") != problems(1, "c")


def test_without_tokenizer_the_char_estimate_drops_long_traces(openr1_file, tmp_path):
    result = prepare_openr1(str(openr1_file), tmp_path / "o", num_expert=100, num_rl=0, allow_fewer=True)
    assert result.counts["expert_written"] == EXPERT_ELIGIBLE
    assert result.counts["dropped/generation_over_token_limit"] == 2  # 25k chars > 8192 * 3


def test_cli_writes_files_and_reports_counts(openr1_file, tmp_path, capsys):
    main(
        [
            "--source",
            str(openr1_file),
            "--out-dir",
            str(tmp_path / "cli"),
            "--num-expert",
            "3",
            "--num-rl",
            "4",
        ]
    )
    out = capsys.readouterr().out
    assert "problem_non_english: 1" in out and "expert_written: 3" in out
    assert pq.read_metadata(tmp_path / "cli" / "train.parquet").num_rows == 4


def test_cli_reports_shortage_as_an_error_message(openr1_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--source", str(openr1_file), "--out-dir", str(tmp_path / "x"), "--num-rl", "1000"])
    assert info.value.code == 1
    assert "--allow-fewer" in capsys.readouterr().err


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"problem": ["p"], "answer": ["1"]}), path)
    with pytest.raises(ValueError, match="missing column.*generations"):
        prepare_openr1(str(path), tmp_path / "o", num_expert=1, num_rl=0)


def test_user_turn_is_instruction_then_problem():
    assert math_user_turn("  What is 1+1? ") == MATH_INSTRUCTION + "\nWhat is 1+1?"


def test_reads_a_local_dataset_folder_and_names_a_missing_path(tmp_path):
    folder = tmp_path / "OpenR1-Math-220k"
    (folder / "data").mkdir(parents=True)
    write_fake_openr1(folder / "data" / "train-00000-of-00001.parquet")
    result = prepare_openr1(str(folder), tmp_path / "o", num_expert=2, num_rl=2)
    assert result.counts["problems_read"] == 30
    with pytest.raises(FileNotFoundError, match="no such file"):
        prepare_openr1(str(tmp_path / "absent.parquet"), tmp_path / "p", num_expert=1, num_rl=0)


# --- paired mode (LUFFY, HPT, SRFT, ReLIFT) -----------------------------------------------------


def test_paired_mode_keeps_a_verified_generation_with_each_rl_prompt(openr1_file, tmp_path, tiny_model_dir):
    result = prepare_openr1(
        str(openr1_file),
        tmp_path / "out",
        num_expert=5,
        num_rl=100,
        tokenizer=str(tiny_model_dir),
        max_tokens=2000,
        allow_fewer=True,
        paired=True,
    )
    expert = pq.read_table(result.paths["expert"]).to_pylist()
    rl = pq.read_table(result.paths["rl"]).to_pylist()
    plain = {f"What is {i} + {2 * i + 1}?" for i in range(20)}
    expert_problems = {_problem_of(r["messages"][0]["content"]) for r in expert}
    # every RL-eligible plain problem not taken as expert; rows 25 (all wrong) and 26 (all too long)
    # have no usable generation and are dropped
    assert len(rl) == len(plain - expert_problems)
    assert result.counts["dropped/rl_paired_without_usable_generation"] == 2
    for r in rl:
        demo, gt = r["extra_info"]["expert_response"], r["reward_model"]["ground_truth"]
        assert "CORRECT-" in demo and demo.endswith(f"\\boxed{{{gt}}}")
    assert not expert_problems & {_problem_of(r["prompt"][0]["content"]) for r in rl}


def test_default_mode_writes_no_demonstration_with_rl_prompts(openr1_file, tmp_path):
    result = prepare_openr1(str(openr1_file), tmp_path / "out", num_expert=5, num_rl=10)
    rl = pq.read_table(result.paths["rl"]).to_pylist()
    assert all("expert_response" not in r["extra_info"] for r in rl)
