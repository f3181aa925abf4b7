"""Run a slow or hanging check under a deadline, from any thread: worker processes that can be killed.

Why processes: math-verify's own timeouts use `signal.alarm`, which only works in the main
thread, and verl calls reward functions from executor threads (and Ray worker threads). A
thread cannot be stopped, so a sympy computation that never ends would keep a core busy for
ever; a process can be killed. Each worker stays alive between calls (start-up cost is paid
once); a worker that misses its deadline is killed and replaced on the next call.

Workers are plain `python -c` subprocesses talking JSON lines over their stdin/stdout (not
`multiprocessing`, whose "spawn" start re-runs the parent's `__main__` script, and whose
"fork" start is unsafe from threaded parents). They get the parent's `sys.path` and import
the check by its "module:function" name.

Contract of `VerifierPool.verify(gold, pred, timeout_s)`: returns within about `timeout_s`
seconds of getting a worker (plus the one-off start of a worker, bounded by `start_timeout_s`),
never raises for a slow, crashing or failing check, and reports what happened in a
`VerifyOutcome` (status "ok", "timeout" or "error").
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

VerifyFn = Callable[[str, str], bool]

# The worker's whole program: read the config line, then serve (chord is found through sys.path).
_BOOTSTRAP = (
    "import json, sys\n"
    "cfg = json.loads(sys.stdin.readline())\n"
    "sys.path[:] = cfg['sys_path']\n"
    "from chord.rewards.verify_pool import serve\n"
    "serve(cfg['target'])\n"
)


@dataclass(frozen=True)
class VerifyOutcome:
    """Result of one check: status "ok" (then `equal` holds the answer), "timeout" or "error"."""

    status: str
    equal: bool = False
    error: str = ""


def target_name(verify_fn: VerifyFn | str) -> str:
    """ "module:function" for a module-level function (or the string itself); ValueError otherwise."""
    if isinstance(verify_fn, str):
        if ":" not in verify_fn:
            raise ValueError(f"verify target must be 'module:function', got {verify_fn!r}")
        return verify_fn
    module, qualname = getattr(verify_fn, "__module__", None), getattr(verify_fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or "." in qualname:
        raise ValueError(
            f"verify_fn must be a module-level function of an importable module, got {verify_fn!r}"
        )
    return f"{module}:{qualname}"


def _load_target(target: str) -> VerifyFn:
    module_name, fn_name = target.split(":", 1)
    return getattr(importlib.import_module(module_name), fn_name)


def _exit_when_orphaned(parent_pid: int, interval_s: float = 1.0) -> None:
    # A worker stuck in a check never reads the EOF of a dead parent; this thread ends it.
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent_pid:
            os._exit(0)


def serve(target: str, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
    """Worker loop: for each JSON line [gold, pred] write {"ok": bool} or {"error": msg}; stop at EOF."""
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    sys.stdout = sys.stderr  # stray prints of the check must not corrupt the protocol
    try:
        fn = _load_target(target)
    except Exception as exc:
        out.write(json.dumps({"error": f"cannot import {target}: {type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in stdin:
        gold, pred = json.loads(line)
        try:
            reply = {"ok": bool(fn(gold, pred))}
        except Exception as exc:  # a failing check is a result, not a crash of the worker
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class _Worker:
    """One verification subprocess."""

    def __init__(self, target: str, start_timeout_s: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            close_fds=True,
        )
        self.send({"sys_path": sys.path, "target": target})
        reply = self.receive(start_timeout_s)
        if reply is None or "ready" not in reply:
            self.kill()
            why = "did not start in time" if reply is None else reply.get("error", "bad reply")
            raise RuntimeError(f"verification worker for {target}: {why}")

    def send(self, obj: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(obj) + "\n")
        self.process.stdin.flush()

    def receive(self, timeout_s: float) -> dict | None:
        """The next reply, or None if none came within `timeout_s`; EOFError if the worker died."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, timeout_s))
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise EOFError(f"worker exited with code {self.process.poll()}")
        return json.loads(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


class VerifierPool:
    """Up to `max_workers` persistent worker processes running one check, shared by all threads.

    `verify_fn` is a module-level function `(gold: str, pred: str) -> bool` or its
    "module:function" name. Calls beyond `max_workers` at the same time wait for a free worker
    (each running call ends by its own deadline, so the wait is bounded too).
    """

    def __init__(
        self, verify_fn: VerifyFn | str, *, max_workers: int = 2, start_timeout_s: float = 120.0
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.target = target_name(verify_fn)
        self.max_workers = max_workers
        self.start_timeout_s = start_timeout_s
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._num_workers = 0  # idle + busy + starting
        self._owner_pid = os.getpid()
        self.closed = False

    @property
    def num_workers(self) -> int:
        """Worker processes alive or starting (idle + busy)."""
        with self._cond:
            return self._num_workers

    def _acquire(self) -> _Worker:
        with self._cond:
            if os.getpid() != self._owner_pid:  # after os.fork the workers belong to the parent
                self._owner_pid, self._idle, self._num_workers = os.getpid(), [], 0
            while True:
                if self.closed:
                    raise RuntimeError("VerifierPool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._num_workers < self.max_workers:
                    self._num_workers += 1
                    break
                self._cond.wait()
        try:
            return _Worker(self.target, self.start_timeout_s)
        except BaseException:
            self._forget()
            raise

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if self.closed:
                worker.kill()
            else:
                self._idle.append(worker)
            self._cond.notify()

    def _forget(self) -> None:
        with self._cond:
            self._num_workers -= 1
            self._cond.notify()

    def verify(self, gold: str, pred: str, timeout_s: float) -> VerifyOutcome:
        """Run the check on (gold, pred) in a worker; give up after `timeout_s` seconds (worker killed)."""
        worker = self._acquire()
        try:
            worker.send([gold, pred])
            reply = worker.receive(timeout_s)
        except (EOFError, OSError, ValueError) as exc:
            worker.kill()
            self._forget()
            return VerifyOutcome("error", error=f"verification worker died: {exc}")
        if reply is None:
            worker.kill()
            self._forget()
            return VerifyOutcome("timeout", error=f"verification exceeded {timeout_s:g} s")
        self._release(worker)
        if "ok" in reply:
            return VerifyOutcome("ok", equal=bool(reply["ok"]))
        return VerifyOutcome("error", error=str(reply.get("error", reply)))

    def close(self) -> None:
        """Stop all idle workers; busy ones are stopped when their call returns."""
        with self._cond:
            self.closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in idle:
            worker.kill()


_POOLS: dict[tuple[str, int], VerifierPool] = {}
_POOLS_LOCK = threading.Lock()


def default_num_workers() -> int:
    """`CHORD_VERIFY_WORKERS` if set, else min(4, number of CPUs)."""
    env = os.environ.get("CHORD_VERIFY_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(4, os.cpu_count() or 1))


def get_pool(verify_fn: VerifyFn | str, max_workers: int | None = None) -> VerifierPool:
    """The process-wide pool for (`verify_fn`, `max_workers`), created on first use."""
    key = (target_name(verify_fn), max_workers or default_num_workers())
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None or pool.closed:
            pool = _POOLS[key] = VerifierPool(key[0], max_workers=key[1])
        return pool


@atexit.register
def _close_all_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()
