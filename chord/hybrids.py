"""Driver-side logic of the SFT/RL hybrids, in plain Python (no torch, Ray or verl).

- :func:`hpt_gate` (HPT, arXiv 2509.04419): per prompt, from its n rollouts' rewards, whether it
  is *gated*: at most ``gate`` rollouts scored ``>= correct_threshold``. A gated prompt's
  rollouts leave the policy-gradient term and its paired demonstration becomes an SFT row.
- :class:`ReliftBuffer` (ReLIFT, arXiv 2506.07527): prompts whose rollouts all failed wait with
  their demonstration; whenever it holds ``size`` entries the newest ``size`` are taken for one
  SFT-only update and the buffer is emptied. Its state (entries, rounds) goes into the
  checkpoint, so a resumed run takes the same SFT rounds as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PromptOutcome", "ReliftBuffer", "ReliftEntry", "count_correct", "hpt_gate"]


@dataclass(frozen=True)
class PromptOutcome:
    """One prompt of a step: its group id, first row, rollouts, correct rollouts, and the gate."""

    uid: Hashable
    first_row: int
    rollouts: int
    correct: int
    gated: bool


def count_correct(
    rewards: Sequence[float], uids: Sequence[Hashable], threshold: float
) -> list[PromptOutcome]:
    """Per prompt (in order of first appearance): rollouts and rollouts with reward ``>= threshold``."""
    if len(rewards) != len(uids):
        raise ValueError(f"rewards / uids: {len(rewards)} rewards for {len(uids)} rows")
    first: dict[Hashable, int] = {}
    totals: dict[Hashable, list[int]] = {}
    for row, (uid, reward) in enumerate(zip(uids, rewards, strict=True)):
        first.setdefault(uid, row)
        entry = totals.setdefault(uid, [0, 0])
        entry[0] += 1
        entry[1] += int(float(reward) >= threshold)
    return [PromptOutcome(uid, first[uid], n, k, False) for uid, (n, k) in totals.items()]


def hpt_gate(
    rewards: Sequence[float], uids: Sequence[Hashable], *, gate: int = 0, threshold: float = 1.0
) -> list[PromptOutcome]:
    """HPT's switch per prompt: ``gated = (k <= gate)``, ``k`` = rollouts with reward ``>= threshold``.

    ``gate`` is HPT's ``chord.hpt.gate`` (0 for Qwen models, 2 for Llama in the authors' runs);
    ``threshold`` is ``chord.hpt.correct_threshold``.
    """
    if gate < 0:
        raise ValueError(f"chord.hpt.gate: must be >= 0, got {gate}")
    outcomes = count_correct(rewards, uids, threshold)
    return [PromptOutcome(o.uid, o.first_row, o.rollouts, o.correct, o.correct <= gate) for o in outcomes]


@dataclass(frozen=True)
class ReliftEntry:
    """A failed prompt and its demonstration, as token ids (JSON-serialisable), and where it came from."""

    prompt_ids: list[int]
    response_ids: list[int]
    source: str  # e.g. "step 3, RL row 12": named in messages

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_ids": list(self.prompt_ids),
            "response_ids": list(self.response_ids),
            "source": self.source,
        }


class ReliftBuffer:
    """ReLIFT's buffer of failed prompts with demonstrations (module doc).

    ``add`` appends entries in batch order; ``take`` returns the newest ``size`` entries (oldest
    first) once at least ``size`` are held, emptying the buffer, else None. ``rounds`` counts the
    SFT rounds taken so far.
    """

    def __init__(self, size: int) -> None:
        if int(size) < 1:
            raise ValueError(f"chord.relift.buffer_size: must be >= 1, got {size}")
        self.size = int(size)
        self.entries: list[ReliftEntry] = []
        self.rounds = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entries: Sequence[ReliftEntry]) -> None:
        self.entries.extend(entries)

    def take(self) -> list[ReliftEntry] | None:
        if len(self.entries) < self.size:
            return None
        batch = self.entries[-self.size :]
        self.entries = []
        self.rounds += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "rounds": self.rounds, "entries": [e.to_dict() for e in self.entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; a different ``size`` is refused (the rounds would differ)."""
        if int(state.get("size", -1)) != self.size:
            raise ValueError(
                f"chord.relift.buffer_size: the checkpoint's buffer has size {state.get('size')}, "
                f"this run {self.size}; resuming would change the SFT rounds"
            )
        try:
            entries = [
                ReliftEntry(
                    list(map(int, e["prompt_ids"])), list(map(int, e["response_ids"])), str(e["source"])
                )
                for e in state["entries"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"relift buffer state: malformed entry ({exc!r})") from None
        self.entries = entries
        self.rounds = int(state["rounds"])
