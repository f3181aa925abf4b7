"""CHORD-phi against plain GRPO on the CPU preset: actor-update time, its parts, memory, start-up.

Each case is a fresh `chord-train --config-name cpu_tiny` process; cases run interleaved
(A B B A A B ..., so load from other jobs and drift hit both) for `--repeats` rounds. Same total
rows per step:

    grpo:      24 prompts x 4 rollouts          = 96 rows
    chord_phi: 16 prompts x 4 rollouts + 32 expert rows = 96 rows
    mix_mu0:   the chord_phi batch with the SFT term off (mu = 0): same rows, policy as GRPO's

both 4 mini-batches (optimizer steps) per step on 2 FSDP2 ranks (gloo). Per step, after
`--warmup` steps, it reads from verl's file logger:

- `timing_s/update_actor` (driver) and its parts: `timing_s/chord_merge` (+ buffer, pad,
  expert_rows, concat, interleave; see `recipe.train.trainer`), and on the first actor rank
  `actor/timing_s/chord_normalizer` (all-reduce of the loss normalisers),
  `actor/timing_s/chord_loss` (the loss function's forward) and
  `actor/timing_s/train_mini_batch` (all mini-batches), and `actor/cpu_s/train_mini_batch`
  (the CPU seconds of that rank's process for the same work: the figure that other jobs on a
  shared machine hardly move, so the one the ratio target is read from). forward/backward/optimizer =
  train_mini_batch - loss - normaliser; "dispatch" = update_actor - merge - train_mini_batch
  (verl's no-padding conversion, Ray transfers, metric gathering).
- `chord/update_tokens`: the real (unpadded) prompt + response tokens the update runs on.
  "Equal tokens" compares update seconds per 1,000 such tokens. `actor/tokens/train_mini_batch_padded`:
  the tokens rank 0's forward passes ran on (rows x longest row of each micro-batch: verl pads
  every micro-batch with `use_remove_padding=false`, the CPU preset); "equal forward tokens"
  compares rank 0's CPU seconds per 1,000 of those.
- peak RSS of the actor ranks (`actor/perf/max_memory_allocated_gb`: ru_maxrss on the CPU
  platform), and the machine's load average (`os.getloadavg()`) before and after every run.
- start-up: seconds from launching the process to the start of step 1 (the first metrics line,
  polled from the file, minus that step's `timing_s/step`); with `--startup-detail`, when each
  Ray process started (from the run's own Ray log folder).

Reported per case: median over all measured steps, the spread of the per-run medians
(min-max), and the chord/grpo ratio of medians with a 95% bootstrap interval (runs resampled,
then steps within runs). Raw figures go to `<workdir>/bench_results.json`.

    python benchmarks/bench_chord_overhead.py --repeats 3 --steps 10 --warmup 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MINI = "actor_rollout_ref.actor.ppo_mini_batch_size"
CASES = {  # all: 4 mini-batches of 24 rows (12 per rank), micro-batches by token budget
    "grpo": ["method=grpo", "data.train_batch_size=24", f"{MINI}=6"],
    "chord_phi": ["method=chord_phi", "data.train_batch_size=16", f"{MINI}=4"],
    "mix_mu0": ["method=mix", "chord.mu.value=0.0", "data.train_batch_size=16", f"{MINI}=4"],
    "cpu_tiny": [],  # the preset as it is (chord_mu), for bench_startup.py
}
NUM_MINI_BATCH = 4
# per-step figures read from the metrics (None when the case does not log it: grpo has no merge)
FIELDS = {
    "step": "timing_s/step",
    "gen": "timing_s/gen",
    "update_actor": "timing_s/update_actor",
    "merge": "timing_s/chord_merge",
    "merge_buffer": "timing_s/chord_merge/buffer",
    "merge_pad": "timing_s/chord_merge/pad",
    "merge_expert_rows": "timing_s/chord_merge/expert_rows",
    "merge_concat": "timing_s/chord_merge/concat",
    "merge_interleave": "timing_s/chord_merge/interleave",
    "normalizer": "actor/timing_s/chord_normalizer",
    "loss": "actor/timing_s/chord_loss",
    "mini_batches": "actor/timing_s/train_mini_batch",
    "mini_batches_cpu": "actor/cpu_s/train_mini_batch",
    "tokens": "chord/update_tokens",
    "rank0_tokens_padded": "actor/tokens/train_mini_batch_padded",
    "response_tokens": "chord/update_response_tokens",
    "rss_gb": "actor/perf/max_memory_allocated_gb",
    "response_length": "response_length/mean",  # of the rollouts
    "response_max": "response_length/max",
    "prompt_max": "prompt_length/max",
}


def load_steps(metrics: Path) -> list[dict]:
    """The FIELDS of every training step in a run's metrics file."""
    rows = [json.loads(line)["data"] for line in metrics.read_text().splitlines() if line.strip()]
    return [{k: r.get(v) for k, v in FIELDS.items()} for r in rows if "timing_s/step" in r]


