"""chord-submit against a real two-node Ray cluster on loopback.

A head (`ray start --head --block`, dashboard on: the job API lives there) and a second node
(`ray start --address=...`, with its own `node2` resource) run on this machine with free ports,
a private temp dir and token authentication. `chord-submit` ships the repository as the job's
working_dir; the job checks both nodes and what the upload left out. Both nodes are stopped in
the fixture's teardown, also when a test fails.

The job is a `SubmitJob`: PROBE_JOB today. When `chord-train --config-name cpu_tiny` runs on an
existing cluster, add a CPU_TINY_JOB to JOBS (its `args` build the chord-submit arguments, its
`check` asserts on the finished job; the cluster's logical GPUs/CPUs come from its fields).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = "tests/integration/ray_cluster_probe.py"  # relative: it runs from the uploaded copy
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class SubmitJob:
    """One job for the two-node cluster: chord-submit's arguments and the checks on the result."""

    name: str
    args: Callable[[Path, str], list[str]]  # (scratch dir, dummy checkpoint path) -> arguments
    check: Callable[[Path, str, str], None]  # (scratch dir, dummy checkpoint path, stdout)
    head_cpus: int = 2
    head_gpus: int = 0  # logical GPUs (the CPU preset asks Ray for "GPU" slots)
    worker_cpus: int = 1
    timeout_s: int = 150


def probe_args(scratch: Path, dummy: str) -> list[str]:
    """The job's entrypoint and its arguments: the Ray probe, with hydra-style overrides."""
    paths = ",".join([dummy, ".venv", ".git", "recipe/launch/submit.py", "conf"])
    return [
        "--entrypoint", f"python {PROBE}",
        "--env", f"CHORD_PROBE_OUT={scratch / 'report.json'}",
        "--env", "CHORD_PROBE_EXPECT_NODES=2",
        "--env", f"CHORD_PROBE_PATHS={paths}",
        "trainer.total_epochs=1",
        "--", "+probe.flag=x",
    ]  # fmt: skip


def probe_check(scratch: Path, dummy: str, stdout: str) -> None:
    report = json.loads((scratch / "report.json").read_text())
    assert report["alive_nodes"] == 2
    assert len(set(report["task_node_ids"])) == 2  # a task ran on each node
    assert report["argv"] == ["+probe.flag=x", "trainer.total_epochs=1"]
    # The upload left out the 5 MB checkpoint, the virtualenv and .git, and kept the code.
    assert report["exists"] == {
        dummy: False,
        ".venv": False,
        ".git": False,
        "recipe/launch/submit.py": True,
        "conf": True,
    }
    # The job runs from the unpacked copy, and imports our code from it.
    assert Path(report["cwd"]) != REPO
    assert report["slurm_helper_file"] == str(Path(report["cwd"]) / "recipe" / "launch" / "slurm.py")


PROBE_JOB = SubmitJob("probe", probe_args, probe_check)


def cpu_tiny_args(scratch: Path, dummy: str) -> list[str]:
    """The real trainer: `chord-train --config-name cpu_tiny` for 2 steps on the tiny model.

    Model and data live at an absolute path outside the upload (`outputs/` is excluded and a
    relative path would resolve inside the job's temporary copy of the repository).
    """
    from chord.prepare.tiny_task import generate_tiny_task
    from chord.tiny_model import build_tiny_model

    build_tiny_model(scratch / "model")
    generate_tiny_task(scratch / "data", num_train=64, num_val=16, num_expert=64, seed=0)
    return [
        "--env", f"CHORD_WORKDIR={scratch}",
        "--", "--config-name", "cpu_tiny",
        # the cluster exists already: Ray refuses resource arguments when joining it
        "ray_kwargs.ray_init.num_cpus=null", "ray_kwargs.ray_init.num_gpus=null",
        "trainer.total_training_steps=2", "trainer.save_freq=2", "trainer.test_freq=-1",
        "trainer.val_before_train=false", f"trainer.default_local_dir={scratch / 'checkpoints'}",
    ]  # fmt: skip


def cpu_tiny_check(scratch: Path, dummy: str, stdout: str) -> None:
    rows = [json.loads(line) for line in (scratch / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "chord/mu" in r["data"]]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["data"]["chord/expert_rows"] == 32 for r in steps)
    step_dir = scratch / "checkpoints" / "global_step_2"
    assert (step_dir / "actor").is_dir()
    assert json.loads((step_dir / "chord_state.json").read_text())["global_steps"] == 2


# Two logical GPUs (one per FSDP rank) and CPUs for the preset's {CPU: 3, GPU: 1} bundles.
CPU_TINY_JOB = SubmitJob("cpu_tiny", cpu_tiny_args, cpu_tiny_check, head_cpus=8, head_gpus=2, timeout_s=600)
JOBS = [PROBE_JOB, CPU_TINY_JOB]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (e.g. 401 without the token): the server is up
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@dataclass
class Cluster:
    env: dict
    dashboard: str
    temp_dir: Path
    gcs_port: int


