"""`chord-compare`: train several methods on the same task, data, seed and step budget, side by side.

    chord-compare --methods grpo,sft,sft_then_rl,chord_mu,chord_phi --steps 40 --seed 0 \\
        --out outputs/compare [--config-name cpu_tiny] [--no-eval] [hydra overrides ...]

Each method runs `chord-train --config-name <config> method=<name> ...` in its own run directory
(`<out>/runs/<method>/`: train.log, metrics.jsonl, checkpoints/, eval/), one after the other; a
line per finished step shows the reward and the overall progress. `sft_then_rl` is two runs:
`method=sft` for `--sft-fraction` of the steps, then `method=grpo` starting from the SFT
checkpoint (converted to a Hugging Face directory by `recipe.eval.checkpoint`).

`--seeds N` runs every method once per seed `--seed`, ..., `--seed` + N - 1, each in
`<out>/runs/<method>/seed<seed>/` (with one seed the run directory stays `<out>/runs/<method>/`);
the report gives mean ± standard deviation over seeds, per-seed values in the JSON, and the time
each method takes to reach GRPO's final reward. With `--sweep` (default) a one-stage method
trains all its seeds in one `chord-train` launch (`sweep.seeds`, recipe/train/sweep.py: Ray and
the workers start once; log in `<out>/runs/<method>/train.log`), unless chord-train cannot sweep
its config (`sweep_refusal`: e.g. vLLM rollout, uft, trapo); `sft_then_rl` and `--no-sweep`
get a launch per (method, seed), seed-major (all methods of a seed, then the next). A swept
seed's wall time starts when the previous seed's last step record was read (the first seed's
at the launch): start-up counts in the first seed, each reset in the seed after it.

With `--eval` (default) the final checkpoint of every method is scored by `chord-eval` on the
config's validation files (or `--eval-data`), greedy by default, and so is the policy they all
start from (the `base` row, in `<out>/runs/base/`: what the eval columns are read against).
Written to `--out`:
`compare.md` (the table), `compare.json` (settings, summaries and per-step curves) and
`compare.png` (reward, mu, entropy and response length per step, all methods on shared axes);
they are rewritten after every method, so an interrupted comparison keeps what finished.

`--jobs N` runs up to N launches at once (a sweep launch counts as one), in the same order
(each launch is its own trainer process and Ray instance). On a machine whose cores one run
does not keep busy this finishes the comparison sooner; every run's wall time then includes
sharing the machine, so wall-clock figures compare fairly only between runs made with the same
--jobs (and --sweep).

With the default config (`cpu_tiny`) the tiny model and task are built in `--workdir` if missing.
Other arguments are hydra overrides passed to every run (e.g. `trainer.n_gpus_per_node=8`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from recipe.compare.plan import (
    SFT_THEN_RL,
    Launch,
    MethodPlan,
    Stage,
    check_no_seed_runs_lost,
    check_user_overrides,
    compose_config,
    launch_order,
    method_run_dir,
    micro_batch_override,
    parse_methods,
    plan_method,
    preset_methods,
    run_order,
    seed_values,
    seed_walls,
    stage_overrides,
    sweep_overrides,
    trainer_command,
    why_not_swept,
)
from recipe.compare.report import (
    BASE_METHOD,
    REWARD,
    MethodResult,
    join_stages,
    markdown_table,
    seed_summary,
    seed_table,
    summarize,
    time_to_reward,
    validation_accuracy,
)
from recipe.compare.report import write_report as write_tables
from recipe.train.sweep import INITIAL_STATE, sweep_refusal

DEFAULT_METHODS = "grpo,sft,sft_then_rl,chord_mu,chord_phi"
TINY_CONFIG = "cpu_tiny"
RESULT_FILE = "result.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chord-compare",
        description="Train several methods on the same task, data, seed and step budget; tabulate and plot.",
        epilog="Other arguments are hydra overrides given to every run, e.g. data.train_batch_size=32.",
    )
    known = ", ".join([*preset_methods(), SFT_THEN_RL])
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from: {known}")
    p.add_argument("--steps", type=int, default=20, help="training steps per method (default 20)")
    p.add_argument("--seed", type=int, default=0, help="data order, expert order and rollout sampling seed")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run every method with seeds --seed .. --seed+N-1 (default 1); report mean ± std over seeds",
    )
    p.add_argument("--out", default="outputs/compare", help="report, plots and runs/<method>/[seed<k>/]")
    p.add_argument("--config-name", default=TINY_CONFIG, help="chord-train config (conf/*.yaml)")
    p.add_argument(
        "--workdir",
        default="outputs/compare/assets",
        help="CHORD_WORKDIR of the runs; with cpu_tiny the tiny model and task are built here if missing",
    )
    p.add_argument("--sft-fraction", type=float, default=0.5, help=f"{SFT_THEN_RL}: share of SFT steps")
    p.add_argument("--last-k", type=int, default=5, help="final reward = mean over the last k steps")
    p.add_argument(
        "--eval",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score each final checkpoint with chord-eval (default on)",
    )
    p.add_argument("--eval-data", nargs="+", default=None, help="parquet files (default: data.val_files)")
    p.add_argument("--eval-k", type=int, default=1, help="chord-eval samples per problem (default 1)")
    p.add_argument("--eval-temperature", type=float, default=0.0, help="default 0: greedy")
    p.add_argument("--eval-max-new-tokens", type=int, default=None, help="default: data.max_response_length")
    p.add_argument("--eval-max-problems", type=int, default=None, help="first N problems per benchmark")
    p.add_argument("--eval-backend", default="auto", choices=["auto", "vllm", "hf"])
    p.add_argument("--smooth", type=int, default=None, help="plot moving-average window (default steps/10)")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds allowed per training run (a sweep launch: x seeds)",
    )
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed method")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trainer launches at once (default 1; a sweep launch of a method's seeds is one); wall "
        "times then include sharing the machine",
    )
    p.add_argument(
        "--sweep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --seeds > 1, train each one-stage method's seeds in one chord-train launch "
        "(sweep.seeds; default on; not sft_then_rl nor configs chord-train cannot sweep, e.g. vLLM "
        "rollout, uft, trapo). Each seed's wall time then starts when the previous seed's last step "
        "was read: the first seed's includes the launch's start-up, later seeds' their reset. "
        "--no-sweep: a launch per (method, seed)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rebuild the table and plot from the result.json files under --out/runs",
    )
    return p


# ---------------------------------------------------------------------------- progress
def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts finished steps over all methods; formats one line per step (thread-safe: with
    --jobs every running method reports its steps from its own thread)."""

    def __init__(self, total_steps: int, num_methods: int):
        self.total_steps = total_steps
        self.num_methods = num_methods
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def count_step(self) -> None:
        """One more finished step."""
        with self._lock:
            self.done += 1

    def count_at_least(self, steps: int) -> None:
        """Raise the count to `steps` (a failed run's skipped steps count as done)."""
        with self._lock:
            self.done = max(self.done, steps)

    def overall(self) -> str:
        elapsed = time.monotonic() - self.started
        pct = 100.0 * self.done / max(self.total_steps, 1)
        text = f"all {self.done}/{self.total_steps} ({pct:.0f}%), {_clock(elapsed)} elapsed"
        if self.done:
            text += f", ~{_clock(elapsed / self.done * (self.total_steps - self.done))} left"
        return text

    def step_line(self, label: str, step: int, steps: int, data: dict) -> str:
        self.count_step()
        parts = [f"{label} step {step:>{len(str(steps))}}/{steps}", f"reward {data[REWARD]:.3f}"]
        if "chord/mu" in data:
            parts.append(f"mu {data['chord/mu']:.3f}")
        if "response_length/mean" in data:
            parts.append(f"len {data['response_length/mean']:.1f}")
        if "timing_s/step" in data:
            parts.append(f"{data['timing_s/step']:.1f} s/step")
        return "  ".join(parts) + " | " + self.overall()


