"""Prepared parquet files load in verl's own RLHFDataset, score 1 on their ground truth through
`chord.rewards.compute_score`, and the expert files pass `chord.data.check.validate`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from chord.data.check import validate
from chord.prepare.openr1 import prepare_openr1
from chord.prepare.tiny_task import generate_tiny_task
from chord.prepare.toolace import prepare_toolace
from chord.rewards import compute_score

UNIT_TESTS = Path(__file__).resolve().parents[1] / "unit"


def _fake_data_module(file_name: str):
    """The fake-dataset writers of a unit test file (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"chord_fake_{Path(file_name).stem}", UNIT_TESTS / file_name
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    tiny = generate_tiny_task(root / "tiny", num_train=16, num_val=4, num_expert=8)
    openr1_src = _fake_data_module("test_prepare_openr1.py").write_fake_openr1(root / "openr1.parquet")
    openr1 = prepare_openr1(str(openr1_src), root / "openr1", num_expert=4, num_rl=6).paths
    toolace_src = _fake_data_module("test_prepare_toolace.py").write_fake_toolace(root / "data.json")
    toolace = prepare_toolace(str(toolace_src), root / "toolace", num_rl=5, num_expert=3, num_eval=2).paths
    return {"tiny": tiny, "openr1": openr1, "toolace": toolace, "root": root}


def _rl_dataset(path: Path, tokenizer, cache_dir: Path):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "max_prompt_length": 4096,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "truncation": "error",
            "return_raw_chat": True,
            "cache_dir": str(cache_dir),
        }
    )
    return RLHFDataset(data_files=str(path), tokenizer=tokenizer, config=config)


def _response_for(data_source: str, ground_truth: str) -> str:
    return f"so the answer is \\boxed{{{ground_truth}}}" if data_source == "openr1" else ground_truth


@pytest.mark.parametrize(
    ("task", "split", "rows"),
    [
        ("tiny", "train", 16),
        ("tiny", "val", 4),
        ("openr1", "rl", 6),
        ("toolace", "rl", 5),
        ("toolace", "eval", 2),
    ],
)
def test_rl_parquet_loads_in_verl_and_its_ground_truth_scores_one(
    prepared, tiny_tokenizer, task, split, rows
):
    path = prepared[task][split]
    dataset = _rl_dataset(path, tiny_tokenizer, prepared["root"] / "verl_cache")
    assert len(dataset) == rows  # nothing filtered as too long
    table = pq.read_table(path).to_pylist()
    for i in range(rows):
        item = dataset[i]
        assert item["raw_prompt"] == table[i]["prompt"]
        assert item["index"] == i
        gt = item["reward_model"]["ground_truth"]
        assert compute_score(item["data_source"], _response_for(item["data_source"], gt), gt)["score"] == 1.0


def test_verl_collates_prepared_rows(prepared, tiny_tokenizer):
    from verl.utils.dataset.rl_dataset import collate_fn

    dataset = _rl_dataset(prepared["toolace"]["rl"], tiny_tokenizer, prepared["root"] / "verl_cache")
    batch = collate_fn([dataset[0], dataset[1]])
    assert list(batch["data_source"]) == ["toolace", "toolace"]


@pytest.mark.parametrize(("task", "rows"), [("tiny", 8), ("openr1", 4), ("toolace", 3)])
def test_expert_parquet_passes_the_expert_data_check(prepared, tiny_tokenizer, task, rows):
    report = validate(prepared[task]["expert"], tiny_tokenizer)
    assert report.rows == rows and report.schemas == ["messages"]
    assert report.response_tokens is not None and report.response_tokens.max > 0
