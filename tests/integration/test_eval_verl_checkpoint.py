"""chord-eval reads verl FSDP checkpoints: detection, and merging with verl's own model merger on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from recipe.eval.checkpoint import find_verl_actor_dir, resolve_model

# Writes the tiny model's weights as 2 FSDP shards the way verl's FSDP checkpoint manager does:
# one `model_world_size_2_rank_{r}.pt` per rank holding DTensors sharded on dim 0. A fake
# process group stands in for the 2 ranks; it runs in a subprocess so the test process never
# holds a process group.
_SHARD_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard
    from torch.testing._internal.distributed.fake_pg import FakeStore
    from transformers import AutoModelForCausalLM

    hf_dir, actor_dir = Path(sys.argv[1]), Path(sys.argv[2])
    state = AutoModelForCausalLM.from_pretrained(hf_dir).state_dict()
    dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
    mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("fsdp",))
    for rank in range(2):
        shard = {
            key: DTensor.from_local(value.chunk(2, dim=0)[rank].clone(), mesh, [Shard(0)], run_check=False)
            for key, value in state.items()
        }
        torch.save(shard, actor_dir / f"model_world_size_2_rank_{rank}.pt")
    dist.destroy_process_group()
    """
)


def build_verl_checkpoint(hf_dir: Path, root: Path, step: int = 3) -> Path:
    """`root/global_step_{step}/actor` with FSDP shards, fsdp_config.json and huggingface/ (no weights)."""
    actor = root / f"global_step_{step}" / "actor"
    (actor / "huggingface").mkdir(parents=True)
    for item in hf_dir.iterdir():
        if not item.name.startswith("model"):  # config, generation config, tokenizer: no weights
            shutil.copy(item, actor / "huggingface" / item.name)
    (actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 2}))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(
        [sys.executable, "-c", _SHARD_SCRIPT, str(hf_dir), str(actor)],
        check=True,
        env=env,
        capture_output=True,
    )
    (root / "latest_checkpointed_iteration.txt").write_text(str(step))
    return actor


@pytest.fixture(scope="module")
def verl_checkpoint(tiny_model_dir, tmp_path_factory) -> Path:
    return build_verl_checkpoint(Path(tiny_model_dir), tmp_path_factory.mktemp("checkpoints"))


def test_verl_checkpoint_is_found_from_root_step_or_actor_dir(verl_checkpoint, tiny_model_dir):
    root = verl_checkpoint.parent.parent
    assert find_verl_actor_dir(root) == verl_checkpoint
    assert find_verl_actor_dir(verl_checkpoint.parent) == verl_checkpoint
    assert find_verl_actor_dir(verl_checkpoint) == verl_checkpoint
    assert find_verl_actor_dir(tiny_model_dir) is None


def test_fsdp_shards_merge_into_the_original_weights(verl_checkpoint, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(verl_checkpoint.parent.parent, tmp_path / "merged")
    assert resolved.kind == "verl_fsdp" and resolved.hf_dir == tmp_path / "merged"
    assert (resolved.hf_dir / "tokenizer.json").is_file()
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    merged = AutoModelForCausalLM.from_pretrained(resolved.hf_dir).state_dict()
    assert set(merged) == set(original)
    for key, value in original.items():  # verl's merger stores bfloat16
        assert torch.equal(merged[key].float(), value.to(torch.bfloat16).float()), key


def test_saved_hf_weights_in_checkpoint_are_used_without_merging(verl_checkpoint, tiny_model_dir, tmp_path):
    actor = tmp_path / "global_step_5" / "actor"
    shutil.copytree(verl_checkpoint, actor)
    shutil.copy(Path(tiny_model_dir) / "model.safetensors", actor / "huggingface" / "model.safetensors")
    resolved = resolve_model(actor.parent, tmp_path / "unused")
    assert (resolved.kind, resolved.hf_dir) == ("verl_hf", actor / "huggingface")
    assert not (tmp_path / "unused").exists()


def test_hf_dir_is_used_as_is_and_bad_paths_are_named(tiny_model_dir, verl_checkpoint, tmp_path):
    resolved = resolve_model(tiny_model_dir, tmp_path / "unused")
    assert (resolved.kind, resolved.hf_dir) == ("hf", Path(tiny_model_dir))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "nowhere", tmp_path / "unused")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither an HF model directory"):
        resolve_model(tmp_path / "empty", tmp_path / "unused")
    broken = tmp_path / "broken" / "actor"
    shutil.copytree(verl_checkpoint, broken)
    (broken / "model_world_size_2_rank_1.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing FSDP shard\(s\) for rank\(s\) \[1\] of 2"):
        resolve_model(broken, tmp_path / "unused")


def test_chord_eval_runs_on_a_verl_checkpoint(verl_checkpoint, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recipe.eval.cli import RESULTS_JSON, main

    data = tmp_path / "tiny_arith.parquet"
    row = {
        "data_source": "chord/tiny_arith",
        "prompt": [{"role": "user", "content": "3+4="}],
        "reward_model": {"ground_truth": "7"},
    }
    pq.write_table(pa.Table.from_pylist([row]), data)
    argv = ["--model", str(verl_checkpoint.parent), "--data", str(data), "--backend", "hf", "--k", "2"]
    argv += [
        "--max-new-tokens",
        "3",
        "--out",
        str(tmp_path / "out"),
        "--merged-dir",
        str(tmp_path / "merged"),
    ]
    assert main(argv) == 0
    report = json.loads((tmp_path / "out" / RESULTS_JSON).read_text())
    assert report["config"]["model_kind"] == "verl_fsdp"
    assert report["config"]["model_dir"] == str(tmp_path / "merged")
    assert (tmp_path / "merged" / "model.safetensors").is_file()  # --merged-dir keeps the merge
    assert 0.0 <= report["summary"]["tiny_arith"]["avg_at_k"] <= 1.0