class MetricsFollower:
    """New records of a JSONL file that another process is still writing (complete lines only).

    A file that got shorter was rewritten (a resumed trainer keeps the steps up to its
    checkpoint, `recipe.train.record`): it is read again from the start.
    """

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def poll(self) -> list[dict]:
        if not self.path.exists():
            return []
        if self.path.stat().st_size < self.offset:
            self.offset, self.partial = 0, b""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()  # the unfinished last line, if any
        records = []
        for line in lines:
            if line.strip():
                with contextlib.suppress(json.JSONDecodeError):
                    records.append(json.loads(line))
        return records


# ---------------------------------------------------------------------------- running
def _terminate(proc: subprocess.Popen) -> None:
    """Stop the trainer and everything it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class StepWatch:
    """One metrics file of a launch: prints a progress line per step record and keeps the clock.

    `seen`: `{step (offset included): seconds since `origin` when chord-compare read its
    record}`. `origin` (a time.monotonic() value) is where the clock starts: given, or the
    launch's start for the first watch of a launch and, for a later one (the next seed of a
    sweep), when the previous watch read its `last_step` record.
    """

    def __init__(
        self,
        path: Path,
        label: str,
        step_offset: int = 0,
        last_step: int | None = None,
        origin: float | None = None,
        seen: dict[int, float] | None = None,
    ):
        self.follower = MetricsFollower(path)
        self.label = label
        self.step_offset = step_offset
        self.last_step = last_step
        self.origin = origin
        self.seen: dict[int, float] = {} if seen is None else seen
        self.last_read: float | None = None  # when the latest step record was read

    def read(self, progress: Progress, method_steps: int, fallback_origin: float) -> tuple[int, bool]:
        """Print the new step records; returns (records printed, whether `last_step` was read)."""
        printed, finished = 0, False
        for record in self.follower.poll():
            data = record.get("data", {})
            if REWARD not in data:
                continue
            now = time.monotonic()
            if self.origin is None:
                self.origin = fallback_origin
            step = int(record.get("step", 0)) + self.step_offset
            self.seen[step] = now - self.origin
            self.last_read = now
            finished = finished or step == self.last_step
            print(progress.step_line(self.label, step, method_steps, data), flush=True)
            printed += 1
        return printed, finished


def run_launch(
    cmd: list[str],
    log_path: Path,
    env: dict[str, str],
    progress: Progress,
    watches: list[StepWatch],
    method_steps: int,
    label: str,
    timeout: float | None = None,
    heartbeat_s: float = 30.0,
    cancel: threading.Event | None = None,
) -> tuple[int, float, float]:
    """Run one trainer process (output to `log_path`), following the metrics files of `watches`
    (in the order the launch writes them; polled every 0.5 s); returns (exit code, start, end) as
    time.monotonic() values.

    A set `cancel` event stops the trainer (its process group) and raises KeyboardInterrupt: how
    an interrupt of chord-compare reaches runs that its worker threads are waiting on.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    last_output = started
    if watches and watches[0].origin is None:
        watches[0].origin = started

    def report_new() -> None:
        nonlocal last_output
        for i, watch in enumerate(watches):
            previous = watches[i - 1] if i else None
            fallback = started if previous is None else previous.last_read or started
            printed, finished = watch.read(progress, method_steps, fallback)
            if printed:
                last_output = time.monotonic()
            if finished and i + 1 < len(watches) and watches[i + 1].origin is None:
                watches[i + 1].origin = watch.last_read  # the next seed's clock starts here

    with open(log_path, "w") as log:
        log.write("+ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            while (rc := proc.poll()) is None:
                report_new()
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt
                now = time.monotonic()
                if timeout is not None and now - started > timeout:
                    print(f"{label} timed out after {timeout:.0f} s; stopping it", flush=True)
                    _terminate(proc)
                    rc = 124
                    break
                if now - last_output > heartbeat_s:
                    print(f"{label} running, {now - started:.0f} s (log: {log.name})", flush=True)
                    last_output = now
                time.sleep(0.5)
        except BaseException:
            _terminate(proc)
            raise
    report_new()
    return rc, started, time.monotonic()


def run_stage(
    cmd: list[str],
    run_dir: Path,
    env: dict[str, str],
    progress: Progress,
    label: str,
    step_offset: int,
    method_steps: int,
    timeout: float | None = None,
    heartbeat_s: float = 30.0,
    seen: dict[int, float] | None = None,
    since: float | None = None,
    cancel: threading.Event | None = None,
) -> tuple[int, float]:
    """`run_launch` of one (method, seed) stage writing `run_dir/metrics.jsonl`, its output in
    `run_dir/train.log`; returns (exit code, wall seconds).

    `seen`, if given, gets `{step (offset included): seconds since `since` (a time.monotonic()
    value; default: this stage's start) when the step's record was read}`.
    """
    watch = StepWatch(run_dir / "metrics.jsonl", label, step_offset, origin=since, seen=seen)
    rc, started, ended = run_launch(
        cmd, run_dir / "train.log", env, progress, [watch], method_steps, label, timeout, heartbeat_s, cancel
    )
    return rc, ended - started


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return MetricsFollower(path).poll()


def _training_rows(path: Path) -> list[dict]:
    from recipe.compare.plots import read_metrics

    try:
        return read_metrics(path)
    except (OSError, ValueError):
        return []


def checkpoint_hf_dir(checkpoint_root: Path, merge_dir: Path) -> Path:
    """The Hugging Face model of the last checkpoint under `checkpoint_root`."""
    from recipe.eval.checkpoint import resolve_model

    return resolve_model(checkpoint_root, merge_dir).hf_dir


def evaluate_checkpoint(
    checkpoint_root: Path,
    data: list[str],
    out_dir: Path,
    args: argparse.Namespace,
    max_new_tokens: int,
    seed: int | None = None,
) -> dict[str, float]:
    """chord-eval on the last checkpoint under `checkpoint_root`: `{benchmark: avg@k in %}`."""
    from recipe.eval.cli import RESULTS_JSON
    from recipe.eval.cli import main as eval_main

    argv = [
        "--model", str(checkpoint_root), "--data", *data, "--out", str(out_dir),
        "--merged-dir", str(out_dir / "merged"), "--k", str(args.eval_k),
        "--temperature", str(args.eval_temperature), "--max-new-tokens", str(max_new_tokens),
        "--seed", str(args.seed if seed is None else seed), "--backend", args.eval_backend,
    ]  # fmt: skip
    if args.eval_max_problems is not None:
        argv += ["--max-problems", str(args.eval_max_problems)]
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "eval.log", "w") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            print("+ chord-eval " + shlex.join(argv), flush=True)
            rc = eval_main(argv)
    if rc != 0:
        raise RuntimeError(f"chord-eval exited with {rc}: {_log_tail(out_dir / 'eval.log', 5)}")
    summary = json.loads((out_dir / RESULTS_JSON).read_text())["summary"]
    return {name: 100.0 * float(s["avg_at_k"]) for name, s in summary.items()}