def run_case(
    name: str, workdir: Path, run_id: str, steps: int, extra: list[str], detail: bool, validate: bool = False
) -> dict:
    metrics = workdir / f"{run_id}.jsonl"
    ray_dir = workdir / f"ray_{run_id}"
    # A file or Ray folder left by an earlier run in this workdir would be read as this run's.
    metrics.unlink(missing_ok=True)
    shutil.rmtree(ray_dir, ignore_errors=True)
    cmd = [
        sys.executable, "-m", "recipe.train.main", "--config-name", "cpu_tiny", *CASES[name],
        f"trainer.total_training_steps={steps}", "trainer.test_freq=-1", "trainer.save_freq=-1",
        f"trainer.val_before_train={str(validate).lower()}", f"trainer.default_local_dir={workdir / run_id}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={metrics}", *extra,
    ]  # fmt: skip
    if detail:
        cmd.append(f"+ray_kwargs.ray_init._temp_dir={ray_dir}")
    env = dict(os.environ, CHORD_WORKDIR=str(workdir))
    load_before = os.getloadavg()
    first_line_at: list[float] = []
    start = time.time()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )

    def watch() -> None:  # the file logger writes one line per step, from the trainer's process
        while proc.poll() is None and not first_line_at:
            if metrics.exists() and metrics.stat().st_size > 0:
                first_line_at.append(time.time())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cpu: dict[int, tuple[str, float]] = {}
    if detail:
        threading.Thread(target=sample_cpu, args=(proc, first_line_at, cpu), daemon=True).start()
    out, _ = proc.communicate()
    end = time.time()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out[-3000:]}")
    steps = load_steps(metrics)
    record = {
        "case": name,
        "run": run_id,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "wall_s": end - start,
        "startup_s": first_line_at[0] - start - steps[0]["step"] if first_line_at else None,
        "steps": steps,
    }
    if detail:
        record["processes"] = ray_process_starts(ray_dir, start)
        by_name: dict[str, float] = {}
        for name, seconds in cpu.values():
            by_name[name] = by_name.get(name, 0.0) + seconds
        record["startup_cpu_s"] = sum(by_name.values())
        record["startup_cpu_by_process"] = dict(sorted(by_name.items(), key=lambda kv: -kv[1]))
    return record


def sample_cpu(proc: subprocess.Popen, stop: list, cpu: dict[int, tuple[str, float]]) -> None:
    """Until `stop` is non-empty (step 1 started): CPU seconds (user + system) of every process of
    the run, the launcher and all its descendants (Ray's own processes and workers), by pid."""
    import psutil

    root = psutil.Process(proc.pid)
    while not stop and proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in tree:
            try:
                times = p.cpu_times()
                cmd = p.cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            first = cmd[0] if cmd else p.name()
            if first.startswith("ray::"):
                name = first.split(".")[0]  # "ray::WorkerDict.actor_rollout_update_actor" -> ray::WorkerDict
            elif "recipe.train.main" in cmd:
                name = "driver"
            else:
                name = Path(cmd[1] if len(cmd) > 1 and first.endswith("python") else first).name
            cpu[p.pid] = (name, times.user + times.system)
        time.sleep(0.25)


def ray_process_starts(ray_dir: Path, start: float) -> list[tuple[float, str]]:
    """(seconds after launch, name) of every Ray worker process of the run, from its logs."""
    found = []
    for session in ray_dir.glob("session_2*/logs"):  # not the session_latest link
        for log in session.glob("python-core-worker-*.log"):
            pid = log.stem.rsplit("_", 1)[-1]
            first = log.read_text(errors="replace").split("\n", 1)[0]  # "[2026-.. 17:16:00,279 I ..."
            stamp = time.mktime(time.strptime(first[1:20], "%Y-%m-%d %H:%M:%S")) + int(first[21:24]) / 1e3
            name = "worker"
            for out in session.glob(f"worker-*-{pid}.out"):
                for line in out.read_text(errors="replace").splitlines()[:5]:
                    if line.startswith((":actor_name:", ":task_name:")):
                        name = line.split(":", 2)[2]
            found.append((round(stamp - start, 2), f"{name} (pid {pid})"))
    return sorted(found)


