"""chord.hybrids: HPT's gate and ReLIFT's buffer (checkpoint round trip)."""

from __future__ import annotations

import json

import pytest

from chord.hybrids import ReliftBuffer, ReliftEntry, count_correct, hpt_gate

# prompts a (rows 0-2), b (rows 3-5), c (rows 6-8): correct rollouts 0, 1, 3 at threshold 1
REWARDS = [0.0, 0.0, 0.5, 1.0, 0.0, 0.0, 1.0, 1.0, 1.5]
UIDS = ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_hpt_gate_zero_gates_only_prompts_without_a_correct_rollout():
    out = hpt_gate(REWARDS, UIDS, gate=0, threshold=1.0)
    assert [(o.uid, o.first_row, o.rollouts, o.correct, o.gated) for o in out] == [
        ("a", 0, 3, 0, True),
        ("b", 3, 3, 1, False),
        ("c", 6, 3, 3, False),
    ]


def test_hpt_gate_two_and_a_lower_threshold():
    assert [o.gated for o in hpt_gate(REWARDS, UIDS, gate=2, threshold=1.0)] == [True, True, False]
    # threshold 0.5: a has one correct rollout (0.5), so gate 0 no longer gates it
    assert [o.correct for o in count_correct(REWARDS, UIDS, 0.5)] == [1, 1, 3]
    assert [o.gated for o in hpt_gate(REWARDS, UIDS, gate=0, threshold=0.5)] == [False, False, False]


def test_hpt_gate_refuses_mismatched_lengths_and_a_negative_gate():
    with pytest.raises(ValueError, match="9 rewards for 3 rows"):
        hpt_gate(REWARDS, ["a", "b", "c"])
    with pytest.raises(ValueError, match="chord.hpt.gate"):
        hpt_gate(REWARDS, UIDS, gate=-1)


def _entry(i: int) -> ReliftEntry:
    return ReliftEntry([1, i], [i, 2], f"row {i}")


def test_relift_buffer_takes_the_newest_entries_when_full_then_empties():
    buf = ReliftBuffer(3)
    buf.add([_entry(0), _entry(1)])
    assert buf.take() is None and len(buf) == 2 and buf.rounds == 0
    buf.add([_entry(2), _entry(3)])
    taken = buf.take()
    assert [e.source for e in taken] == ["row 1", "row 2", "row 3"]
    assert len(buf) == 0 and buf.rounds == 1


def test_relift_buffer_state_round_trips_through_json():
    buf = ReliftBuffer(3)
    buf.add([_entry(0), _entry(1), _entry(2)])
    buf.take()
    buf.add([_entry(4), _entry(5)])
    restored = ReliftBuffer(3)
    restored.load_state_dict(json.loads(json.dumps(buf.state_dict())))
    assert restored.rounds == 1 and restored.entries == buf.entries
    # the same next round as the original
    for b in (buf, restored):
        b.add([_entry(6)])
    assert (
        [e.source for e in restored.take()] == [e.source for e in buf.take()] == ["row 4", "row 5", "row 6"]
    )


def test_relift_buffer_refuses_a_checkpoint_of_another_size():
    state = ReliftBuffer(3).state_dict()
    with pytest.raises(ValueError, match="chord.relift.buffer_size"):
        ReliftBuffer(4).load_state_dict(state)