def _terminate(proc: subprocess.Popen, tree: list[psutil.Process]) -> None:
    """SIGTERM `ray start --block` (it stops what it started), then kill what is left of `tree`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module", params=JOBS, ids=lambda job: job.name)
def cluster(request):
    job: SubmitJob = request.param
    if not (BIN / "ray").exists():
        pytest.skip(f"no ray CLI next to {sys.executable}")
    temp_dir = Path(tempfile.mkdtemp(prefix="chsub", dir="/tmp"))  # socket paths must stay short
    gcs, dashboard = _free_port(), _free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        # One auth mode for every process; Ray 2.60 would switch the head alone to token mode
        # when a ~/.ray/auth_token exists.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "3",
    }
    env.pop("RAY_ADDRESS", None)
    common = ["--block", "--disable-usage-stats", "--object-store-memory=100000000"]
    head_cmd = [
        str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--num-cpus={job.head_cpus}", f"--num-gpus={job.head_gpus}", f"--temp-dir={temp_dir}",
        f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
        f"--metrics-export-port={_free_port()}", *common,
    ]  # fmt: skip
    worker_cmd = [
        str(BIN / "ray"), "start", f"--address=127.0.0.1:{gcs}", "--node-ip-address=127.0.0.1",
        f"--num-cpus={job.worker_cpus}", "--resources={\"node2\": 1}",
        f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}", *common,
    ]  # fmt: skip
    procs: list[tuple[subprocess.Popen, list[psutil.Process]]] = []
    logs = [open(temp_dir / name, "wb") for name in ("head.log", "worker.log")]
    try:
        head = subprocess.Popen(head_cmd, env=env, stdout=logs[0], stderr=subprocess.STDOUT)
        procs.append((head, []))
        wait = [sys.executable, str(REPO / "recipe" / "launch" / "slurm.py"), "wait-nodes"]
        address = [f"--address=127.0.0.1:{gcs}", "--timeout=90"]
        subprocess.run([*wait, *address, "--expected=1"], env=env, check=True, capture_output=True)
        worker = subprocess.Popen(worker_cmd, env=env, stdout=logs[1], stderr=subprocess.STDOUT)
        procs.append((worker, []))
        subprocess.run([*wait, *address, "--expected=2"], env=env, check=True, capture_output=True)
        _wait_http(f"http://127.0.0.1:{dashboard}/api/version", 60)
        yield job, Cluster(env, f"http://127.0.0.1:{dashboard}", temp_dir, gcs)
    except subprocess.CalledProcessError as exc:
        pytest.fail(
            f"the two-node Ray cluster did not come up: {exc.stderr.decode()[-2000:]}\n"
            + (temp_dir / "head.log").read_text()[-3000:]
        )
    finally:
        for proc, tree in reversed(procs):
            if proc.poll() is None:
                tree.extend(psutil.Process(proc.pid).children(recursive=True))
            _terminate(proc, tree)
        for log in logs:
            log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def dummy_checkpoint():
    """A 5 MB fake checkpoint inside the repository, where a real run would leave one."""
    rel = f"checkpoints/chord-submit-test-{uuid.uuid4().hex[:8]}/model.safetensors"
    path = REPO / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(5 * 2**20))
    yield rel
    shutil.rmtree(path.parent, ignore_errors=True)


def _chord_submit() -> list[str]:
    script = BIN / "chord-submit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "recipe.launch.submit"]


def test_submit_ships_the_repo_without_checkpoints_and_runs_on_both_nodes(
    cluster, dummy_checkpoint, tmp_path
):
    job, ray_cluster = cluster
    env = {
        **ray_cluster.env,
        # Only chord-submit's own excludes may keep the checkpoint out, not our .gitignore.
        "RAY_RUNTIME_ENV_IGNORE_GITIGNORE": "1",
    }
    cmd = [
        *_chord_submit(),
        f"--address={ray_cluster.dashboard}",
        f"--timeout={job.timeout_s}",
        *job.args(tmp_path, dummy_checkpoint),
    ]
    # From another directory: the working_dir is still the repository root.
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=job.timeout_s + 60
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    job_id = next(
        line.split()[3] for line in proc.stdout.splitlines() if line.startswith("Submitted Ray job")
    )
    assert f"ray job logs -f {job_id} --address {ray_cluster.dashboard}" in proc.stdout
    assert f"Job {job_id} SUCCEEDED" in proc.stdout
    # The driver log is where chord-submit says (under this cluster's --temp-dir).
    driver_log = ray_cluster.temp_dir / "session_latest" / "logs" / f"job-driver-{job_id}.log"
    assert f"/tmp/ray/session_latest/logs/job-driver-{job_id}.log" in proc.stdout
    assert driver_log.is_file() and driver_log.stat().st_size > 0
    job.check(tmp_path, dummy_checkpoint, proc.stdout)


def test_submit_no_wait_returns_at_once_and_wait_reports_a_failing_job(cluster, tmp_path):
    job, ray_cluster = cluster
    failing = ["--entrypoint", "python -c 'import sys; sys.exit(3)'"]
    base = [*_chord_submit(), f"--address={ray_cluster.dashboard}", *failing]
    run = dict(cwd=tmp_path, env=ray_cluster.env, capture_output=True, text=True, timeout=150)

    no_wait = subprocess.run([*base, "--no-wait"], **run)
    assert no_wait.returncode == 0, no_wait.stdout + no_wait.stderr
    assert "Submitted Ray job" in no_wait.stdout
    assert "SUCCEEDED" not in no_wait.stdout and "FAILED" not in no_wait.stdout  # it did not wait

    waited = subprocess.run([*base, "--timeout=120"], **run)
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert waited.stdout.rstrip().endswith("FAILED")