# -- statistics ---------------------------------------------------------------------------------
def values(
    runs: list[dict], key: str, warmup: int, per_1k_tokens: bool = False, tokens: str = "tokens"
) -> list[list[float]]:
    """Per run, the measured steps' values of `key` (optionally divided by thousands of `tokens`)."""
    out = []
    for run in runs:
        steps = run["steps"][warmup:]
        if per_1k_tokens:
            out.append([s[key] / (s[tokens] / 1000) for s in steps if s[key] is not None and s.get(tokens)])
        else:
            out.append([s[key] for s in steps if s[key] is not None])
    return out


def pooled_median(per_run: list[list[float]]) -> float | None:
    flat = [v for run in per_run for v in run]
    return statistics.median(flat) if flat else None


def ratio_ci(a: list[list[float]], b: list[list[float]], n_boot: int = 2000, seed: int = 0):
    """median(a) / median(b), and a 95% interval: resample runs, then steps within each run."""
    rng = random.Random(seed)

    def resample(per_run: list[list[float]]) -> list[float]:
        runs = [rng.choice(per_run) for _ in per_run]
        return [rng.choice(run) for run in runs for _ in run]

    point = pooled_median(a) / pooled_median(b)
    boots = sorted(statistics.median(resample(a)) / statistics.median(resample(b)) for _ in range(n_boot))
    return point, boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]


def spread(per_run: list[list[float]]) -> str:
    medians = [statistics.median(r) for r in per_run if r]
    return f"{min(medians):.3f}-{max(medians):.3f}" if medians else "-"


