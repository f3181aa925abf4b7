"""Rollout engines on the CPU preset: verl's vLLM replica (`cpu_rollout=vllm`) vs our hf replica.

Each run is a fresh `python -m recipe.train.main --config-name cpu_tiny cpu_rollout=<engine>`
process (CHORD-mu, the demo's method; no validation), engines alternating run by run so load from
other jobs hits both alike. Per run:

    start-up:     seconds from launch to the start of step 1 (first line of the metrics file,
                  polled, minus that step's `timing_s/step`);
    rollout/step: verl's `timing_s/gen` (generation of the step's 16 prompts x 4 samples),
                  median over the steps after the first (the first includes warm-up);
    tokens/s:     generated tokens of the step (`response_length/mean` x 64) / `timing_s/gen`;
    step:         verl's `timing_s/step`, median over the steps after the first;
    peak RSS:     the largest sum of resident memory over the run's process tree (driver, Ray,
                  FSDP workers, rollout servers and their engine processes), sampled every 0.5 s.

    python benchmarks/bench_rollout_vllm_vs_hf.py --steps 8 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
ROWS_PER_STEP = 64  # cpu_tiny: data.train_batch_size 16 x rollout.n 4


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of `proc` and all its descendants (0 for those gone meanwhile)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(engine: str, workdir: Path, run_id: str, steps: int) -> dict:
    metrics = workdir / f"{run_id}.jsonl"
    cmd = [
        sys.executable, "-m", "recipe.train.main", "--config-name", "cpu_tiny", f"cpu_rollout={engine}",
        f"trainer.total_training_steps={steps}", "trainer.test_freq=-1", "trainer.save_freq=-1",
        "trainer.val_before_train=false", f"trainer.default_local_dir={workdir / run_id}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics}",
    ]  # fmt: skip
    env = dict(os.environ, CHORD_WORKDIR=str(workdir))
    load_before = os.getloadavg()[0]
    start = time.time()
    pipe = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, **pipe)
    first_line_at: list[float] = []
    peak = [0]

    def watch() -> None:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            if not first_line_at and metrics.exists() and metrics.stat().st_size > 0:
                first_line_at.append(time.time())
            peak[0] = max(peak[0], tree_rss(ps))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{out[-3000:]}")
    rows = [json.loads(line)["data"] for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "timing_s/gen" in r]
    later = rows[1:] or rows
    gen = statistics.median(r["timing_s/gen"] for r in later)
    return {
        "engine": engine,
        "run": run_id,
        "load_before": load_before,
        "startup_s": first_line_at[0] - start - rows[0]["timing_s/step"] if first_line_at else None,
        "first_step_s": rows[0]["timing_s/step"],
        "gen_s": gen,
        "tokens_per_s": statistics.median(
            r["response_length/mean"] * ROWS_PER_STEP / r["timing_s/gen"] for r in later
        ),
        "step_s": statistics.median(r["timing_s/step"] for r in later),
        "peak_rss_gb": peak[0] / 2**30,
        "wall_s": time.time() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--engines", default="hf,vllm")
    parser.add_argument("--out", default=None, help="JSON lines of the runs (default: print only)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chord_rollout_bench_"))
    from recipe.demo import prepare_assets

    prepare_assets(workdir)  # the demo's model and task
    records = []
    for i in range(args.repeats):
        for engine in args.engines.split(","):
            rec = run(engine, workdir, f"{engine}_{i}", args.steps)
            records.append(rec)
            print(json.dumps(rec), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
    print(
        "\n| engine | start-up (s) | first step (s) | rollout/step (s) | tokens/s | step (s) "
        "| peak RSS (GB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for engine in args.engines.split(","):
        mine = [r for r in records if r["engine"] == engine]

        def span(key: str, fmt: str = "{:.2f}", runs: list[dict] = mine) -> str:
            vals = sorted(r[key] for r in runs if r[key] is not None)
            if len(vals) == 1:
                return fmt.format(vals[0])
            return " - ".join(fmt.format(v) for v in (vals[0], vals[-1]))

        print(
            f"| {engine} | {span('startup_s', '{:.0f}')} | {span('first_step_s', '{:.1f}')} "
            f"| {span('gen_s')} | {span('tokens_per_s', '{:.0f}')} | {span('step_s')} "
            f"| {span('peak_rss_gb', '{:.1f}')} |"
        )


if __name__ == "__main__":
    main()
