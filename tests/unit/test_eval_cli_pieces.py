"""chord-eval building blocks: CLI parsing, benchmark files, sample planning, scoring (stub backend)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recipe.eval.cli import benchmark_files, evaluate_benchmark, parse_k_per_benchmark, plan_samples
from recipe.eval.data import load_benchmark
from recipe.eval.generate import Completion, SamplingConfig, choose_backend
from recipe.eval.vllm import request_seed


def _write(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _row(question: str, answer: str, source: str = "chord/tiny_arith") -> dict:
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": question}],
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"index": 0},
    }


def test_parse_k_per_benchmark_reads_names_and_counts():
    assert parse_k_per_benchmark("AIME24=32, amc=8") == {"aime24": 32, "amc": 8}
    assert parse_k_per_benchmark("") == {}
    with pytest.raises(ValueError, match="NAME=K"):
        parse_k_per_benchmark("aime24:32")
    with pytest.raises(ValueError, match="NAME=K"):
        parse_k_per_benchmark("aime24=0")


def test_plan_samples_uses_overrides_and_checks_n_samples():
    plan = plan_samples(["AIME24", "amc", "math500"], 4, {"aime24": 32, "amc": 8}, None)
    assert plan == {"AIME24": (32, 32), "amc": (8, 8), "math500": (4, 4)}
    assert plan_samples(["amc"], 4, {}, 16) == {"amc": (4, 16)}
    with pytest.raises(ValueError, match=r"--n-samples=8 is smaller than k=32 of benchmark 'aime24'"):
        plan_samples(["aime24"], 4, {"aime24": 32}, 8)
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) \['gpqa'\]"):
        plan_samples(["aime24"], 4, {"gpqa": 2}, None)


def test_benchmark_files_expands_dirs_and_rejects_duplicate_names(tmp_path):
    (tmp_path / "a").mkdir()
    one = _write(tmp_path / "a" / "amc.parquet", [_row("1+1=", "2")])
    two = _write(tmp_path / "a" / "aime24.parquet", [_row("1+1=", "2")])
    assert benchmark_files([str(tmp_path / "a")]) == [two, one]
    (tmp_path / "b").mkdir()
    _write(tmp_path / "b" / "AMC.parquet", [_row("1+1=", "2")])
    with pytest.raises(ValueError, match=r"repeated: \['amc'\]"):
        benchmark_files([str(one), str(tmp_path / "b" / "AMC.parquet")])
    with pytest.raises(FileNotFoundError, match="missing.parquet does not exist"):
        benchmark_files([str(tmp_path / "missing.parquet")])


def test_load_benchmark_names_file_row_and_column_on_bad_input(tmp_path):
    good = load_benchmark(_write(tmp_path / "tiny.parquet", [_row("3+4=", "7"), _row("1+2=", "3")]))
    assert good.name == "tiny" and len(good.problems) == 2
    assert good.problems[1].messages == [{"role": "user", "content": "1+2="}]
    assert good.problems[1].ground_truth == "3"
    assert len(load_benchmark(tmp_path / "tiny.parquet", max_problems=1).problems) == 1

    bad_prompt = _row("x", "1")
    bad_prompt["prompt"] = [{"role": "user", "content": None}]
    path = _write(tmp_path / "bad.parquet", [_row("3+4=", "7"), bad_prompt])
    with pytest.raises(ValueError, match=r"bad\.parquet: row 1, column 'prompt': message 0"):
        load_benchmark(path)

    no_gt = _row("x", "1")
    no_gt["reward_model"] = {"style": "rule", "ground_truth": None}
    path = _write(tmp_path / "nogt.parquet", [no_gt])
    with pytest.raises(ValueError, match=r"nogt\.parquet: row 0, column 'reward_model'"):
        load_benchmark(path)

    path = _write(
        tmp_path / "nocol.parquet", [{"data_source": "x", "prompt": [{"role": "u", "content": "c"}]}]
    )
    with pytest.raises(ValueError, match=r"missing column\(s\) \['reward_model'\]"):
        load_benchmark(path)


def test_sampling_config_and_backend_choice_validate():
    with pytest.raises(ValueError, match="--top-p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="--backend"):
        choose_backend("tgi")
    assert choose_backend("hf") == "hf"


class _ScriptedGenerator:
    """A backend stand-in that returns fixed responses (cycled) for every prompt."""

    backend = "stub"

    def __init__(self, responses: dict[int, list[Completion]]) -> None:
        self.responses = responses

    def generate(self, prompts, n, sampling):
        return [self.responses[i][:n] for i in range(len(prompts))]

    def close(self) -> None:
        pass


def test_evaluate_benchmark_scores_with_training_rewards(tmp_path, tiny_tokenizer):
    bench = load_benchmark(_write(tmp_path / "tiny.parquet", [_row("3+4=", "7"), _row("1+2=", "3")]))
    generator = _ScriptedGenerator(
        {
            0: [Completion("7", 2, False), Completion("5", 2, False)],
            1: [Completion("3", 2, False), Completion("3", 2, False)],
        }
    )
    summary, rows, _ = evaluate_benchmark(generator, tiny_tokenizer, bench, 2, 2, SamplingConfig())
    assert summary.avg_at_k == pytest.approx(0.75)  # (1/2 + 2/2) / 2
    assert summary.pass_at == {1: pytest.approx(0.75), 2: pytest.approx(1.0)}
    assert summary.mean_response_length == pytest.approx(2.0)
    assert [r["num_correct"] for r in rows] == [1, 2]
    assert (rows[0]["samples"][1]["score"], rows[0]["samples"][1]["correct"]) == (0.0, False)


def test_evaluate_benchmark_gives_math_truncation_its_reward(tmp_path, tiny_tokenizer):
    bench = load_benchmark(_write(tmp_path / "aime24.parquet", [_row("What is 3+4?", "7", source="aime24")]))
    generator = _ScriptedGenerator(
        {
            0: [
                Completion("so it is", 8, True),
                Completion("no box here", 3, False),
                Completion("3+4 = \\boxed{7}", 9, False),
            ]
        }
    )
    summary, rows, _ = evaluate_benchmark(generator, tiny_tokenizer, bench, 2, 3, SamplingConfig())
    assert [s["score"] for s in rows[0]["samples"]] == [-1.0, pytest.approx(-0.1), 1.0]
    assert [s["correct"] for s in rows[0]["samples"]] == [False, False, True]
    assert summary.avg_at_k == pytest.approx(1 / 3) and summary.truncation_rate == pytest.approx(1 / 3)
    assert summary.pass_at == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}
    assert summary.mean_score == pytest.approx(-0.1 / 3)


def test_request_seeds_do_not_overlap_between_prompts():
    n = 8
    seeds = {request_seed(3, i, n) + j for i in range(100) for j in range(n)}
    assert len(seeds) == 100 * n
    assert not seeds & {request_seed(4, i, n) + j for i in range(100) for j in range(n)}
