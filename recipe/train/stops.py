"""Named stops: a run that cannot go on ends with one message saying why and what to do.

`ChordStop` and its subclasses are raised on the trainer's side (inside Ray) and reach
`chord-train`'s entry point wrapped in Ray's errors; `find_cause` unwraps them there, which
prints `chord-train: stopped: <message>` and exits with `EXIT_CODE`. A dead Ray worker (an FSDP
rank, a rollout server) surfaces as Ray's `RayActorError`; `dead_worker_message` names it.
"""

from __future__ import annotations

from typing import TypeVar

EXIT_CODE = 3  # chord-train's exit status after a named stop (2: config error)

E = TypeVar("E", bound=BaseException)


class ChordStop(RuntimeError):
    """The run stopped for a named reason; the message is complete on its own."""


class NonFiniteStop(ChordStop):
    """A non-finite loss or gradient (see `recipe.train.nonfinite`)."""


class WorkerDiedStop(ChordStop):
    """A Ray worker process of the job died."""


class ExpertDataChangedStop(ChordStop):
    """An expert file changed between the checkpoint and the resume."""


def find_cause(exc: BaseException | None, kind: type[E]) -> E | None:
    """`exc` or the first exception of type `kind` it wraps (Ray's `.cause`, `__cause__`, `__context__`)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, kind):
            cause = getattr(exc, "cause", None)  # Ray's RayTaskError(kind) subclass: the original
            return cause if isinstance(cause, kind) else exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def dead_worker_message(error: BaseException, labels: dict[str, str], step: int, resume_hint: str) -> str:
    """One message naming the dead worker (by `labels[actor_id]`, else Ray's class name and pid)."""
    actor_id = getattr(error, "actor_id", None)
    lines = str(error).splitlines()
    facts = dict(line.strip().split(": ", 1) for line in lines[1:] if ": " in line and line.startswith("\t"))
    who = labels.get(actor_id or "") or facts.get("class_name") or "a Ray actor"
    pid = f", pid {facts['pid']}" if "pid" in facts else ""
    ip = f" on {facts['ip']}" if "ip" in facts else ""
    reason = next((line.strip() for line in lines[1:] if line.strip() and not line.startswith("\t")), "")
    reason = reason.split(". ")[0]  # Ray's first sentence; the rest is generic advice
    return (
        f"a worker of the job died at step {step}: {who}{pid}{ip}"
        + (f" ({reason})" if reason else "")
        + f". {resume_hint}"
    )