def _resolved(cfg: Any, key: str) -> Any:
    """`cfg.<key>` with its interpolations resolved against the whole config."""
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class Comparison:
    """Runs the methods of one `chord-compare` call and writes its report."""

    def __init__(self, args: argparse.Namespace, overrides: list[str], command: str):
        self.args = args
        self.overrides = overrides
        self.command = command
        self.out = Path(args.out).resolve()
        self.runs = self.out / "runs"
        self.env = dict(os.environ, CHORD_WORKDIR=str(Path(args.workdir).resolve()))
        self.env.setdefault("VERL_USE_EXTERNAL_MODULES", "recipe.plugins")
        os.environ["CHORD_WORKDIR"] = self.env["CHORD_WORKDIR"]  # resolves ${chord_workdir} in compose
        self.results: list[MethodResult] = []
        self.plans: list[MethodPlan] = []
        self.seeds = seed_values(args.seed, args.seeds)
        self.sweeps: dict[str, tuple[list[str], Any]] = {}  # swept method -> its launch's overrides, config
        self.num_launches = 0
        # hydra's compose and chord-eval use process-wide state: one thread at a time (--jobs)
        self.shared_state = threading.Lock()
        self.cancel = threading.Event()  # set on an interrupt: running trainers stop

    # -------------------------------------------------------------- per stage
    def stage_config(
        self, stage: Stage, run_dir: Path, save: bool, model_path: Path | None, seed: int
    ) -> tuple[list[str], Any]:
        overrides = stage_overrides(
            stage,
            seed=seed,
            run_dir=run_dir,
            save_checkpoint=save,
            user_overrides=self.overrides,
            model_path=model_path,
        )
        with self.shared_state:
            cfg = compose_config(self.args.config_name, overrides)
        return self.fix_micro_batch(stage, overrides, cfg), cfg

    def sweep_config(self, plan: MethodPlan) -> tuple[list[str], Any]:
        """Overrides and config of the launch that trains one-stage `plan` once per seed (no
        micro-batch fix yet: `fix_micro_batch` once the sweep is accepted)."""
        overrides = sweep_overrides(
            plan.stages[0],
            seeds=self.seeds,
            sweep_dir=self.runs / plan.name,
            save_checkpoint=self.args.eval,
            user_overrides=self.overrides,
        )
        with self.shared_state:
            return overrides, compose_config(self.args.config_name, overrides)

    @staticmethod
    def fix_micro_batch(stage: Stage, overrides: list[str], cfg: Any) -> list[str]:
        """`overrides`, with the micro-batch size that divides a rank's mini-batch if `cfg`'s does not."""
        fix = micro_batch_override(cfg)
        if fix is None:
            return overrides
        print(f"  note: {stage.method}: {fix} (a rank's mini-batch must split into micro-batches)")
        return [*overrides, fix]

    def eval_inputs(self, cfg: Any) -> tuple[list[str], int]:
        """chord-eval's data files (`--eval-data` or the config's `data.val_files`) and its
        `--max-new-tokens` (`--eval-max-new-tokens` or `data.max_response_length`)."""
        data = self.args.eval_data or _resolved(cfg, "data.val_files")
        data = [data] if isinstance(data, str) else list(data)
        max_new = self.args.eval_max_new_tokens or int(_resolved(cfg, "data.max_response_length"))
        return data, max_new

    def evaluate_base(self, seed: int, cfg: Any) -> MethodResult:
        """The `base` row: chord-eval of the policy the methods start from (`cfg`'s
        `actor_rollout_ref.model.path`), on the same data and settings as their final checkpoints."""
        result = MethodResult(BASE_METHOD, seed=seed)
        out_dir = self.run_dir(BASE_METHOD, seed)
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        started = time.monotonic()
        try:
            model = Path(_resolved(cfg, "actor_rollout_ref.model.path"))
            data, max_new = self.eval_inputs(cfg)
            with self.shared_state:
                result.eval_acc = evaluate_checkpoint(model, data, out_dir / "eval", self.args, max_new, seed)
        except Exception as exc:  # like a method's evaluation: reported, the comparison goes on
            result.status, result.error = "failed", f"evaluation of the starting policy failed: {exc}"
            print(f"  {BASE_METHOD}: {result.error}")
        result.eval_s = time.monotonic() - started
        (out_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        return result

    def label(self, index: int, plan: MethodPlan, seed: int, stage: Stage | None = None) -> str:
        """`[3/10 sft_then_rl:rl seed 1]` (launch 3 of 10); the seed only with --seeds > 1."""
        text = f"[{index}/{self.num_launches} {plan.name}"
        if stage is not None and len(plan.stages) > 1:
            text += f":{stage.name}"
        return text + (f" seed {seed}]" if len(self.seeds) > 1 else "]")

    def run_dir(self, method: str, seed: int) -> Path:
        return method_run_dir(self.runs, method, seed, len(self.seeds))

    def run_method(self, plan: MethodPlan, seed: int, index: int, progress: Progress) -> MethodResult:
        method_dir = self.run_dir(plan.name, seed)
        shutil.rmtree(method_dir, ignore_errors=True)  # a fresh run: verl would resume old checkpoints
        method_dir.mkdir(parents=True)
        started = time.monotonic()
        seen: dict[int, float] = {}
        stage_rows: list[list[dict]] = []
        run_dirs: list[Path] = []
        hf_dirs: dict[str, Path] = {}
        error: str | None = None
        cfg = None
        for stage in plan.stages:
            run_dir = method_dir if len(plan.stages) == 1 else method_dir / stage.name
            is_last = stage is plan.stages[-1]
            feeds_next = any(s.init_from == stage.name for s in plan.stages)
            save = feeds_next or (is_last and self.args.eval)
            model_path = hf_dirs.get(stage.init_from) if stage.init_from else None
            overrides, cfg = self.stage_config(stage, run_dir, save, model_path, seed)
            cmd = trainer_command(sys.executable, self.args.config_name, overrides)
            label = self.label(index, plan, seed, stage)
            print(f"{label} start: {stage.steps} steps of method={stage.method}, log {run_dir / 'train.log'}")
            rc, _ = run_stage(
                cmd, run_dir, self.env, progress, label, stage.step_offset, plan.steps, self.args.timeout,
                seen=seen, since=started, cancel=self.cancel,
            )  # fmt: skip
            run_dirs.append(run_dir)
            stage_rows.append(_training_rows(run_dir / "metrics.jsonl"))
            if rc != 0:
                error = f"{stage.name} stage exited with {rc}; see {run_dir / 'train.log'}"
                tail = _log_tail(run_dir / "train.log")
                print(f"{label} FAILED (exit {rc}); last lines of {run_dir / 'train.log'}:\n{tail}")
                break
            if feeds_next:
                try:
                    hf_dirs[stage.name] = checkpoint_hf_dir(run_dir / "checkpoints", run_dir / "hf")
                except (ValueError, FileNotFoundError, RuntimeError) as exc:
                    error = f"{stage.name} stage: no model to start the next stage from: {exc}"
                    break
        rows = join_stages(stage_rows, [s.step_offset for s in plan.stages[: len(stage_rows)]])
        return self.finish_run(
            plan, seed, method_dir, run_dirs, rows, seen, time.monotonic() - started, error, cfg
        )

    def run_sweep(self, plan: MethodPlan, index: int, progress: Progress) -> list[MethodResult]:
        """Every seed of one-stage `plan` in one trainer launch (`sweep.seeds`; its output in
        `runs/<method>/train.log`): a result per seed, in `runs/<method>/seed<s>/` as with a
        launch per seed. Seed s's clock starts when the previous seed's last step record was
        read (the first seed's at the launch), so start-up and resets count in the seed they
        precede. A seed that logged every step is ok even if the launch failed later."""
        method_dir = self.runs / plan.name
        for name in [*(self.run_dir(plan.name, s).name for s in self.seeds), "hydra", INITIAL_STATE]:
            shutil.rmtree(method_dir / name, ignore_errors=True)  # a fresh run of every seed
        overrides, cfg = self.sweeps[plan.name]
        stage = plan.stages[0]
        log = method_dir / "train.log"
        watches = [
            StepWatch(
                self.run_dir(plan.name, s) / "metrics.jsonl", self.label(index, plan, s), last_step=plan.steps
            )
            for s in self.seeds
        ]
        label = f"[{index}/{self.num_launches} {plan.name} seeds {self.seeds[0]}..{self.seeds[-1]}]"
        print(
            f"{label} start: one launch of {len(self.seeds)} seeds x {stage.steps} steps of "
            f"method={stage.method}, log {log}"
        )
        timeout = None if self.args.timeout is None else self.args.timeout * len(self.seeds)
        cmd = trainer_command(sys.executable, self.args.config_name, overrides)
        rc, _, ended = run_launch(
            cmd, log, self.env, progress, watches, plan.steps, label, timeout, cancel=self.cancel
        )
        if rc != 0:
            print(f"{label} FAILED (exit {rc}); last lines of {log}:\n{_log_tail(log)}")
        walls = seed_walls([w.origin for w in watches], ended)
        results = []
        for seed, watch, wall in zip(self.seeds, watches, walls, strict=True):
            run_dir = self.run_dir(plan.name, seed)
            run_dir.mkdir(parents=True, exist_ok=True)
            rows = _training_rows(run_dir / "metrics.jsonl")
            error = None
            if rc != 0 and len(rows) < plan.steps:
                error = (
                    f"the sweep launch of seeds {self.seeds} exited with {rc} after {len(rows)} of "
                    f"{plan.steps} steps of this seed; see {log}"
                )
            results.append(
                self.finish_run(plan, seed, run_dir, [run_dir], rows, watch.seen, wall, error, cfg)
            )
        return results

    def finish_run(
        self,
        plan: MethodPlan,
        seed: int,
        method_dir: Path,
        run_dirs: list[Path],
        rows: list[dict],
        seen: dict[int, float],
        wall: float,
        error: str | None,
        cfg: Any,
    ) -> MethodResult:
        """The result of one (method, seed) run from its training rows: failed with `error` or
        with fewer steps logged than planned, else evaluated (with --eval); written to
        `method_dir/result.json`."""
        result = summarize(plan.name, rows, self.args.last_k) if rows else MethodResult(plan.name)
        result.seed = seed
        result.step_wall_s = [[step, round(seen[step], 3)] for step in sorted(seen)]
        result.wall_s = wall
        result.switch_steps = plan.switch_steps
        result.run_dirs = [str(d) for d in run_dirs]
        result.verl_val_acc = validation_accuracy(_read_records(run_dirs[-1] / "metrics.jsonl"))
        if error is not None or result.steps < plan.steps:
            result.status = "failed"
            result.error = error or f"logged {result.steps} of {plan.steps} steps"
        elif self.args.eval:
            eval_started = time.monotonic()
            try:
                data, max_new = self.eval_inputs(cfg)
                with self.shared_state:
                    result.eval_acc = evaluate_checkpoint(
                        run_dirs[-1] / "checkpoints", data, method_dir / "eval", self.args, max_new, seed
                    )
            except Exception as exc:  # evaluation is optional: report it, keep the training result
                result.error = f"evaluation failed: {exc}"
                print(f"  {plan.name}: {result.error}")
            result.eval_s = time.monotonic() - eval_started
        (method_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        return result

    # -------------------------------------------------------------- whole comparison
    def config(self) -> dict[str, Any]:
        a = self.args
        return {
            "command": self.command,
            "config_name": a.config_name,
            "methods": [p.name for p in self.plans],
            "steps": a.steps,
            "seed": a.seed,
            "seeds": self.seeds,
            "smooth": self.window(),
            "sft_fraction": a.sft_fraction,
            "last_k": a.last_k,
            "jobs": a.jobs,
            "sweep": a.sweep,
            "overrides": self.overrides,
            "eval": a.eval,
            "eval_k": a.eval_k,
            "eval_temperature": a.eval_temperature,
            "workdir": self.env["CHORD_WORKDIR"],
            "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        }

    def window(self) -> int:
        """Moving-average window of the plots and of time-to-reward: --smooth or steps / 10."""
        return self.args.smooth or max(1, self.args.steps // 10)

    def write_report(self) -> tuple[Path, Path, Path | None]:
        from recipe.compare.plots import plot_comparison

        plot = None
        curves: dict[str, list[dict]] = {}
        for r in self.results:
            if r.curves:
                curves.setdefault(r.method, []).append(r.curves)
        if curves:
            seeds = f"seed {self.seeds[0]}" if len(self.seeds) == 1 else f"{len(self.seeds)} seeds"
            title = f"chord-compare: {self.args.config_name}, {self.args.steps} steps, {seeds}"
            plot = plot_comparison(
                curves,
                self.out / "compare.png",
                title=title,
                smooth=self.window(),
                switch_steps={r.method: r.switch_steps for r in self.results},
            )
        json_path, md_path = write_tables(self.results, self.config(), self.out, plot, window=self.window())
        return json_path, md_path, plot

    def prepare(self) -> None:
        from recipe.compare.tasks import ASSET_CONFIGS, prepare_assets

        workdir = Path(self.env["CHORD_WORKDIR"])
        if self.args.config_name in ASSET_CONFIGS:
            print(f"chord-compare: model and data of {self.args.config_name} in {workdir} (kept if built)")
        built = prepare_assets(
            self.args.config_name, workdir, lambda: compose_config(self.args.config_name, self.overrides)
        )
        if built:
            print(f"chord-compare: {built}", flush=True)

    def run(self, methods: list[str]) -> int:
        self.plans = [plan_method(m, self.args.steps, self.args.sft_fraction) for m in methods]
        plans = {p.name: p for p in self.plans}
        self.prepare()
        per_seed = sum(p.steps for p in self.plans)
        total = per_seed * len(self.seeds)
        seeds = (
            f"seed {self.seeds[0]}" if len(self.seeds) == 1 else f"seeds {self.seeds[0]}..{self.seeds[-1]}"
        )
        print(
            f"chord-compare: {len(self.plans)} methods x {self.args.steps} steps"
            + (f" x {len(self.seeds)} seeds" if len(self.seeds) > 1 else "")
            + f" ({total} steps) on --config-name {self.args.config_name}, {seeds} -> {self.out}",
            flush=True,
        )
        self.sweeps = self.plan_sweeps()
        launches = launch_order(methods, self.seeds, set(self.sweeps))
        self.num_launches = len(launches)
        progress = Progress(total, len(self.plans) * len(self.seeds))
        report_order = [*((s, BASE_METHOD) for s in self.seeds), *run_order(methods, self.seeds)]
        position = {key: i for i, key in enumerate(report_order)}  # seed-major, swept or not
        if self.args.eval:
            base_cfg = compose_config(self.args.config_name, self.overrides)  # no run is going yet
            for seed in self.seeds:
                base = self.evaluate_base(seed, base_cfg)
                self.results.append(base)
                evals = ", ".join(f"{k} {v:.1f}%" for k, v in base.eval_acc.items()) or "failed"
                print(f"chord-compare: {BASE_METHOD} (the starting policy), seed {seed}: {evals}", flush=True)
        steps_done = 0
        stop = False
        with ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            pending: dict[Future, tuple[int, Launch]] = {}
            queue = list(enumerate(launches, 1))
            while queue or pending:
                while queue and not stop and len(pending) < self.args.jobs:
                    index, launch = queue.pop(0)
                    future = pool.submit(self.run_queued, plans[launch.method], launch, index, progress)
                    pending[future] = (index, launch)
                if not pending:
                    break
                try:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                except BaseException:  # Ctrl-C lands here, in the main thread: stop the runs too
                    self.cancel.set()
                    wait(pending)
                    raise
                for future in finished:
                    index, launch = pending.pop(future)
                    plan = plans[launch.method]
                    for result in future.result():
                        steps_done += plan.steps
                        progress.count_at_least(steps_done)  # count skipped steps of a failure
                        self.results.append(result)
                        self.results.sort(key=lambda r: position[(r.seed, r.method)])
                        self._announce(self.label(index, plan, result.seed), result, progress)
                        stop = stop or (result.status != "ok" and self.args.fail_fast)
                    self.write_report()
        return self.finish()

    def plan_sweeps(self) -> dict[str, tuple[list[str], Any]]:
        """The methods whose seeds run as one launch, with that launch's overrides and config;
        prints why the others (with --seeds > 1) get a launch per seed."""
        if len(self.seeds) == 1:
            return {}
        if not self.args.sweep:
            print("chord-compare: --no-sweep: one launch per (method, seed)", flush=True)
            return {}
        sweeps = {}
        for plan in self.plans:
            reason = why_not_swept(plan, len(self.seeds), self.args.sweep)
            if reason is None:
                overrides, cfg = self.sweep_config(plan)
                reason = sweep_refusal(cfg)
                if reason is None:
                    sweeps[plan.name] = (self.fix_micro_batch(plan.stages[0], overrides, cfg), cfg)
                    continue
            print(
                f"chord-compare: {plan.name}: a launch per seed, not one for all seeds: {reason}", flush=True
            )
        return sweeps

    def run_queued(
        self, plan: MethodPlan, launch: Launch, index: int, progress: Progress
    ) -> list[MethodResult]:
        """The results of one launch of the queue: a sweep's seeds, or one (method, seed) run."""
        if launch.is_sweep:
            return self.run_sweep(plan, index, progress)
        return [self.run_method(plan, launch.seeds[0], index, progress)]

    @staticmethod
    def _announce(label: str, result: MethodResult, progress: Progress) -> None:
        evals = ", ".join(f"eval {k} {v:.1f}%" for k, v in result.eval_acc.items())
        if result.status == "ok":
            print(
                f"{label} done in {result.wall_s:.0f} s: final reward "
                f"{result.final_reward:.3f} (last {result.last_k}), best {result.best_reward:.3f} "
                f"at step {result.best_step}" + (f", {evals}" if evals else "") + f" | {progress.overall()}",
                flush=True,
            )
        else:
            print(f"{label} failed: {result.error}", flush=True)

    def finish(self) -> int:
        json_path, md_path, plot = self.write_report()
        print("\n" + markdown_table(self.results), end="")
        if len(self.seeds) > 1:
            last_k = max((r.last_k for r in self.results), default=0)
            reach = time_to_reward(self.results, self.window())
            print(
                f"\nMean ± std over {len(self.seeds)} seeds:\n"
                + seed_table(seed_summary(self.results), reach, last_k),
                end="",
            )
        print(f"\nchord-compare: wrote {md_path}, {json_path}" + (f", {plot}" if plot else ""))
        return 0 if all(r.status == "ok" and r.error is None for r in self.results) else 1

    def report_only(self, methods: list[str]) -> int:
        self.plans = [plan_method(m, self.args.steps, self.args.sft_fraction) for m in methods]
        base = [(s, BASE_METHOD) for s in self.seeds if (self.run_dir(BASE_METHOD, s) / RESULT_FILE).exists()]
        for seed, name in [*base, *run_order(methods, self.seeds)]:
            path = self.run_dir(name, seed) / RESULT_FILE
            if not path.exists():
                raise FileNotFoundError(
                    f"--report-only: {path} is missing (run {name} with seed {seed} first)"
                )
            result = MethodResult(**json.loads(path.read_text()))
            if result.seed is None:  # a result.json from before --seeds
                result.seed = seed
            self.results.append(result)
        return self.finish()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    try:
        check_user_overrides(overrides)
        methods = parse_methods(args.methods, [*preset_methods(), SFT_THEN_RL])
        for name in methods:  # fail before the first run, not after an hour
            plan_method(name, args.steps, args.sft_fraction)
        if args.last_k < 1:
            raise ValueError(f"--last-k must be >= 1, got {args.last_k}")
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        seed_values(args.seed, args.seeds)
        comparison = Comparison(args, overrides, "chord-compare " + shlex.join(argv))
        if args.report_only:
            return comparison.report_only(methods)
        kept = [*methods, BASE_METHOD] if args.eval else methods
        check_no_seed_runs_lost(comparison.runs, kept, args.seeds)
        return comparison.run(methods)
    except (ValueError, FileNotFoundError) as exc:
        print(f"chord-compare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nchord-compare: interrupted; finished methods are in the report", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
