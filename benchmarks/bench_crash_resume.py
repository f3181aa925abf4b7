"""Crash and resume of `chord-train` on the CPU preset: what is lost, how long the restart takes.

    .venv/bin/python benchmarks/bench_crash_resume.py [--steps 12] [--save-freq 6] [--kill-after 8]

Two scenarios, each the same command twice (tiny model, bundled task, `method=chord_phi`, the
job in its own process group, outputs under `--out`):

- `kill -9 job`: SIGKILL to the whole process group once step `--kill-after` is logged, then
  the same command again;
- `kill -9 one FSDP rank`: SIGKILL to one actor worker process (a verl `WorkerDict`) once step
  `--kill-after` is logged; the job must end by itself (exit status, seconds after the kill,
  the `chord-train: stopped:` line); then the same command again.

Per scenario: steps of the record present once after the restart (must be all of them),
steps of the record lost (must be 0), training steps redone (at most `--save-freq`), time from
the restart to the first re-run step logged.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command(run_dir: Path, steps: int, save_freq: int) -> list[str]:
    return [
        sys.executable, "-m", "recipe.train.main", "--config-name", "cpu_tiny", "method=chord_phi",
        f"trainer.total_training_steps={steps}", f"trainer.save_freq={save_freq}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={run_dir / 'metrics.jsonl'}",
        "trainer.test_freq=-1", "trainer.val_before_train=false",
    ]  # fmt: skip


def logged_steps(run_dir: Path) -> list[int]:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass
    return steps


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def rank_pids(log: Path) -> list[int]:
    """The job's live actor workers (verl's `WorkerDict`s), from Ray's log prefixes."""
    pids = {int(pid) for pid in re.findall(r"WorkerDict pid=(\d+)", log.read_text(errors="replace"))}
    return sorted(pid for pid in pids if Path(f"/proc/{pid}").exists())


def scenario(name: str, kill_rank: bool, args: argparse.Namespace, env: dict) -> dict:
    run_dir = Path(args.out).resolve() / name.replace(" ", "_")
    run_dir.mkdir(parents=True, exist_ok=False)
    cmd = command(run_dir, args.steps, args.save_freq)
    job = start(cmd, env, run_dir / "first.log")
    while args.kill_after not in logged_steps(run_dir):
        if job.poll() is not None:
            raise SystemExit(
                f"{name}: the job ended before step {args.kill_after}; see {run_dir / 'first.log'}"
            )
        time.sleep(0.2)
    before = logged_steps(run_dir)
    result = {"scenario": name, "killed_after_step": args.kill_after}
    if kill_rank:
        victim = rank_pids(run_dir / "first.log")[-1]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        result["exit_status"] = job.wait(timeout=900)
        result["exit_after_kill_s"] = round(time.monotonic() - killed, 1)
        text = (run_dir / "first.log").read_text(errors="replace")
        result["message"] = next(
            (ln for ln in text.splitlines() if ln.startswith("chord-train: stopped:")), None
        )
        before = logged_steps(run_dir)
    else:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    tracker = (run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip()
    resumed_from = int(tracker)
    restart = time.monotonic()
    job = start(cmd, env, run_dir / "restart.log")
    # the first re-run step: logged after the restarted job trimmed the record to `resumed_from`
    restart_log = run_dir / "restart.log"
    while "resuming after step" not in restart_log.read_text(errors="replace") or not any(
        s > resumed_from for s in logged_steps(run_dir)
    ):
        if job.poll() is not None:
            break
        time.sleep(0.2)
    result["restart_to_first_step_s"] = round(time.monotonic() - restart, 1)
    result["restart_exit_status"] = job.wait(timeout=1800)
    result["restart_wall_s"] = round(time.monotonic() - restart, 1)
    after = logged_steps(run_dir)
    result["record_before_restart"] = before
    result["record_after"] = after
    result["record_every_step_once"] = after == list(range(1, args.steps + 1))
    result["record_steps_lost"] = len(set(before) - set(after))
    result["resumed_from_step"] = resumed_from
    result["training_steps_redone"] = max(before) - resumed_from
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--save-freq", type=int, default=6)
    parser.add_argument("--kill-after", type=int, default=8)
    parser.add_argument("--out", default="outputs/bench_crash_resume")
    parser.add_argument("--workdir", default="outputs/demo", help="tiny model and task (built if missing)")
    args = parser.parse_args()
    from recipe.demo import prepare_assets

    workdir = Path(args.workdir).resolve()
    prepare_assets(workdir)
    env = dict(os.environ, CHORD_WORKDIR=str(workdir), RAY_DEDUP_LOGS="0")
    results = [scenario("kill -9 job", False, args, env), scenario("kill -9 one FSDP rank", True, args, env)]
    print(json.dumps(results, indent=1))
    print("\n| killed | after step | resumed from | record steps lost | training steps redone | "
          "job exit after the kill | restart to first step | record: every step once |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        exit_info = (
            f"status {r['exit_status']}, {r['exit_after_kill_s']} s" if "exit_status" in r else "(SIGKILL)"
        )
        cells = [
            r["scenario"], r["killed_after_step"], r["resumed_from_step"], r["record_steps_lost"],
            r["training_steps_redone"], exit_info, f"{r['restart_to_first_step_s']} s",
            r["record_every_step_once"],
        ]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
