"""`make demo` / `chord-demo`: the main job on the embedded default, on CPU, in minutes.

1. builds the tiny Qwen2-style model and byte-level tokenizer (saved, then loaded by verl
   through `from_pretrained` like any checkpoint) and the bundled arithmetic task with expert
   demonstrations, under the work directory (default `outputs/demo`);
2. runs `chord-train --config-name cpu_tiny` (the real verl trainer on a local Ray cluster,
   2 FSDP2 ranks on gloo, hf rollout) with CHORD-mu: imitation first, exploration later;
3. writes `reward_mu.png` (on-policy reward and mu per step) next to verl's metrics file
   (`metrics.jsonl`) and the checkpoint.

Extra arguments are hydra overrides for the trainer, e.g. `chord-demo trainer.total_training_steps=20`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from chord.tiny_model import build_tiny_model

DEMO_MODEL = dict(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128, seed=0)
# Validation uses the training problems: the demo shows learning, not generalisation of addition.
DEMO_TASK = dict(
    num_train=2048, num_val=64, num_expert=2048, max_operand=9, ops="+", seed=0, val_held_out=False
)


def prepare_assets(workdir: Path) -> None:
    """Tiny model and task data under `workdir` (kept if already there)."""
    from chord.prepare.tiny_task import generate_tiny_task

    if not (workdir / "model" / "config.json").exists():
        build_tiny_model(workdir / "model", **DEMO_MODEL)
    if not (workdir / "data" / "expert.parquet").exists():
        generate_tiny_task(workdir / "data", **DEMO_TASK)


def train(workdir: Path, overrides: list[str]) -> int:
    env = dict(os.environ, CHORD_WORKDIR=str(workdir))
    cmd = [sys.executable, "-m", "recipe.train.main", "--config-name", "cpu_tiny", *overrides]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Train the embedded default (tiny model, bundled task, CPU)."
    )
    parser.add_argument("--workdir", default="outputs/demo", help="where model, data, run and plot go")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint instead of starting over (metrics.jsonl keeps the "
        "steps up to that checkpoint and appends the rest)",
    )
    args, overrides = parser.parse_known_args(argv)
    workdir = Path(args.workdir).resolve()
    if not args.resume:
        import shutil

        for stale in ("checkpoints", "metrics.jsonl", "reward_mu.png"):
            path = workdir / stale
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    prepare_assets(workdir)
    rc = train(workdir, overrides)
    if rc != 0:
        sys.exit(rc)
    from recipe.compare.plots import plot_reward_and_mu, read_metrics

    rows = read_metrics(workdir / "metrics.jsonl")
    png = plot_reward_and_mu(rows, workdir / "reward_mu.png")
    first, last = rows[0], rows[-1]
    window = min(10, len(rows))
    early = sum(r["critic/score/mean"] for r in rows[:window]) / window
    late = sum(r["critic/score/mean"] for r in rows[-window:]) / window
    print(
        f"\nchord demo: {len(rows)} steps; on-policy reward (mean of {window} steps) {early:.2f} -> "
        f"{late:.2f}; mu {first['chord/mu']:.2f} -> {last['chord/mu']:.2f}\n"
        f"  metrics:    {workdir / 'metrics.jsonl'}\n  plot:       {png}\n"
        f"  checkpoint: {workdir / 'checkpoints'}"
    )


if __name__ == "__main__":
    main()
