"""Turn what the user passed to `chord-eval --model` into a Hugging Face model directory.

Accepted:
- an HF directory (`config.json` + weights), used as is;
- a verl FSDP actor checkpoint, `.../global_step_N/actor`: `fsdp_config.json`,
  `model_world_size_{W}_rank_{r}.pt` shards and a `huggingface/` folder with config and
  tokenizer. If `huggingface/` already holds full weights (verl's `save_contents` included
  `hf_model`), it is used directly; otherwise the shards are merged with verl's own
  `verl.model_merger` (FSDP backend, runs on CPU) into a directory the caller chooses;
- `.../global_step_N` (its `actor/` is used) and a checkpoint root (the step named in
  `latest_checkpointed_iteration.txt`, else the highest `global_step_N`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_SHARD_RE = re.compile(r"^model_world_size_(\d+)_rank_(\d+)\.pt$")
_STEP_RE = re.compile(r"^global_step_(\d+)$")
_HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class ResolvedModel:
    """`hf_dir`: the directory to load; `kind`: "hf", "verl_hf" (the checkpoint's saved HF
    model) or "verl_fsdp" (merged from shards); `source`: the path the user gave."""

    hf_dir: Path
    kind: str
    source: Path


def has_hf_weights(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / name).is_file() for name in _HF_WEIGHTS)


def find_verl_actor_dir(path: str | Path) -> Path | None:
    """The FSDP actor directory that `path` points to, or None if it is not a verl checkpoint.

    An actor directory holds `fsdp_config.json` or `model_world_size_*_rank_*.pt` shards, plus
    `huggingface/`.
    """
    path = Path(path)
    latest = path / "latest_checkpointed_iteration.txt"
    if latest.is_file():
        path = path / f"global_step_{latest.read_text().strip()}"
    elif path.is_dir():
        steps = [int(m.group(1)) for p in path.iterdir() if (m := _STEP_RE.match(p.name)) and p.is_dir()]
        if steps:
            path = path / f"global_step_{max(steps)}"
    if (path / "actor").is_dir():
        path = path / "actor"
    if not path.is_dir():
        return None
    has_shards = (path / "fsdp_config.json").is_file() or any(_SHARD_RE.match(p.name) for p in path.iterdir())
    if has_shards and (path / "huggingface").is_dir():
        return path
    return None


def check_fsdp_shards(actor_dir: Path) -> int:
    """Check that every rank's shard is present; returns the world size.

    The world size comes from `fsdp_config.json` (as verl's merger reads it).
    """
    config_path = actor_dir / "fsdp_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: verl's merger reads the world size from it")
    world_size = json.loads(config_path.read_text()).get("world_size")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"{config_path}: 'world_size' must be a positive int, got {world_size!r}")
    missing = [
        r
        for r in range(world_size)
        if not (actor_dir / f"model_world_size_{world_size}_rank_{r}.pt").is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{actor_dir}: missing FSDP shard(s) for rank(s) {missing} of {world_size}")
    return world_size


def merge_fsdp_checkpoint(actor_dir: Path, target_dir: Path, trust_remote_code: bool = False) -> Path:
    """Merge FSDP shards into an HF model in `target_dir` with verl's `FSDPModelMerger` (CPU).

    The merger casts weights to bfloat16 and copies config, generation config and tokenizer from
    `actor_dir/huggingface`.
    """
    check_fsdp_shards(actor_dir)
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    target_dir.mkdir(parents=True, exist_ok=True)
    config = ModelMergerConfig(
        operation="merge",
        backend="fsdp",
        local_dir=str(actor_dir),
        target_dir=str(target_dir),
        hf_model_config_path=str(actor_dir / "huggingface"),
        trust_remote_code=trust_remote_code,
    )
    merger = FSDPModelMerger(config)
    merger.merge_and_save()
    merger.cleanup()
    return target_dir


def resolve_model(path: str | Path, merge_dir: Path, trust_remote_code: bool = False) -> ResolvedModel:
    """Resolve `--model` (see the module docstring); merged weights are written to `merge_dir`."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"--model: {source} does not exist")
    actor_dir = find_verl_actor_dir(source)
    if actor_dir is not None:
        saved_hf = actor_dir / "huggingface"
        if has_hf_weights(saved_hf):
            return ResolvedModel(hf_dir=saved_hf, kind="verl_hf", source=source)
        merged = merge_fsdp_checkpoint(actor_dir, merge_dir, trust_remote_code=trust_remote_code)
        return ResolvedModel(hf_dir=merged, kind="verl_fsdp", source=source)
    if (source / "config.json").is_file():
        return ResolvedModel(hf_dir=source, kind="hf", source=source)
    if (source / "model" / "huggingface").is_dir() or (source / "actor" / "model").is_dir():
        raise ValueError(
            f"--model: {source} looks like a Megatron checkpoint; merge it first with "
            "`python -m verl.model_merger merge --backend megatron ...` and pass the HF directory"
        )
    raise ValueError(
        f"--model: {source} is neither an HF model directory (no config.json) nor a verl FSDP checkpoint "
        "(no fsdp_config.json / model_world_size_*_rank_*.pt next to huggingface/)"
    )
