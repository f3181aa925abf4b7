"""CHORD-phi against plain GRPO on the CPU preset, same total rows per step, in one run.

GRPO:      24 prompts x 4 rollouts = 96 rows per step.
CHORD-phi: 16 prompts x 4 rollouts + 32 expert rows = 96 rows per step.

Both run `chord-train --config-name cpu_tiny` for --steps steps (the first --warmup steps are
dropped from the averages) and report the mean step time, the mean actor-update time (the part
CHORD changes: same rows, one forward/backward, plus the expert merge on the driver), and the
peak resident memory of the actor ranks (`actor/perf/max_memory_allocated_gb`, the process
ru_maxrss on the CPU platform). Step time also includes rollout, where GRPO generates 50% more
responses, so the actor update is the like-for-like figure.

    python benchmarks/bench_chord_overhead.py --steps 12
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MINI = "actor_rollout_ref.actor.ppo_mini_batch_size"
CASES = {  # both: 4 mini-batches of 24 rows (12 per rank), micro-batches by token budget
    "grpo": ["method=grpo", "data.train_batch_size=24", f"{MINI}=6"],
    "chord_phi": ["method=chord_phi", "data.train_batch_size=16", f"{MINI}=4"],
}


def run_case(name: str, workdir: Path, steps: int) -> list[dict]:
    metrics = workdir / f"{name}.jsonl"
    cmd = [
        sys.executable, "-m", "recipe.train.main", "--config-name", "cpu_tiny", *CASES[name],
        f"trainer.total_training_steps={steps}", "trainer.test_freq=-1", "trainer.save_freq=-1",
        "trainer.val_before_train=false", f"trainer.default_local_dir={workdir / name}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics}",
    ]  # fmt: skip
    env = dict(os.environ, CHORD_WORKDIR=str(workdir))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    rows = [json.loads(line)["data"] for line in metrics.read_text().splitlines() if line.strip()]
    return [r for r in rows if "timing_s/step" in r]


def summarize(rows: list[dict], warmup: int) -> dict[str, float]:
    rows = rows[warmup:]
    return {
        "step_s": statistics.mean(r["timing_s/step"] for r in rows),
        "update_actor_s": statistics.mean(r["timing_s/update_actor"] for r in rows),
        "update_actor_median_s": statistics.median(r["timing_s/update_actor"] for r in rows),
        "peak_rss_gb": max(r["actor/perf/max_memory_allocated_gb"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="default: a temporary folder")
    parser.add_argument("--order", default="grpo,chord_phi", help="which case runs first (run-order effects)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chord_bench_"))
    from chord.prepare.tiny_task import generate_tiny_task
    from chord.tiny_model import build_tiny_model

    if not (workdir / "model" / "config.json").exists():
        build_tiny_model(workdir / "model")
        generate_tiny_task(workdir / "data", num_train=1024, num_val=16, num_expert=1024, seed=0)
    order = args.order.split(",")
    if sorted(order) != sorted(CASES):
        parser.error(f"--order must list {sorted(CASES)}")
    results = {name: summarize(run_case(name, workdir, args.steps), args.warmup) for name in order}
    base, chord = results["grpo"], results["chord_phi"]
    print("| case | step s (mean) | update_actor s (mean) | update_actor s (median) | peak RSS GB |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['step_s']:.3f} | {r['update_actor_s']:.3f} | {r['update_actor_median_s']:.3f} "
            f"| {r['peak_rss_gb']:.2f} |"
        )
    overhead = chord["update_actor_median_s"] / base["update_actor_median_s"] - 1
    print(f"\nactor update time (median), chord_phi vs grpo: {overhead:+.1%}")
    print(f"peak memory, chord_phi vs grpo: {chord['peak_rss_gb'] / base['peak_rss_gb'] - 1:+.1%}")


if __name__ == "__main__":
    main()
