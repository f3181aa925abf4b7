"""`chord-submit`: run chord-train on a running Ray cluster as a Ray job (``ray job submit``).

The repository travels as the job's ``working_dir``, minus what must never be uploaded:
checkpoints, weights, data, outputs, virtual environments, ``.git`` and caches. Ray leaves out
only what it is told to (verl issue #696), and a package over 500 MiB is refused, so the list
below is explicit rather than left to a ``.gitignore``. Extend it with ``--exclude PATTERN``
(gitignore syntax, relative to the working dir) or ``CHORD_SUBMIT_EXCLUDES=a,b``.

    chord-submit --address http://HEAD:8265 --env CHORD_WORKDIR=/shared/run1 \\
        -- --config-name <preset> trainer.nnodes=2 trainer.n_gpus_per_node=8

Arguments after ``--`` (and ``key=value`` overrides before it) go to the entrypoint,
``chord-train`` unless ``--entrypoint`` names another command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from recipe.launch.slurm import merge_overrides, override_key

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_ENTRYPOINT = "chord-train"
DEFAULT_EXCLUDES: tuple[str, ...] = (
    # version control, environments, caches, builds
    ".git/",
    ".venv/",
    "venv/",
    ".tox/",
    "__pycache__/",
    "*.pyc",
    ".pytest_cache/",
    ".ruff_cache/",
    ".mypy_cache/",
    "*.egg-info/",
    "/build/",
    "/dist/",
    # runs: checkpoints, outputs, logs
    "checkpoints/",
    "outputs/",
    "runs/",
    "wandb/",
    "mlruns/",
    # data and models at the root only: chord/data/ is code
    "/data/",
    "/models/",
    # weights, tensors and datasets anywhere
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.gguf",
    "*.onnx",
    "*.npy",
    "*.npz",
    "*.h5",
    "*.parquet",
    "*.arrow",
    "*.tar",
    "*.tar.gz",
    "*.zip",
)
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SubmitError(RuntimeError):
    """A bad argument or an unreachable cluster; the message says what to change."""


def repo_root() -> Path:
    """The checkout this module belongs to, else the current directory (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "setup.py").is_file() and (root / "conf").is_dir() else Path.cwd()


def build_excludes(extra: Sequence[str] = (), env: Mapping[str, str] | None = None) -> list[str]:
    """DEFAULT_EXCLUDES, then CHORD_SUBMIT_EXCLUDES (comma-separated), then `extra`; no repeats."""
    env = os.environ if env is None else env
    from_env = [p.strip() for p in env.get("CHORD_SUBMIT_EXCLUDES", "").split(",") if p.strip()]
    return list(dict.fromkeys([*DEFAULT_EXCLUDES, *from_env, *extra]))


