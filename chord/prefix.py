"""Prefix-guided rollouts (UFT, TRAPO): how much of an expert solution a rollout starts from.

Pure python (no torch, no verl): the rollout extension (`recipe.train.prefix_loop`) calls these
with token positions it got from the tokenizer.

Steps. A solution is split on its step separator (the data's, default a blank line ``"\\n\\n"``)
into the non-blank pieces between separators; `step_ends` gives the character offset where
each step ends (the last one: the end of the solution). `tokens_before` turns a character cut
into the number of whole tokens before it, from the tokenizer's offset mapping, so a prefix is
always a token prefix of the tokenised solution (never re-tokenised).

UFT (arXiv 2505.16984). At training step ``s`` the hint probability is

    p_s = low + amp * (1 + cos(pi * s / T))   for s <= T,   0 for s > T

(defaults low 0.05, amp 0.45, T 300: p_0 = 0.95). With ``num = min(max_parts, steps)`` parts,
``K ~ Binomial(num, p_s)`` and the hint is the first ``c_K = floor(K * steps / num)`` steps
(``c_K = K`` when the solution has at most `max_parts` steps; ``c_num`` = the whole solution).
``K`` is drawn from a generator seeded by ``(seed, step, prompt key)`` only (`uft_hint_parts`),
so all n rollouts of a prompt share one hint per step and a resumed run draws the same hints.

TRAPO (arXiv 2512.17636). The n rollouts of a prompt are slots in a fixed order: `plain` plain
rollouts, then stages ``(rows, fraction, if_correct_below)``. A stage's rows are guided with a
`fraction` prefix when fewer than `if_correct_below` of all earlier slots of the prompt scored
correct; otherwise they are plain rollouts too (the group keeps its n rows, so GRPO's group
baseline covers all of them). The default is the authors' 4 plain / 2 x 25% if < 2 of 4 /
1 x 50% if < 4 of 6 / 1 x 100% if any of 7 failed. `trapo_cut` cuts a fraction at the step end
nearest to it (a paragraph break near the target length); a one-step solution is cut at the
token nearest to it (at least one token); fraction 1 is the whole solution.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_STEP_SEPARATOR = "\n\n"


def step_ends(solution: str, separator: str = DEFAULT_STEP_SEPARATOR) -> list[int]:
    """Character offsets (ascending) where each step of `solution` ends; the last is ``len(solution)``.

    Steps are the pieces between `separator`s that hold more than white space; a step's end is
    the end of its text (before the separator that follows it). An empty or blank solution has
    no step (``[]``).
    """
    if not separator:
        raise ValueError("step separator: must be a non-empty string")
    ends: list[int] = []
    start = 0
    for piece in solution.split(separator):
        if piece.strip():
            ends.append(start + len(piece.rstrip()))
        start += len(piece) + len(separator)
    if ends:
        ends[-1] = len(solution)
    return ends


def tokens_before(offsets: Sequence[tuple[int, int]], char_cut: int) -> int:
    """How many leading tokens end at or before character `char_cut` (offset mapping ``(start, end)``)."""
    count = 0
    for _, end in offsets:
        if end > char_cut:
            break
        count += 1
    return count


def step_token_ends(offsets: Sequence[tuple[int, int]], ends: Sequence[int]) -> list[int]:
    """Token counts of the prefixes ending with each step (the last: all tokens)."""
    cuts = [tokens_before(offsets, end) for end in ends]
    if cuts:
        cuts[-1] = len(offsets)
    return cuts


# ---------------------------------------------------------------------------------------- UFT
@dataclass(frozen=True)
class UftSchedule:
    """UFT's hint schedule (module doc): p_s = low + amp * (1 + cos(pi * s / T)) up to T, then 0."""

    total_steps: int = 300  # T
    low: float = 0.05
    amp: float = 0.45
    max_parts: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"chord.prefix.uft.total_steps: must be >= 1, got {self.total_steps}")
        if self.max_parts < 1:
            raise ValueError(f"chord.prefix.uft.max_parts: must be >= 1, got {self.max_parts}")
        top = self.low + 2 * self.amp
        if not (0.0 <= self.low <= 1.0 and 0.0 <= top <= 1.0):
            raise ValueError(
                f"chord.prefix.uft.low / amp: p_s must stay in [0, 1]; low={self.low}, low + 2 amp={top}"
            )

    def probability(self, step: int) -> float:
        """p_s of training step `step`."""
        if step > self.total_steps:
            return 0.0
        return self.low + self.amp * (1.0 + math.cos(math.pi * step / self.total_steps))


