"""Bookkeeping of a preparation run: every dropped row counted by reason, and "not enough data"."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


class InsufficientDataError(ValueError):
    """Fewer rows qualify than were asked for (and writing fewer was not allowed)."""


@dataclass
class PrepareResult:
    """What a preparation run wrote (name -> path) and its counts (`DropCounts.as_dict`)."""

    paths: dict[str, Path]
    counts: dict[str, int] = field(default_factory=dict)


class DropCounts:
    """Counts of what was read, dropped (by reason) and kept; printed as a small report."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.dropped: Counter[str] = Counter()
        self.totals: dict[str, int] = {}

    def drop(self, reason: str, n: int = 1) -> None:
        """Count `n` items dropped for `reason` (a short snake_case phrase naming the unit)."""
        self.dropped[reason] += n

    def total(self, name: str, value: int) -> None:
        """Record a total (e.g. rows read, rows written)."""
        self.totals[name] = value

    def as_dict(self) -> dict[str, int]:
        """Totals and drops in one flat dict (drops prefixed with "dropped/")."""
        out = dict(self.totals)
        out.update({f"dropped/{k}": v for k, v in sorted(self.dropped.items())})
        return out

    def format(self) -> str:
        lines = [f"{self.title}:"]
        lines += [f"  {k}: {v:,}" for k, v in self.totals.items()]
        if self.dropped:
            lines.append("  dropped:")
            lines += [f"    {k}: {v:,}" for k, v in sorted(self.dropped.items())]
        else:
            lines.append("  dropped: nothing")
        return "\n".join(lines)

    def print(self, stream: TextIO | None = None) -> None:
        print(self.format(), file=stream or sys.stdout, flush=True)


def check_enough(what: str, found: int, wanted: int, *, allow_fewer: bool, hint: str = "") -> None:
    """Raise InsufficientDataError when `found < wanted`, or only warn (stderr) if `allow_fewer`."""
    if found >= wanted:
        return
    message = f"only {found:,} {what} qualify, {wanted:,} were asked for"
    if hint:
        message += f" ({hint})"
    if not allow_fewer:
        raise InsufficientDataError(message + "; pass --allow-fewer to write what exists")
    print(f"WARNING: {message}; writing {found:,}", file=sys.stderr, flush=True)