def report(results: list[dict], warmup: int) -> str:
    by_case: dict[str, list[dict]] = {}
    for r in results:
        by_case.setdefault(r["case"], []).append(r)
    lines = []
    loads = [x for r in results for x in (r["load_before"][0], r["load_after"][0])]
    lines.append(
        f"{len(results)} runs, load average (1 min) {min(loads):.1f}-{max(loads):.1f} "
        f"(median {statistics.median(loads):.1f}) over the runs\n"
    )
    lines.append(
        "| case | runs | update_actor s: median (run medians) | s per 1k tokens | tokens/step | "
        "rank 0 forward tokens/step (padded) | rollout length (max) | step s | merge s | merge % of step "
        "| peak RSS GB | start-up s |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case, runs in by_case.items():
        upd = values(runs, "update_actor", warmup)
        per_tok = values(runs, "update_actor", warmup, per_1k_tokens=True)
        merge = pooled_median(values(runs, "merge", warmup))
        step = pooled_median(values(runs, "step", warmup))
        share = [s["merge"] / s["step"] for r in runs for s in r["steps"][warmup:] if s["merge"] is not None]
        rss = [max(s["rss_gb"] for s in r["steps"]) for r in runs]
        startup = [r["startup_s"] for r in runs if r["startup_s"] is not None]
        lines.append(
            f"| {case} | {len(runs)} | {pooled_median(upd):.3f} ({spread(upd)}) | "
            f"{pooled_median(per_tok):.4f} ({spread(per_tok)}) | "
            f"{pooled_median(values(runs, 'tokens', warmup)):.0f} | "
            f"{pooled_median(values(runs, 'rank0_tokens_padded', warmup)) or 0:.0f} | "
            f"{pooled_median(values(runs, 'response_length', warmup)):.1f} "
            f"({max(v for r in values(runs, 'response_max', warmup) for v in r):.0f}) | {step:.3f} | "
            + (f"{merge:.4f} | {statistics.median(share):.2%} | " if merge is not None else "- | - | ")
            + f"{statistics.median(rss):.3f} ({min(rss):.3f}-{max(rss):.3f}) | "
            f"{statistics.median(startup):.1f} ({min(startup):.1f}-{max(startup):.1f}) |"
        )
    if "grpo" in by_case:
        base = by_case["grpo"]
        lines.append("")
        for case, runs in by_case.items():
            if case == "grpo":
                continue
            for label, per_token in (("equal rows", False), ("equal tokens (s per 1k tokens)", True)):
                point, low, high = ratio_ci(
                    values(runs, "update_actor", warmup, per_token),
                    values(base, "update_actor", warmup, per_token),
                )
                lines.append(
                    f"- actor update, {case} / grpo, {label}: **{point:.3f}x** (95% CI {low:.3f}-{high:.3f})"
                )
            cpu_case = values(runs, "mini_batches_cpu", warmup)
            if any(cpu_case):
                for label, per_token, tokens in (
                    ("equal rows", False, "tokens"),
                    ("equal tokens (per 1k real tokens)", True, "tokens"),
                    # rank 0's CPU per token its forward passes ran on, padding included
                    ("equal forward tokens (per 1k padded tokens of rank 0)", True, "rank0_tokens_padded"),
                ):
                    if not any(values(base, "mini_batches_cpu", warmup, per_token, tokens)):
                        continue  # a run from before the padded-token metric
                    point, low, high = ratio_ci(
                        values(runs, "mini_batches_cpu", warmup, per_token, tokens),
                        values(base, "mini_batches_cpu", warmup, per_token, tokens),
                    )
                    lines.append(
                        f"- actor mini-batches, CPU seconds of rank 0, {case} / grpo, {label}: "
                        f"**{point:.3f}x** (95% CI {low:.3f}-{high:.3f})"
                    )
            rss_case = statistics.median(max(s["rss_gb"] for s in r["steps"]) for r in runs)
            rss_base = statistics.median(max(s["rss_gb"] for s in r["steps"]) for r in base)
            lines.append(f"- peak actor RSS, {case} / grpo: {rss_case / rss_base:.3f}x")
    lines.append("")
    lines.append(
        "| case | update_actor | merge (buffer / pad / expert_rows / concat / interleave) | "
        "normaliser | loss | fwd+bwd+optim | dispatch |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for case, runs in by_case.items():
        med = {k: pooled_median(values(runs, k, warmup)) for k in FIELDS}
        fwd_bwd = med["mini_batches"] - med["loss"] - med["normalizer"]
        dispatch = med["update_actor"] - (med["merge"] or 0.0) - med["mini_batches"]
        parts = " / ".join(
            f"{med[k]:.4f}" if med[k] is not None else "-"
            for k in ("merge_buffer", "merge_pad", "merge_expert_rows", "merge_concat", "merge_interleave")
        )
        merge = f"{med['merge']:.4f}" if med["merge"] is not None else "-"
        lines.append(
            f"| {case} | {med['update_actor']:.3f} | {merge} ({parts}) | {med['normalizer']:.4f} | "
            f"{med['loss']:.4f} | {fwd_bwd:.3f} | {dispatch:.3f} |"
        )
    for r in results:
        if r.get("processes"):
            lines.append(
                f"\nRay processes of {r['run']} (s after launch): "
                + ", ".join(f"{t:.1f} {n}" for t, n in r["processes"])
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each runs every case once")
    parser.add_argument("--cases", default="grpo,chord_phi", help=f"comma-separated, from {sorted(CASES)}")
    parser.add_argument("--workdir", default=None, help="default: a temporary folder")
    parser.add_argument("--startup-detail", action="store_true", help="log when each Ray process starts")
    parser.add_argument("--report-only", action="store_true", help="re-print the report of --workdir")
    parser.add_argument("extra", nargs="*", help="hydra overrides added to every case")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chord_bench_"))
    out = workdir / "bench_results.json"
    if args.report_only:
        results = json.loads(out.read_text())
        for run in results:  # re-read the metrics files: FIELDS may have grown since
            run["steps"] = load_steps(workdir / f"{run['run']}.jsonl")
        print(report(results, args.warmup))
        return
    cases = args.cases.split(",")
    if unknown := set(cases) - set(CASES):
        parser.error(f"--cases: unknown {sorted(unknown)}; choose from {sorted(CASES)}")
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    from chord.prepare.tiny_task import generate_tiny_task
    from chord.tiny_model import build_tiny_model

    if not (workdir / "model" / "config.json").exists():
        build_tiny_model(workdir / "model")
        generate_tiny_task(workdir / "data", num_train=1024, num_val=16, num_expert=1024, seed=0)
    results = []
    for rep in range(args.repeats):
        for name in cases if rep % 2 == 0 else cases[::-1]:  # A B, B A, A B, ...
            run = run_case(name, workdir, f"{name}_{rep}", args.steps, args.extra, args.startup_detail)
            results.append(run)
            print(
                f"{run['run']}: update_actor median "
                f"{statistics.median(s['update_actor'] for s in run['steps'][args.warmup :]):.3f} s, "
                f"start-up {run['startup_s']:.1f} s, "
                f"load {run['load_before'][0]:.1f} -> {run['load_after'][0]:.1f}",
                flush=True,
            )
            out.write_text(json.dumps(results, indent=1))
    print(f"\nraw figures: {out}\n")
    print(report(results, args.warmup))


if __name__ == "__main__":
    main()