def parse_env_vars(pairs: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``KEY=VALUE`` pairs, or ``KEY`` alone to pass this shell's value on."""
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not _ENV_KEY.fullmatch(key):
            raise SubmitError(f"--env {pair!r}: expected KEY=VALUE or KEY (a variable name)")
        if not sep:
            if key not in environ:
                raise SubmitError(f"--env {key}: not set in this shell; give a value with {key}=VALUE")
            value = environ[key]
        out[key] = value
    return out


def build_entrypoint(
    entrypoint: str,
    train_args: Sequence[str],
    nnodes: int | None = None,
    gpus_per_node: int | None = None,
) -> str:
    """The job's shell command: `entrypoint` plus the training arguments, each quoted."""
    program = shlex.split(entrypoint)
    if not program:
        raise SubmitError("--entrypoint is empty")
    defaults = []
    if nnodes is not None:
        defaults.append(f"trainer.nnodes={nnodes}")
    if gpus_per_node is not None:
        defaults.append(f"trainer.n_gpus_per_node={gpus_per_node}")
    return shlex.join([*program, *merge_overrides(defaults, train_args)])


def checkpoint_dir_warning(program: str, train_args: Sequence[str]) -> str | None:
    """A warning when chord-train's checkpoints would land inside the job's temporary copy.

    A Ray job runs in an unpacked copy of the working_dir that Ray deletes afterwards, and verl
    resolves a relative trainer.default_local_dir against it: the checkpoints would be lost and
    resume_mode=auto would never find them.
    """
    if Path(program).name != "chord-train":
        return None
    values = [a.split("=", 1)[1] for a in train_args if override_key(a) == "trainer.default_local_dir"]
    if values and os.path.isabs(values[-1]):
        return None
    return (
        "note: trainer.default_local_dir is not an absolute path on this command line; a relative "
        "one ends up in the job's temporary copy of the code, which Ray deletes after the job "
        "(checkpoints lost, nothing to resume). Point it at shared storage unless your preset does."
    )


def build_runtime_env(working_dir: Path, excludes: Sequence[str], env_vars: Mapping[str, str]) -> dict:
    runtime_env: dict = {"working_dir": str(working_dir), "excludes": list(excludes)}
    if env_vars:
        runtime_env["env_vars"] = dict(env_vars)
    return runtime_env


def planned_upload(working_dir: Path, excludes: Sequence[str]) -> list[tuple[str, int]]:
    """(path, bytes) of every file Ray will pack from `working_dir`, sorted by path.

    Walks the tree with Ray's own packaging code (its pattern matcher, plus the .gitignore and
    .rayignore files it reads), so what is listed is what gets uploaded.
    """
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    root = working_dir.resolve()
    files: list[tuple[str, int]] = []

    def collect(path: Path) -> None:
        if path.is_file() and not path.is_symlink():
            files.append((str(path.relative_to(root)), path.stat().st_size))

    quiet = logging.getLogger("chord.submit.upload")  # Ray logs every ignore file it reads at INFO
    quiet.setLevel(logging.WARNING)
    _dir_travel(root, [_get_excludes(root, list(excludes))], collect, include_gitignore, logger=quiet)
    return sorted(files)


def normalize_address(address: str | None, env: Mapping[str, str] | None = None) -> str:
    """The job server URL: --address, else RAY_API_SERVER_ADDRESS / RAY_ADDRESS, else the local one."""
    env = os.environ if env is None else env
    address = address or env.get("RAY_API_SERVER_ADDRESS") or env.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if "://" not in address:
        address = f"http://{address}"
    return address.rstrip("/")


def follow_instructions(job_id: str, address: str) -> str:
    opt = f"--address {shlex.quote(address)}"
    return "\n".join(
        [
            f"  follow the logs:  ray job logs -f {job_id} {opt}",
            f"  status:           ray job status {job_id} {opt}",
            f"  stop:             ray job stop {job_id} {opt}",
            f"  driver log:       /tmp/ray/session_latest/logs/job-driver-{job_id}.log on the head node"
            " (under Ray's --temp-dir if the head was started with one)",
        ]
    )


def _split_dash_dash(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chord-submit",
        description="Submit chord-train (or --entrypoint) to a running Ray cluster as a Ray job.",
        epilog="Everything after `--` is passed to the entrypoint unchanged.",
    )
    p.add_argument("overrides", nargs="*", help="hydra overrides (key=value) for the entrypoint")
    p.add_argument(
        "--address",
        help=f"job server (dashboard) URL; default $RAY_API_SERVER_ADDRESS, $RAY_ADDRESS, {DEFAULT_ADDRESS}",
    )
    p.add_argument("--entrypoint", default=DEFAULT_ENTRYPOINT, help="command to run (default: %(default)s)")
    p.add_argument("--working-dir", type=Path, help="code to ship (default: this repository's root)")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="also leave out PATTERN (repeatable)",
    )
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY[=VALUE]", help="environment variable for the job"
    )
    p.add_argument("--submission-id", help="job id (default: Ray picks one)")
    p.add_argument("--nnodes", type=int, help="add trainer.nnodes=N unless the overrides set it")
    p.add_argument("--gpus-per-node", type=int, help="add trainer.n_gpus_per_node=N unless set")
    p.add_argument("--entrypoint-num-cpus", type=float, help="CPUs reserved for the driver process")
    wait = p.add_mutually_exclusive_group()
    wait.add_argument(
        "--wait", dest="wait", action="store_true", default=True, help="stream logs until done (default)"
    )
    wait.add_argument("--no-wait", dest="wait", action="store_false", help="return once the job is submitted")
    p.add_argument("--timeout", type=float, help="with --wait: give up waiting after this many seconds")
    p.add_argument("--dry-run", action="store_true", help="print the job and the upload; submit nothing")
    return p