def _rng(*parts: object) -> random.Random:
    """A generator seeded by `parts` alone (stable across processes and Python runs)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def uft_hint_parts(schedule: UftSchedule, step: int, prompt_key: str, num: int) -> int:
    """K ~ Binomial(num, p_step), drawn from (seed, step, prompt_key) only."""
    p = schedule.probability(step)
    rng = _rng("uft", schedule.seed, int(step), str(prompt_key))
    return sum(rng.random() < p for _ in range(num))


def uft_hint_steps(schedule: UftSchedule, step: int, prompt_key: str, num_steps: int) -> int:
    """c_K: how many leading solution steps form this prompt's hint at `step` (0: no hint)."""
    if num_steps <= 0:
        return 0
    num = min(schedule.max_parts, num_steps)
    k = uft_hint_parts(schedule, step, prompt_key, num)
    return k * num_steps // num


# -------------------------------------------------------------------------------------- TRAPO
@dataclass(frozen=True)
class TrapoStage:
    """`rows` guided rollouts with a `fraction` prefix, if fewer than `if_correct_below` earlier
    slots of the prompt scored correct."""

    rows: int
    fraction: float
    if_correct_below: int


@dataclass(frozen=True)
class TrapoSlot:
    """What slot i of a prompt's group is: plain (`stage` None) or a row of stage `stage`."""

    stage: int | None
    fraction: float  # 0 for plain slots
    first_slot_of_stage: int  # earlier slots decide the stage (== the slot's index for plain)


@dataclass(frozen=True)
class TrapoSchedule:
    plain: int = 4
    stages: tuple[TrapoStage, ...] = (
        TrapoStage(2, 0.25, 2),
        TrapoStage(1, 0.5, 4),
        TrapoStage(1, 1.0, 7),
    )

    @property
    def rows(self) -> int:
        return self.plain + sum(stage.rows for stage in self.stages)

    def check(self, n: int) -> None:
        """Fail naming the key when the schedule does not describe exactly `n` rollouts."""
        if self.plain < 1:
            raise ValueError(f"chord.prefix.trapo.plain: must be >= 1, got {self.plain}")
        for i, stage in enumerate(self.stages):
            key = f"chord.prefix.trapo.stages[{i}]"
            if stage.rows < 1:
                raise ValueError(f"{key}.rows: must be >= 1, got {stage.rows}")
            if not 0.0 < stage.fraction <= 1.0:
                raise ValueError(f"{key}.fraction: must be in (0, 1], got {stage.fraction}")
        if self.rows != n:
            raise ValueError(
                f"chord.prefix.trapo: plain + stage rows = {self.rows} rollouts per prompt, but "
                f"actor_rollout_ref.rollout.n = {n}; they must be equal"
            )

    def slots(self) -> list[TrapoSlot]:
        """The slot plan, slot 0 first."""
        out = [TrapoSlot(None, 0.0, i) for i in range(self.plain)]
        for index, stage in enumerate(self.stages):
            first = len(out)
            out.extend(TrapoSlot(index, stage.fraction, first) for _ in range(stage.rows))
        return out

    def guided(self, slot: TrapoSlot, earlier_correct: Sequence[bool]) -> bool:
        """Whether `slot` is guided, given the correctness of all slots before its stage."""
        if slot.stage is None:
            return False
        if len(earlier_correct) != slot.first_slot_of_stage:
            raise ValueError(
                f"TRAPO stage {slot.stage}: needs the scores of {slot.first_slot_of_stage} earlier "
                f"slots, got {len(earlier_correct)}"
            )
        return sum(bool(c) for c in earlier_correct) < self.stages[slot.stage].if_correct_below


def trapo_cut(step_cuts: Sequence[int], fraction: float) -> int:
    """Prefix tokens for `fraction` of a solution whose steps end at token counts `step_cuts`.

    The step end nearest to ``fraction * total`` (ties: the shorter prefix); a one-step solution
    is cut at ``max(1, round(fraction * total))``; fraction 1 keeps all tokens.
    """
    if not step_cuts:
        return 0
    total = step_cuts[-1]
    if fraction >= 1.0:
        return total
    target = fraction * total
    if len(step_cuts) == 1:
        return min(total, max(1, int(math.floor(target + 0.5))))
    return min(step_cuts, key=lambda cut: (abs(cut - target), cut))
