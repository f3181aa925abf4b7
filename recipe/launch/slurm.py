"""Launch helpers for multi-node runs: Slurm node lists, head IP, container wrapping, Ray commands.

Standard library only (``wait-nodes`` imports Ray lazily), so the Slurm batch script can run it
with the host's ``python3`` as a plain file, before any container or virtual environment::

    python3 recipe/launch/slurm.py slurm-plan --out DIR -- [hydra overrides...]

``slurm-plan`` reads the Slurm job's environment and the ``CHORD_*`` variables and writes every
command the batch script runs into DIR: ``<name>.argv`` files (arguments separated by NUL, for
``mapfile -d ''``), ``env.sh`` (shell-quoted scalars) and ``plan.txt`` (the commands, readable).
The shell script stays a thin loop over those files; all decisions are made, and unit tested, here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RAY_PORT = 6379
DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_WAIT_TIMEOUT_S = 300
DEFAULT_STOP_GRACE_S = 60
CONTAINER_RUNTIMES = ("apptainer", "singularity", "docker")
# Variables a Docker container receives from the batch environment (Apptainer passes the
# whole host environment by itself). CUDA_VISIBLE_DEVICES is left out on purpose: inside the
# container the GPUs given by `--gpus` are renumbered from 0.
DOCKER_ENV_PREFIXES = (
    "CHORD_",
    "NCCL_",
    "GLOO_",
    "RAY_",
    "HF_",
    "HUGGING_FACE_",
    "TRANSFORMERS_",
    "WANDB_",
    "VLLM_",
    "TORCH_",
    "PYTORCH_",
    "OMP_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
)


class LaunchError(RuntimeError):
    """A launch setting that cannot work; the message names the variable to fix."""


# --------------------------------------------------------------------------- Slurm node lists


def parse_nodelist(nodelist: str) -> list[str]:
    """Expand a Slurm hostlist expression without Slurm, e.g. ``node[01-03,07],gpu-a[1-2]``.

    Zero padding follows the range's first number (``[08-10]`` -> 08, 09, 10); several bracket
    groups in one name expand as a product, the first group outermost (as ``scontrol`` does).
    """
    names: list[str] = []
    for item in _split_top_level(nodelist.strip(), nodelist):
        names.extend(_expand_item(item, nodelist))
    return names


def _split_top_level(text: str, whole: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise LaunchError(f"nested '[' in node list {whole!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise LaunchError(f"unbalanced ']' in node list {whole!r}")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise LaunchError(f"unbalanced '[' in node list {whole!r}")
    items.append(text[start:])
    if any(not item.strip() for item in items):
        raise LaunchError(f"empty name in node list {whole!r}")
    return [item.strip() for item in items]


def _expand_item(item: str, whole: str) -> list[str]:
    match = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
    if not match:
        return [item]
    prefix, ranges, rest = match.groups()
    tails = _expand_item(rest, whole) if rest else [""]
    return [prefix + number + tail for number in _expand_ranges(ranges, whole) for tail in tails]


def _expand_ranges(ranges: str, whole: str) -> list[str]:
    numbers: list[str] = []
    for part in ranges.split(","):
        part = part.strip()
        if re.fullmatch(r"\d+", part):
            numbers.append(part)
            continue
        bounds = re.fullmatch(r"(\d+)-(\d+)", part)
        if not bounds:
            raise LaunchError(f"bad range {part!r} in node list {whole!r}")
        low, high = bounds.groups()
        if int(high) < int(low):
            raise LaunchError(f"descending range {part!r} in node list {whole!r}")
        numbers.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
    return numbers


def expand_nodelist(nodelist: str, use_scontrol: bool = True) -> list[str]:
    """Node names of a hostlist: ``scontrol show hostnames`` when it works, else `parse_nodelist`."""
    if use_scontrol and shutil.which("scontrol"):
        try:
            out = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.split()
            if out:
                return out
        except (subprocess.SubprocessError, OSError):
            pass
    return parse_nodelist(nodelist)


def parse_counts_per_node(spec: str, num_nodes: int, what: str = "SLURM_JOB_CPUS_PER_NODE") -> list[int]:
    """Expand Slurm's compressed per-node counts, ``"8(x2),4"`` -> ``[8, 8, 4]``."""
    counts: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            raise LaunchError(f"cannot read {what}={spec!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    if len(counts) != num_nodes:
        raise LaunchError(f"{what}={spec!r} describes {len(counts)} nodes, the job has {num_nodes}")
    return counts


def job_nodes(env: Mapping[str, str], use_scontrol: bool = True) -> list[str]:
    """The job's nodes in Slurm's order (the order of SLURM_JOB_CPUS_PER_NODE)."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise LaunchError("SLURM_JOB_NODELIST is not set: run this inside a Slurm job (sbatch)")
    return expand_nodelist(nodelist, use_scontrol=use_scontrol)


def head_first(nodes: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """`nodes` with the head first: the node the batch script runs on (SLURMD_NODENAME)."""
    here = env.get("SLURMD_NODENAME")
    return [here, *(n for n in nodes if n != here)] if here in nodes else list(nodes)


def gpus_per_node(env: Mapping[str, str]) -> int:
    """GPUs on each node: CHORD_GPUS_PER_NODE, else what Slurm allocated, else 0.

    SLURM_GPUS_ON_NODE is a count; SLURM_GPUS_PER_NODE echoes the request (``4``, ``a100:4``,
    ``a100:2,v100:2``).
    """
    for name in ("CHORD_GPUS_PER_NODE", "SLURM_GPUS_ON_NODE"):
        value = env.get(name, "").strip()
        if value:
            if not value.isdigit():
                raise LaunchError(f"{name}={value!r} is not a whole number")
            return int(value)
    request = env.get("SLURM_GPUS_PER_NODE", "").strip()
    if request:
        total = 0
        for part in request.split(","):
            count = part.rsplit(":", 1)[-1]
            if not count.isdigit():
                raise LaunchError(f"cannot read SLURM_GPUS_PER_NODE={request!r}")
            total += int(count)
        return total
    return 0


# --------------------------------------------------------------------------- addresses


def _usable_ipv4(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.version == 4 and not (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def interface_ipv4(ifname: str) -> str:
    """IPv4 address of a network interface (Linux), e.g. ``interface_ipv4("ib0")``."""
    import fcntl  # Linux/Unix only; imported here so the module imports everywhere
    import struct

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", ifname[:15].encode()))
        except OSError as exc:
            names = ", ".join(name for _, name in socket.if_nameindex())
            raise LaunchError(
                f"CHORD_SOCKET_IFNAME={ifname!r}: no IPv4 address on that interface here "
                f"({exc.strerror}); interfaces on {socket.gethostname()}: {names}"
            ) from exc
    return socket.inet_ntoa(packed[20:24])


def _resolved_ipv4(hostname: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(hostname, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return []
    return [info[4][0] for info in infos]


def _route_ipv4(probe: str = "10.255.255.255") -> list[str]:
    # Connecting a UDP socket sends nothing; it only asks the kernel which source address
    # it would use, i.e. the address of the interface that carries the default route.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 1))
            return [sock.getsockname()[0]]
    except OSError:
        return []


def pick_head_ip(
    env: Mapping[str, str],
    hostname: str | None = None,
    resolve=_resolved_ipv4,
    route=_route_ipv4,
    interface=interface_ipv4,
) -> str:
    """The address other nodes use to reach this (head) node.

    Order: CHORD_HEAD_IP; the IPv4 of CHORD_SOCKET_IFNAME (the interface NCCL/Gloo are told to
    use); the host name's IPv4 addresses; the default-route address. Loopback and link-local
    (169.254.x, verl issue #726) addresses are never picked, and IPv6 is skipped.
    """
    explicit = env.get("CHORD_HEAD_IP", "").strip()
    if explicit:
        ipaddress.IPv4Address(explicit)  # a clear ValueError for a typo
        return explicit
    ifname = env.get("CHORD_SOCKET_IFNAME", "").strip()
    if ifname:
        return interface(ifname)
    hostname = hostname or socket.getfqdn()
    for candidate in [*resolve(hostname), *route()]:
        if _usable_ipv4(candidate):
            return candidate
    raise LaunchError(
        f"could not find a routable IPv4 address for {hostname}: set CHORD_SOCKET_IFNAME to the "
        "cluster network interface (e.g. ib0, eth0) or CHORD_HEAD_IP"
    )


# --------------------------------------------------------------------------- hydra overrides


def override_key(arg: str) -> str | None:
    """The config key a hydra override sets (``+a.b=1`` -> ``a.b``); None for options/values."""
    if arg.startswith("-"):
        return None
    if "=" not in arg and not arg.startswith("~"):
        return None
    return arg.split("=", 1)[0].lstrip("+~")


def merge_overrides(defaults: Sequence[str], user_args: Sequence[str]) -> list[str]:
    """User arguments plus the `defaults` whose key the user did not set.

    Hydra rejects an override list split by an option (``a=1 --config-name x b=2``), so the
    defaults go just before the user's first override, or last when there is none.
    """
    user_keys = {override_key(arg) for arg in user_args} - {None}
    extra = [arg for arg in defaults if override_key(arg) not in user_keys]
    first = next((i for i, arg in enumerate(user_args) if override_key(arg) is not None), len(user_args))
    return [*user_args[:first], *extra, *user_args[first:]]


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class Container:
    """How to run a command inside the job's image (Apptainer/Singularity or Docker).

    The repository is bind-mounted at its own path, used as working directory and put first on
    PYTHONPATH, so the code you submitted from is the code that runs; the image provides the
    dependencies. Docker containers share the host network, IPC and /tmp (Ray's session
    directory and sockets live there; the driver and the head are separate containers).
    """

    runtime: str
    image: str
    repo: str
    binds: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    gpus: bool = False
    docker_gpus: str = "all"
    env_names: tuple[str, ...] = ()
    user: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], repo: str, gpus: bool) -> Container | None:
        image = env.get("CHORD_CONTAINER_IMAGE", "").strip()
        if not image:
            return None
        runtime = env.get("CHORD_CONTAINER_RUNTIME", "").strip() or "apptainer"
        if runtime not in CONTAINER_RUNTIMES:
            raise LaunchError(
                f"CHORD_CONTAINER_RUNTIME={runtime!r}: expected one of {', '.join(CONTAINER_RUNTIMES)}"
            )
        binds = tuple(b.strip() for b in env.get("CHORD_CONTAINER_BINDS", "").split(",") if b.strip())
        extra_names = tuple(n.strip() for n in env.get("CHORD_CONTAINER_ENV", "").split(",") if n.strip())
        passed = tuple(sorted(n for n in env if n.startswith(DOCKER_ENV_PREFIXES))) + extra_names
        user = env.get("CHORD_CONTAINER_USER") or f"{os.getuid()}:{os.getgid()}"
        return cls(
            runtime=runtime,
            image=image,
            repo=repo,
            binds=binds,
            extra_args=tuple(shlex.split(env.get("CHORD_CONTAINER_ARGS", ""))),
            gpus=gpus,
            docker_gpus=env.get("CHORD_DOCKER_GPUS", "all"),
            env_names=tuple(dict.fromkeys(passed)),
            user=user,
        )

    def wrap(
        self, argv: Sequence[str], name: str | None = None, env: Mapping[str, str] | None = None
    ) -> list[str]:
        """`argv` run inside the image with `env` set; `name` names a Docker container."""
        if not argv:
            raise LaunchError("empty command")
        env = {"PYTHONPATH": self.repo, **(env or {})}
        if self.runtime == "docker":
            return self._docker(argv, name, env)
        cmd = [self.runtime, "exec"]
        if self.gpus:
            cmd.append("--nv")
        cmd += ["--bind", ",".join([self.repo, *self.binds]), "--pwd", self.repo]
        for key, value in env.items():
            cmd += ["--env", f"{key}={value}"]
        return [*cmd, *self.extra_args, self.image, *argv]

    def _docker(self, argv: Sequence[str], name: str | None, env: Mapping[str, str]) -> list[str]:
        cmd = ["docker", "run", "--rm", "--init", "--network=host", "--ipc=host"]
        if name:
            cmd.append(f"--name={name}")
        if self.gpus:
            cmd.append(f"--gpus={self.docker_gpus}")
        if self.user:
            cmd += [f"--user={self.user}", "--env=HOME=/tmp"]
        cmd += ["--volume=/tmp:/tmp", f"--volume={self.repo}:{self.repo}", f"--workdir={self.repo}"]
        for bind in self.binds:
            cmd.append(f"--volume={bind if ':' in bind else bind + ':' + bind}")
        cmd += [f"--env={var}" for var in self.env_names if var not in env]
        cmd += [f"--env={key}={value}" for key, value in env.items()]
        cmd += self.extra_args
        # The image's ENTRYPOINT is chord-train; every command names its own program.
        cmd += [f"--entrypoint={argv[0]}", self.image, *argv[1:]]
        return cmd


def maybe_wrap(
    container: Container | None,
    argv: Sequence[str],
    name: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """`argv` inside the container, or as is (the batch script exports `env` itself)."""
    return container.wrap(argv, name, env) if container else list(argv)


# --------------------------------------------------------------------------- Ray and srun commands


def _int_env(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise LaunchError(f"{name}={value!r} is not a whole number")
    return int(value)


def _flag_env(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise LaunchError(f"{name}={value!r}: expected 1/0 (or true/false)")


@dataclass(frozen=True)
class RaySettings:
    port: int = DEFAULT_RAY_PORT
    dashboard: bool = True
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    num_gpus: int | None = None  # None: let Ray detect
    num_cpus: int | None = None  # None: the CPUs Slurm gave the node
    head_args: tuple[str, ...] = ()
    worker_args: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str], gpus: int) -> RaySettings:
        shared = shlex.split(env.get("CHORD_RAY_START_ARGS", ""))
        return cls(
            port=_int_env(env, "CHORD_RAY_PORT", DEFAULT_RAY_PORT),
            dashboard=_flag_env(env, "CHORD_RAY_DASHBOARD", True),
            dashboard_port=_int_env(env, "CHORD_DASHBOARD_PORT", DEFAULT_DASHBOARD_PORT),
            num_gpus=_int_env(env, "CHORD_RAY_NUM_GPUS", gpus or None),
            num_cpus=_int_env(env, "CHORD_RAY_NUM_CPUS", None),
            head_args=(*shared, *shlex.split(env.get("CHORD_RAY_HEAD_ARGS", ""))),
            worker_args=(*shared, *shlex.split(env.get("CHORD_RAY_WORKER_ARGS", ""))),
        )


def ray_start_argv(role: str, head_ip: str, ray: RaySettings, num_cpus: int | None) -> list[str]:
    """`ray start --block` for one node: the process lives as long as the srun step."""
    if role == "head":
        argv = ["ray", "start", "--head", f"--node-ip-address={head_ip}", f"--port={ray.port}"]
        argv.append(f"--include-dashboard={'true' if ray.dashboard else 'false'}")
        if ray.dashboard:
            argv += ["--dashboard-host=0.0.0.0", f"--dashboard-port={ray.dashboard_port}"]
    elif role == "worker":
        # The worker's own address is the one its kernel routes to the head with, which is
        # on the interface CHORD_SOCKET_IFNAME names when the head address came from it.
        argv = ["ray", "start", f"--address={head_ip}:{ray.port}"]
    else:
        raise LaunchError(f"unknown Ray role {role!r}")
    cpus = ray.num_cpus if ray.num_cpus is not None else num_cpus
    if cpus is not None:
        argv.append(f"--num-cpus={cpus}")
    if ray.num_gpus is not None:
        argv.append(f"--num-gpus={ray.num_gpus}")
    argv += ["--disable-usage-stats", "--block"]
    argv += ray.head_args if role == "head" else ray.worker_args
    return argv


def srun_step_argv(node: str, cpus: int | None, job_name: str, output: str | None = None) -> list[str]:
    """One single-task step pinned to `node`, overlapping the other steps of the job.

    ``--overlap`` lets the cleanup steps (`ray stop`) start on a node whose CPUs the Ray step
    holds; ``--cpus-per-task`` gives the step every CPU of the node instead of one.
    """
    argv = ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={node}", "--overlap", f"--job-name={job_name}"]
    if cpus is not None:
        argv.append(f"--cpus-per-task={cpus}")
    if output:
        argv.append(f"--output={output}")
    return argv


# --------------------------------------------------------------------------- the Slurm plan


@dataclass
class SlurmPlan:
    nodes: list[str]
    head_ip: str
    gpus_per_node: int
    ray_address: str
    commands: dict[str, list[str]]
    log_dir: str
    stop_grace_s: int = DEFAULT_STOP_GRACE_S

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, argv in self.commands.items():
            bad = [arg for arg in argv if "\0" in arg or "\n" in arg]
            if bad:
                raise LaunchError(f"argument with a newline or NUL in {name}: {bad[0]!r}")
            (out_dir / f"{name}.argv").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        scalars = {
            "HEAD_NODE": self.nodes[0],
            "HEAD_IP": self.head_ip,
            "NNODES": str(len(self.nodes)),
            "GPUS_PER_NODE": str(self.gpus_per_node),
            "RAY_ADDRESS": self.ray_address,
            "LOG_DIR": self.log_dir,
            "STOP_GRACE": str(self.stop_grace_s),
        }
        lines = [f"{key}={shlex.quote(value)}" for key, value in scalars.items()]
        lines.append("WORKER_NODES=(" + " ".join(shlex.quote(n) for n in self.nodes[1:]) + ")")
        (out_dir / "env.sh").write_text("\n".join(lines) + "\n")
        readable = [f"# {key}={value}" for key, value in scalars.items()]
        readable += [f"{name}: {shlex.join(argv)}" for name, argv in self.commands.items()]
        (out_dir / "plan.txt").write_text("\n".join(readable) + "\n")


def build_slurm_plan(
    env: Mapping[str, str],
    repo: str,
    helper: str,
    train_args: Sequence[str],
    log_dir: str,
    head_ip: str | None = None,
    use_scontrol: bool = True,
) -> SlurmPlan:
    """Every command of one multi-node run, from the Slurm job's environment.

    Commands: ``ray-head``, ``ray-worker-<node>``, ``stop-<node>`` (`ray stop` per node, left
    out when CHORD_RAY_STOP=0), ``wait-head``, ``wait-all`` (block until the nodes joined) and
    ``train``.
    """
    slurm_order = job_nodes(env, use_scontrol=use_scontrol)
    nodes = head_first(slurm_order, env)
    gpus = gpus_per_node(env)
    cpus_spec = env.get("SLURM_JOB_CPUS_PER_NODE", "")
    cpus = parse_counts_per_node(cpus_spec, len(nodes)) if cpus_spec else [None] * len(nodes)
    cpus_of = {node: cpus[i] for i, node in enumerate(slurm_order)}
    ray = RaySettings.from_env(env, gpus)
    container = Container.from_env(env, repo, gpus=gpus > 0 or bool(ray.num_gpus))
    head_ip = head_ip or pick_head_ip(env)
    job = env.get("SLURM_JOB_ID", "0")
    timeout = _int_env(env, "CHORD_WAIT_TIMEOUT", DEFAULT_WAIT_TIMEOUT_S)
    ray_stop = _flag_env(env, "CHORD_RAY_STOP", True)

    commands: dict[str, list[str]] = {}
    for i, node in enumerate(nodes):
        role = "head" if i == 0 else "worker"
        name = "ray-head" if i == 0 else f"ray-worker-{node}"
        step = srun_step_argv(node, cpus_of[node], f"ray-{role}", f"{log_dir}/{name}.log")
        container_name = f"chord-ray-{job}-{node}"
        commands[name] = step + maybe_wrap(
            container, ray_start_argv(role, head_ip, ray, cpus_of[node]), container_name
        )
        if not ray_stop:
            continue
        if container and container.runtime == "docker":
            stop = ["docker", "stop", "--time=30", container_name]
        else:
            stop = maybe_wrap(container, ["ray", "stop"])
        commands[f"stop-{node}"] = srun_step_argv(node, None, "ray-stop") + stop
    address = f"{head_ip}:{ray.port}"
    python = "python3" if container else env.get("CHORD_PYTHON", "") or "python3"
    wait = [python, helper, "wait-nodes", f"--address={address}", f"--timeout={timeout}"]
    commands["wait-head"] = maybe_wrap(container, [*wait, "--expected=1"])
    expected_gpus = len(nodes) * ray.num_gpus if ray.num_gpus else 0
    commands["wait-all"] = maybe_wrap(
        container, [*wait, f"--expected={len(nodes)}", f"--expected-gpus={expected_gpus}"]
    )
    train = shlex.split(env.get("CHORD_TRAIN_CMD", "") or "chord-train")
    defaults = [f"trainer.nnodes={len(nodes)}", f"trainer.n_gpus_per_node={gpus}"]
    commands["train"] = maybe_wrap(
        container, [*train, *merge_overrides(defaults, train_args)], env={"RAY_ADDRESS": address}
    )
    stop_grace = _int_env(env, "CHORD_STOP_GRACE", DEFAULT_STOP_GRACE_S)
    return SlurmPlan(nodes, head_ip, gpus, address, commands, log_dir, stop_grace)


# --------------------------------------------------------------------------- waiting for Ray


def wait_for_nodes(address: str, expected: int, timeout: float, expected_gpus: int = 0, poll: float = 2.0):
    """Block until `expected` Ray nodes (and `expected_gpus` GPUs) are alive; return the nodes.

    Raises TimeoutError naming what is missing. Runs where Ray is importable (the environment or
    image that runs the trainer).
    """
    try:
        import ray
    except ImportError as exc:
        raise LaunchError(
            f"Ray is not importable by {sys.executable}: activate the environment chord-rl is "
            "installed in before sbatch, set CHORD_PYTHON, or use CHORD_CONTAINER_IMAGE"
        ) from exc
    import logging

    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            break
        except Exception as exc:  # the head's GCS is not up yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Ray head answered at {address} within {timeout:.0f}s: {exc}") from exc
            time.sleep(poll)
    try:
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in alive)
            if len(alive) >= expected and gpus >= expected_gpus:
                return alive
            if time.monotonic() > deadline:
                hosts = ", ".join(sorted(n.get("NodeManagerHostname", "?") for n in alive)) or "none"
                raise TimeoutError(
                    f"{len(alive)}/{expected} Ray nodes and {gpus:g}/{expected_gpus} GPUs after "
                    f"{timeout:.0f}s at {address} (joined: {hosts}); see the ray-*.log files"
                )
            time.sleep(poll)
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recipe/launch/slurm.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("nodes", help="print the job's nodes, head first")
    p.add_argument("nodelist", nargs="?", help="default: $SLURM_JOB_NODELIST")
    sub.add_parser("head-ip", help="print this node's address for the other nodes")
    p = sub.add_parser("slurm-plan", help="write every command of a Slurm run into --out")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    p.add_argument("--log-dir", help="where the Ray steps log (default: --out's parent)")
    p.add_argument("train_args", nargs="*", help="after --: passed to the training command")
    p = sub.add_parser("wait-nodes", help="block until the Ray cluster has all its nodes")
    p.add_argument("--address", required=True)
    p.add_argument("--expected", type=int, required=True)
    p.add_argument("--expected-gpus", type=int, default=0)
    p.add_argument("--timeout", type=float, default=DEFAULT_WAIT_TIMEOUT_S)
    args = parser.parse_args(argv)

    try:
        if args.cmd == "nodes":
            env = dict(os.environ)
            if args.nodelist:
                env["SLURM_JOB_NODELIST"] = args.nodelist
            print("\n".join(head_first(job_nodes(env), env)))
        elif args.cmd == "head-ip":
            print(pick_head_ip(os.environ))
        elif args.cmd == "slurm-plan":
            repo = str(Path(args.repo).resolve())
            plan = build_slurm_plan(
                os.environ,
                repo=repo,
                helper=str(Path(__file__).resolve()),
                train_args=args.train_args,
                log_dir=args.log_dir or str(args.out.resolve().parent),
            )
            plan.write(args.out)
        elif args.cmd == "wait-nodes":
            nodes = wait_for_nodes(args.address, args.expected, args.timeout, args.expected_gpus)
            for node in nodes:
                res = node.get("Resources", {})
                print(
                    f"  {node.get('NodeManagerHostname')} {node.get('NodeManagerAddress')} "
                    f"CPU={res.get('CPU', 0):g} GPU={res.get('GPU', 0):g}"
                )
    except (LaunchError, TimeoutError, ValueError) as exc:
        print(f"slurm.py {args.cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