def _print_upload(files: list[tuple[str, int]], working_dir: Path) -> None:
    total = sum(size for _, size in files)
    print(f"working_dir {working_dir}: {len(files)} files, {total / 2**20:.1f} MiB to upload")
    if total > 100 * 2**20:
        largest = sorted(files, key=lambda f: -f[1])[:5]
        print("  largest (leave them out with --exclude PATTERN):")
        for path, size in largest:
            print(f"    {size / 2**20:8.1f} MiB  {path}")


async def _stream_logs(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def wait_for_job(client, job_id: str, timeout: float | None, poll: float = 2.0) -> str | None:
    """Stream the job's logs until it ends; its final status, or None once `timeout` passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        asyncio.run(asyncio.wait_for(_stream_logs(client, job_id), timeout))
    except asyncio.TimeoutError:
        return None
    except Exception as exc:  # the log stream is a convenience; the job's status decides
        print(f"(log stream ended: {exc!r}; polling the job status)", file=sys.stderr)
    while True:  # the stream can also close a moment before the state is final
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL_STATES:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(poll)


def main(argv: Sequence[str] | None = None) -> int:
    ours, passthrough = _split_dash_dash(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(ours)
    try:
        bad = [o for o in args.overrides if "=" not in o and not o.startswith("~")]
        if bad:
            raise SubmitError(f"{bad[0]!r} is not a hydra override; put entrypoint options after `--`")
        working_dir = (args.working_dir or repo_root()).resolve()
        if not working_dir.is_dir():
            raise SubmitError(f"--working-dir {working_dir}: not a directory")
        excludes = build_excludes(args.exclude)
        env_vars = parse_env_vars(args.env)
        # Options (e.g. --config-name) come after `--`; hydra wants them before the overrides.
        train_args = [*passthrough, *args.overrides]
        entrypoint = build_entrypoint(args.entrypoint, train_args, args.nnodes, args.gpus_per_node)
        warning = checkpoint_dir_warning(shlex.split(args.entrypoint)[0], train_args)
        if warning:
            print(warning, file=sys.stderr)
        runtime_env = build_runtime_env(working_dir, excludes, env_vars)
        address = normalize_address(args.address)
        _print_upload(planned_upload(working_dir, excludes), working_dir)
        print(f"entrypoint: {entrypoint}")
        if args.dry_run:
            print(f"address: {address}\nruntime_env: {runtime_env}")
            return 0

        from ray.job_submission import JobSubmissionClient

        try:
            client = JobSubmissionClient(address)
        except (ConnectionError, RuntimeError) as exc:
            hint = (
                " (6379 is Ray's GCS port; jobs go to the dashboard, 8265 by default)"
                if ":6379" in address
                else ""
            )
            raise SubmitError(f"no Ray job server at {address}{hint}: {exc}") from exc
        job_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            submission_id=args.submission_id,
            entrypoint_num_cpus=args.entrypoint_num_cpus,
            metadata={"submitted_by": "chord-submit"},
        )
    except SubmitError as exc:
        print(f"chord-submit: {exc}", file=sys.stderr)
        return 2

    print(f"Submitted Ray job {job_id} to {address}")
    print(follow_instructions(job_id, address), flush=True)
    if not args.wait:
        return 0
    try:
        status = wait_for_job(client, job_id, args.timeout)
    except KeyboardInterrupt:
        print(f"\nStopped waiting; job {job_id} keeps running (see above to follow or stop it).")
        return 130
    if status is None:
        print(f"Stopped waiting after {args.timeout:.0f}s; job {job_id} is still running.")
        return 124
    print(f"Job {job_id} {status}")
    return 0 if status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
