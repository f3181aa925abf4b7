"""scripts/slurm/chord.sbatch under a real Slurm: a private two-node cluster on this machine.

The fixture starts its own munged, slurmctld and two slurmd daemons (``slurmd -N``, both on
this host, each its own Slurm node) from a temporary slurm.conf, so it touches no system
configuration. It needs the Debian/Ubuntu packages ``slurm-wlm`` and ``munge`` and root (slurmd
starts jobs as the submitting user); without them the tests skip.

The batch script's training command is the Ray probe (CHORD_TRAIN_CMD), which checks that both
Ray nodes joined and run tasks. A real `ray stop` would stop every Ray process of this user on
the machine, other people's included, so the tests check the script's SIGTERM stop path for
real and its per-node `ray stop` steps through a `ray` wrapper that only records `ray stop`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
SBATCH_SCRIPT = REPO / "scripts" / "slurm" / "chord.sbatch"
PROBE = Path(__file__).resolve().parent / "ray_cluster_probe.py"
NODES = ("chordt1", "chordt2")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "sinfo", "scancel")

pytestmark = pytest.mark.slow


def _find(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None
    )


def _skip_reason() -> str | None:
    missing = [name for name in (*DAEMONS, *CLIENTS) if not _find(name)]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a private Slurm cluster needs root (slurmd starts jobs as the submitting user)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slurm_conf(root: Path, munge_socket: Path, host: str) -> str:
    ctld, slurmd_ports = _free_port(), [_free_port() for _ in NODES]
    nodes = "\n".join(
        f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
        f"CPUs={os.cpu_count()} RealMemory=1000 State=UNKNOWN"
        for name, port in zip(NODES, slurmd_ports, strict=True)
    )
    return f"""\
ClusterName=chordtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
{nodes}
PartitionName=chordtest Nodes={",".join(NODES)} Default=YES MaxTime=30 State=UP
"""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """Environment (SLURM_CONF, PATH) of a running two-node private Slurm cluster."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "log", "munge", *(f"spool/{n}" for n in NODES)):
        (root / sub).mkdir(parents=True)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = root / "munge" / "socket"
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, munge_socket, socket.gethostname()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"

    procs: list[subprocess.Popen] = []

    def start(argv: list[str], log: str) -> None:
        with open(root / "log" / log, "wb") as out:
            procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))

    try:
        start(
            [_find("munged"), "--foreground", "--force", f"--socket={munge_socket}",
             f"--key-file={key}", f"--pid-file={root}/munge/pid", f"--seed-file={root}/munge/seed",
             f"--log-file={root}/log/munged.log"],
            "munged.out",
        )  # fmt: skip
        _wait_for(lambda: munge_socket.exists(), 20, "munged socket", root)
        start([_find("slurmctld"), "-D", "-i", "-f", str(conf)], "slurmctld.out")
        time.sleep(1)
        for node in NODES:
            start([_find("slurmd"), "-D", "-N", node, "-f", str(conf)], f"slurmd-{node}.out")

        def idle() -> bool:
            out = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%N %t"], env=env, capture_output=True, text=True
            ).stdout
            states = dict(line.split() for line in out.splitlines() if line.strip())
            return all(states.get(node) == "idle" for node in NODES)

        _wait_for(idle, 60, "both Slurm nodes idle", root)
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--partition=chordtest"], env=env, capture_output=True)
        for proc in reversed(procs):
            _stop(proc)


def _wait_for(ready, timeout: float, what: str, root: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((root / "log").iterdir())
            )
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.5)


def _ray_processes(port: int) -> list[str]:
    """Command lines of live processes that belong to the Ray cluster on `port`."""
    pattern = re.compile(rf"[:=]{port}\b")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "ray" in cmdline and pattern.search(cmdline):
            found.append(cmdline[:200])
    return found


