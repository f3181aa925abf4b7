"""Start-up of `chord-train --config-name cpu_tiny` to its first training step, and where it goes.

Each run is a fresh process of the preset as users run it (validation before training
included), for one step. Start-up = seconds from launch to the start of step 1 (the first
line of verl's metrics file, polled from the file, minus that step's `timing_s/step`). The
phases come from the start times of the run's Ray processes (read from its own Ray log folder):

    driver + Ray:   launch -> Ray's first worker process (driver imports, hydra, ray.init)
    task runner:    -> the actor/ref workers start (runner imports, datasets, trainer)
    actor workers:  -> the reward worker starts (worker imports, FSDP model init)
    rollout side:   -> step 1 starts (rollout servers, load balancer, agent loop and reward
                    workers: imports, model load, weight sync; validation before training)

and the CPU seconds (user + system) every process of the run spent until step 1 starts, summed
and per process name (sampled from psutil every 0.25 s): on a 2-core machine start-up is
CPU-bound, and CPU seconds vary less with the machine's other load than wall seconds.

Variants (hydra overrides) alternate run by run, so load from other jobs hits each alike:

    python benchmarks/bench_startup.py --repeats 3
    python benchmarks/bench_startup.py --variant base= \\
        --variant tp2=actor_rollout_ref.rollout.tensor_model_parallel_size=2

With `--steps N` (default 1) each run trains N steps and the report adds what a variant costs
once running: the median over steps after `--warmup` of `timing_s/step` and `timing_s/gen`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_chord_overhead import run_case  # noqa: E402

PHASES = ("driver + Ray", "task runner", "actor workers", "rollout side")


def phases(run: dict) -> dict[str, float]:
    """Seconds per phase (see the module docstring) from a run's process start times."""
    first = {}
    for t, name in run["processes"]:
        first.setdefault(name.split(" ")[0], t)
    marks = [0.0, first["worker"], first["WorkerDict"], first["RewardLoopWorker"], run["startup_s"]]
    return {p: marks[i + 1] - marks[i] for i, p in enumerate(PHASES)}


def step_summary(runs: list[dict], key: str, warmup: int) -> str:
    """Median of `key` over every measured step of the runs, and the range of the run medians."""
    per_run = [[s[key] for s in r["steps"][warmup:]] for r in runs]
    medians = [statistics.median(v) for v in per_run]
    pooled = statistics.median(x for v in per_run for x in v)
    return f"{pooled:.2f} ({min(medians):.2f}-{max(medians):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", action="append", help="name=override[,override...] (default: base=)")
    parser.add_argument("--workdir", default=None, help="default: a temporary folder")
    parser.add_argument("--steps", type=int, default=1, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the step medians")
    args = parser.parse_args()
    if args.steps > 1 and args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup to measure steps")
    variants = {}
    for spec in args.variant or ["base="]:
        name, _, overrides = spec.partition("=")
        variants[name] = [o for o in overrides.split(",") if o]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chord_startup_"))
    from chord.prepare.tiny_task import generate_tiny_task
    from chord.tiny_model import build_tiny_model

    if not (workdir / "model" / "config.json").exists():
        build_tiny_model(workdir / "model")
        generate_tiny_task(workdir / "data", num_train=1024, num_val=16, num_expert=1024, seed=0)
    results: dict[str, list[dict]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(args.repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            # the preset as users run it: chord_mu, validation before training
            run = run_case(
                "cpu_tiny", workdir, f"{name}_{rep}", args.steps, variants[name], detail=True, validate=True
            )
            run["phases"] = phases(run)
            results[name].append(run)
            measured = run["steps"][args.warmup :] if args.steps > 1 else []
            step_note = (
                f"step {statistics.median(s['step'] for s in measured):.2f} s "
                f"(gen {statistics.median(s['gen'] for s in measured):.2f} s), "
                if measured
                else ""
            )
            print(
                f"{name}_{rep}: start-up {run['startup_s']:.1f} s, {step_note}"
                f"CPU {run['startup_cpu_s']:.1f} s, "
                f"load {run['load_before'][0]:.1f}; CPU s by process: "
                + ", ".join(f"{k} {v:.1f}" for k, v in run["startup_cpu_by_process"].items() if v >= 0.5),
                flush=True,
            )
            (workdir / "startup_results.json").write_text(json.dumps(results, indent=1))
    loads = [x for runs in results.values() for r in runs for x in (r["load_before"][0], r["load_after"][0])]
    print(
        f"\nload average (1 min) {min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f})\n"
    )
    step_cols = args.steps > 1
    print(
        "| variant | runs | start-up s: median (min-max) | CPU s: median (min-max) | "
        + " | ".join(PHASES)
        + (" | step s: median (run medians) | gen s: median (run medians)" if step_cols else "")
        + " |"
    )
    print("|---|---|---|---|" + "---|" * (len(PHASES) + 2 * step_cols))
    for name, runs in results.items():
        startup = [r["startup_s"] for r in runs]
        cpu = [r["startup_cpu_s"] for r in runs]
        cells = " | ".join(f"{statistics.median(r['phases'][p] for r in runs):.1f}" for p in PHASES)
        if step_cols:
            cells += "".join(f" | {step_summary(runs, key, args.warmup)}" for key in ("step", "gen"))
        print(
            f"| {name} | {len(runs)} | {statistics.median(startup):.1f} "
            f"({min(startup):.1f}-{max(startup):.1f}) | {statistics.median(cpu):.1f} "
            f"({min(cpu):.1f}-{max(cpu):.1f}) | {cells} |"
        )


if __name__ == "__main__":
    main()
