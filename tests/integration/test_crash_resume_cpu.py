"""Crashes and resumes of the real CPU trainer: nothing of the record or the checkpoints is lost.

One story, the same `chord-train` command every time (tiny model, 4 steps, checkpoint every 2),
the job in its own process group:

1. `kill -9` of the whole job after step 3 is logged (last checkpoint: step 2);
2. rerun with a NaN log-prob injected into an expert row at step 3 (test hook): a named stop;
3. rerun, and kill one FSDP rank's process while step 3 runs again: a named stop, in bounded
   time;
4. rerun, and kill a rollout server (the `hf` replica's Ray actor) before step 3 generates: a
   named stop, in bounded time;
5. a half-written checkpoint of step 4 appears (actor files and tracker, no `chord_state.json`:
   the crash came between them); rerun with `chord.on_nonfinite=skip` and a NaN injected at
   step 4: it resumes from step 2, skips step 4's poisoned update (counted) and finishes.

After each phase the record holds every step once, in order; the final record's step 3 equals
the one of the uninterrupted first run: mu, expert rows served, rollouts (the hf rollout seeds
each row's sample from seed, step, row and prompt), rewards and every loss.
Two quick checks run the entry point only (it refuses before Ray starts): an incomplete
`resume_from_path` and a truncated expert file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recipe.train.stops import EXIT_CODE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STEPS = 4
DEAD_WORKER_BOUND_S = 240  # from the kill to the job's exit


def _command(run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "recipe.train.main",
        "--config-name",
        "cpu_tiny",
        "method=chord_phi",
        f"trainer.total_training_steps={STEPS}",
        "trainer.save_freq=2",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={run_dir / 'metrics.jsonl'}",
        "trainer.test_freq=-1",
        "trainer.val_before_train=false",
        *extra,
    ]


def _record(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return rows


def _steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in _record(run_dir)]


class Job:
    """`chord-train` in its own process group, its output in `run_dir/phase<N>.log`."""

    def __init__(self, workdir: Path, run_dir: Path, phase: int, *extra: str, env: dict | None = None):
        self.log_path = run_dir / f"phase{phase}.log"
        self.workdir_marker = f"CHORD_WORKDIR={workdir}".encode()  # tells this job's processes apart
        self.log = open(self.log_path, "w")
        environ = dict(os.environ, CHORD_WORKDIR=str(workdir), RAY_DEDUP_LOGS="0", **(env or {}))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            _command(run_dir, *extra), cwd=REPO, env=environ, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_for(self, condition, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"the job ended early:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, "timed out waiting"
            time.sleep(0.2)

    def kill_all(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout: float = 900) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def rollout_server_pids(self) -> list[int]:
        """The `hf` rollout servers of this job (Ray sets each actor process's title)."""
        pids = []
        for proc in Path("/proc").iterdir():
            try:
                title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                environ = (proc / "environ").read_bytes()
            except (OSError, ValueError):
                continue
            if title.startswith("ray::HFGenerationServer") and self.workdir_marker in environ:
                pids.append(int(proc.name))
        return sorted(pids)

    def fsdp_rank_pids(self) -> list[int]:
        """The actor workers (verl's colocated `WorkerDict`s) that are alive, from Ray's log prefixes."""
        pids = {int(pid) for pid in re.findall(r"WorkerDict pid=(\d+)", self.output())}
        return sorted(pid for pid in pids if Path(f"/proc/{pid}").exists())


@pytest.fixture(scope="module")
def story(workdir, tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("story")
    ckpt = run_dir / "checkpoints"
    out: dict = {"run_dir": run_dir}

    # 1. kill -9 of the whole job once step 3 is logged
    job = Job(workdir, run_dir, 1)
    job.wait_for(lambda: 3 in _steps(run_dir))
    job.kill_all()
    out["killed"] = {"record": _record(run_dir), "at_s": time.monotonic() - job.started}

    # 2. a NaN log-prob in an expert row at step 3
    job = Job(workdir, run_dir, 2, env={"CHORD_TEST_NONFINITE": "3:expert"})
    out["nan"] = {"rc": job.finish(), "log": job.output(), "record": _record(run_dir)}

    # 3. one FSDP rank killed while step 3 of the resumed run is under way
    job = Job(workdir, run_dir, 3)
    job.wait_for(lambda: "Training Progress:  50%" in job.output())  # resumed at 2 of 4: step 3 begins
    victim = job.fsdp_rank_pids()[-1]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    rc = job.finish(timeout=DEAD_WORKER_BOUND_S + 60)
    out["dead_rank"] = {"rc": rc, "log": job.output(), "pid": victim, "exit_s": time.monotonic() - killed_at}
    out["dead_rank"]["record"] = _record(run_dir)

    # 4. a rollout server killed before the resumed run's step 3 generates
    job = Job(workdir, run_dir, 4)
    job.wait_for(lambda: "Training Progress:  50%" in job.output() and job.rollout_server_pids())
    victim = job.rollout_server_pids()[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    rc = job.finish(timeout=DEAD_WORKER_BOUND_S + 60)
    exit_s = time.monotonic() - killed_at
    out["dead_server"] = {"rc": rc, "log": job.output(), "pid": victim, "exit_s": exit_s}
    out["dead_server"]["record"] = _record(run_dir)

    # 5. a half-written step-4 checkpoint (the crash came after the tracker, before chord_state.json);
    # the rerun skips non-finite updates and meets one at step 4
    shutil.copytree(ckpt / "global_step_2" / "actor", ckpt / "global_step_4" / "actor")
    (ckpt / "latest_checkpointed_iteration.txt").write_text("4")
    job = Job(workdir, run_dir, 5, "chord.on_nonfinite=skip", env={"CHORD_TEST_NONFINITE": "4:expert"})
    started = time.monotonic()
    out["final"] = {"rc": job.finish(), "log": job.output(), "wall_s": time.monotonic() - started}
    out["final"]["record"] = _record(run_dir)
    (run_dir / "story.json").write_text(
        json.dumps({k: v for k, v in out.items() if k != "run_dir"}, default=str)
    )
    return out


def _by_step(rows: list[dict]) -> dict[int, dict]:
    return {r["step"]: r["data"] for r in rows}


def test_kill_9_keeps_the_record_and_the_resumed_step_equals_the_uninterrupted_one(story):
    killed = _by_step(story["killed"]["record"])
    final = story["final"]
    assert final["rc"] == 0, final["log"][-4000:]
    assert [r["step"] for r in final["record"]] == [1, 2, 3, 4]  # every step once, in order
    resumed = _by_step(final["record"])
    for step in (1, 2):  # logged before the crash: kept as they were
        assert resumed[step] == killed[step]
    # step 3 was re-run from the step-2 checkpoint: the same mu, expert rows, rollouts (the same
    # responses and scores) and weights, so the same losses
    for key in ("chord/mu", "chord/expert_fingerprint", "chord/expert_epoch", "chord/expert_rows"):
        assert resumed[3][key] == killed[3][key], key
    for key in ("response_length/mean", "response_length/max", "critic/score/mean", "critic/advantages/mean"):
        assert resumed[3][key] == pytest.approx(killed[3][key], rel=1e-6, abs=1e-7), key
    for key in ("actor/pg_loss", "actor/sft_loss", "actor/expert_p_mean", "actor/phi_mean", "actor/entropy"):
        assert resumed[3][key] == pytest.approx(killed[3][key], rel=1e-4, abs=1e-7), key
    assert resumed[4]["chord/expert_epoch"] == pytest.approx(2.0)  # 4 steps x 32 rows of 64


def test_half_written_checkpoint_is_not_resumed_from(story):
    log = story["final"]["log"]
    ckpt = story["run_dir"] / "checkpoints"
    assert f"the tracker names {ckpt / 'global_step_4'}, which is incomplete" in log
    assert f"resuming from {ckpt / 'global_step_2'}, the newest complete checkpoint" in log
    for step in (2, 4):
        state = json.loads((ckpt / f"global_step_{step}" / "chord_state.json").read_text())
        assert state["global_steps"] == step and state["files"]
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "4"


def test_non_finite_log_prob_stops_naming_term_step_and_expert_row(story):
    nan = story["nan"]
    assert nan["rc"] == EXIT_CODE, nan["log"][-4000:]
    line = next(line for line in nan["log"].splitlines() if line.startswith("chord-train: stopped:"))
    assert "non-finite loss at step 3" in line and "sft" in line
    assert "expert row " in line and "expert.parquet (log_probs)" in line
    assert "global_step_2" in line and "chord.on_nonfinite=skip" in line
    assert [r["step"] for r in nan["record"]] == [1, 2]  # the earlier record is intact
    assert not (story["run_dir"] / "checkpoints" / "global_step_3").exists()


def test_dead_fsdp_rank_ends_the_job_naming_it(story):
    dead = story["dead_rank"]
    assert dead["rc"] == EXIT_CODE, dead["log"][-4000:]
    assert dead["exit_s"] < DEAD_WORKER_BOUND_S
    line = next(line for line in dead["log"].splitlines() if line.startswith("chord-train: stopped:"))
    assert "a worker of the job died at step 3" in line
    assert "actor_rollout worker rank" in line and f"pid {dead['pid']}" in line
    assert "The same command resumes from" in line and "global_step_2" in line
    assert [r["step"] for r in dead["record"]] == sorted({r["step"] for r in dead["record"]})


def test_dead_rollout_server_ends_the_job_naming_it(story):
    dead = story["dead_server"]
    assert dead["rc"] == EXIT_CODE, dead["log"][-4000:]
    assert dead["exit_s"] < DEAD_WORKER_BOUND_S
    line = next(line for line in dead["log"].splitlines() if line.startswith("chord-train: stopped:"))
    assert "a worker of the job died at step 3" in line
    assert "the hf rollout server (replica" in line and f"pid {dead['pid']}" in line
    assert "The same command resumes from" in line and "global_step_2" in line
    assert [r["step"] for r in dead["record"]] == [1, 2]


def test_skip_mode_skips_the_poisoned_update_and_finishes(story):
    final = _by_step(story["final"]["record"])
    assert final[4]["chord/nonfinite_skipped"] >= 1  # step 4's poisoned micro-batch: its update skipped
    assert final[4]["chord/nonfinite_skipped_total"] == final[4]["chord/nonfinite_skipped"]
    assert final[3]["chord/nonfinite_skipped"] == 0
    assert "chord-train: stopped:" not in story["final"]["log"]


def _entry_point(workdir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CHORD_WORKDIR=str(workdir))
    cmd = [
        sys.executable,
        "-m",
        "recipe.train.main",
        "--config-name",
        "cpu_tiny",
        "method=chord_phi",
        *overrides,
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_resume_from_an_incomplete_folder_is_refused_before_ray_starts(story, workdir, tmp_path):
    ckpt = tmp_path / "checkpoints"
    shutil.copytree(story["run_dir"] / "checkpoints", ckpt)
    (ckpt / "global_step_4" / "chord_state.json").unlink()
    proc = _entry_point(
        workdir,
        f"trainer.default_local_dir={ckpt}",
        "trainer.resume_mode=resume_path",
        f"trainer.resume_from_path={ckpt / 'global_step_4'}",
    )
    assert proc.returncode == EXIT_CODE, proc.stderr[-3000:]
    assert f"checkpoint {ckpt / 'global_step_4'} is incomplete" in proc.stderr
    assert f"trainer.resume_from_path={ckpt / 'global_step_2'} instead" in proc.stderr


def test_truncated_expert_file_is_named_at_resume(story, workdir, tmp_path):
    import pyarrow.parquet as pq

    ckpt = tmp_path / "checkpoints"
    shutil.copytree(story["run_dir"] / "checkpoints", ckpt)
    expert = tmp_path / "expert.parquet"
    pq.write_table(pq.read_table(workdir / "data" / "expert.parquet").slice(0, 40), expert)
    proc = _entry_point(workdir, f"trainer.default_local_dir={ckpt}", f"chord.expert.files=[{expert}]")
    assert proc.returncode == EXIT_CODE, proc.stderr[-3000:]
    assert (
        f"{expert}: truncated: now" in proc.stderr and "40 rows" in proc.stderr and "64 rows" in proc.stderr
    )
    assert "chord.expert.accept_changed_files=true" in proc.stderr