@pytest.fixture
def ray_tmp():
    """A short temp dir for Ray: its socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="chray", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run_sbatch(cluster_env: dict, tmp_path: Path, ray_tmp: Path, train_args: list[str], **extra_env: str):
    """sbatch --wait the launcher with the probe as training command; returns (rc, output, port)."""
    ray_port = _free_port()
    ports = {name: _free_port() for name in ("client", "agent1", "agent2", "metrics1", "metrics2")}
    env = {
        **cluster_env,
        "CHORD_TRAIN_CMD": f"{sys.executable} {PROBE}",
        "CHORD_PROBE_OUT": str(tmp_path / "probe.json"),
        "CHORD_PROBE_EXPECT_NODES": str(len(NODES)),
        "CHORD_PYTHON": sys.executable,
        "CHORD_LOG_DIR": str(tmp_path / "logs"),
        "CHORD_RAY_PORT": str(ray_port),
        "CHORD_RAY_DASHBOARD": "0",
        "CHORD_RAY_STOP": "0",
        "CHORD_WAIT_TIMEOUT": "90",
        "CHORD_STOP_GRACE": "40",
        # Both "nodes" share this host (and its ports) and may share it with other Ray users:
        # a private temp dir and free ports keep the clusters apart.
        "CHORD_RAY_HEAD_ARGS": (
            f"--temp-dir={ray_tmp} --ray-client-server-port={ports['client']} "
            f"--dashboard-agent-listen-port={ports['agent1']} --metrics-export-port={ports['metrics1']}"
        ),
        "CHORD_RAY_WORKER_ARGS": (
            f"--dashboard-agent-listen-port={ports['agent2']} --metrics-export-port={ports['metrics2']}"
        ),
        "CHORD_RAY_START_ARGS": "--object-store-memory=100000000",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "3",  # Ray's default waits 30 s on SIGTERM
        **extra_env,
    }
    env.pop("RAY_ADDRESS", None)
    output = tmp_path / "job.out"
    proc = subprocess.run(
        ["sbatch", "--wait", f"--nodes={len(NODES)}", f"--output={output}", f"--chdir={REPO}",
         str(SBATCH_SCRIPT), *train_args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    text = output.read_text() if output.exists() else ""
    return proc.returncode, f"{proc.stdout}{proc.stderr}\n--- job output\n{text}", ray_port


def _recording_ray_stop(tmp_path: Path) -> tuple[Path, Path]:
    """A folder whose `ray` records `ray stop` (node name) and runs every other command."""
    bin_dir, record = tmp_path / "bin", tmp_path / "ray-stop.txt"
    bin_dir.mkdir()
    wrapper = bin_dir / "ray"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = stop ]; then echo "$SLURMD_NODENAME" >> {record}; exit 0; fi\n'
        f'exec {Path(sys.executable).parent / "ray"} "$@"\n'
    )
    wrapper.chmod(0o755)
    return bin_dir, record


def test_sbatch_starts_two_node_ray_cluster_runs_training_and_stops_ray(slurm_cluster, tmp_path, ray_tmp):
    bin_dir, ray_stop_record = _recording_ray_stop(tmp_path)
    env = {**slurm_cluster, "PATH": f"{bin_dir}{os.pathsep}{slurm_cluster['PATH']}"}
    rc, output, ray_port = _run_sbatch(
        env,
        tmp_path,
        ray_tmp,
        ["--config-name", "cpu_tiny", "trainer.total_epochs=1", "+probe.flag=x"],
        CHORD_RAY_STOP="1",
    )
    assert rc == 0, output
    report = json.loads((tmp_path / "probe.json").read_text())
    assert report["alive_nodes"] == 2
    assert len(set(report["task_node_ids"])) == 2, report
    # hydra overrides pass through; nnodes / GPUs come from the allocation, placed so that
    # hydra still parses them (an option first, then one run of overrides).
    assert report["argv"] == [
        "--config-name",
        "cpu_tiny",
        "trainer.nnodes=2",
        "trainer.n_gpus_per_node=0",
        "trainer.total_epochs=1",
        "+probe.flag=x",
    ]
    plan = tmp_path / "logs" / "plan"
    assert (plan / "ray-head.argv").exists() and (plan / f"ray-worker-{NODES[1]}.argv").exists()
    assert "Ray stopped" in output
    # `ray stop` ran once on each node, as an overlapping step next to the Ray steps.
    assert sorted(ray_stop_record.read_text().split()) == sorted(NODES), output
    # Every Ray process of this job is gone once sbatch returns.
    assert _ray_processes(ray_port) == [], output


def test_sbatch_fails_loudly_when_a_worker_cannot_join_and_still_stops_the_head(
    slurm_cluster, tmp_path, ray_tmp
):
    rc, output, ray_port = _run_sbatch(
        slurm_cluster, tmp_path, ray_tmp, [], CHORD_RAY_WORKER_ARGS="--no-such-ray-flag"
    )
    assert rc != 0, output
    assert f"Ray on {NODES[1]} exited before the cluster was complete" in output
    assert not (tmp_path / "probe.json").exists()  # training never started
    assert "Ray stopped" in output
    assert _ray_processes(ray_port) == [], output


def test_python_nodelist_parser_matches_scontrol(slurm_cluster):
    from recipe.launch.slurm import parse_nodelist

    nodelists = (
        "node[01-03,07],gpu-a[1-2]",
        "r[1-2]-n[08-10]",
        "a1,b[9-11]",
        "n[99-101]",
        "x[7,9-10]",
        "one",
    )
    for nodelist in nodelists:
        scontrol = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            env=slurm_cluster, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert parse_nodelist(nodelist) == scontrol
