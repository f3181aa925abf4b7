"""Finding non-finite updates (recipe.train.nonfinite): terms, rows, the verdict, the message."""

from __future__ import annotations

import math

import torch
from tensordict import TensorDict
from verl.utils.metric import AggregationType, Metric

from recipe.train.nonfinite import (
    ROW_ID,
    Finding,
    NonFiniteUpdate,
    check_before_step,
    describe,
    grads_are_finite,
    inspect_micro_batch,
)
from recipe.train.stops import NonFiniteStop, find_cause

B, P, R = 3, 2, 3  # rows, prompt and response width (every token real)


def _micro_batch(row_ids=(7, 2, 5), expert=(False, True, False)) -> TensorDict:
    return TensorDict(
        {
            "prompts": torch.ones(B, P, dtype=torch.long),
            "responses": torch.ones(B, R, dtype=torch.long),
            "attention_mask": torch.ones(B, P + R, dtype=torch.long),
            "response_mask": torch.ones(B, R),
            "is_expert": torch.tensor(expert),
            ROW_ID: torch.tensor(row_ids),
            "old_log_probs": torch.zeros(B, R),
            "advantages": torch.zeros(B, R),
        },
        batch_size=[B],
    )


def _metrics(pg=0.5, sft=0.25, kl=0.0):
    return {
        "actor/pg_loss": Metric(AggregationType.SUM, pg),
        "actor/sft_loss": Metric(AggregationType.SUM, sft),
        "actor/kl_loss": Metric(AggregationType.SUM, kl),
        "actor/phi_mean": Metric(AggregationType.MEAN, 0.1),
    }


def _log_probs(bad_row: int | None = None) -> torch.Tensor:
    """Flat (total tokens,) log-probs as the model returns them; a whole row NaN if asked."""
    values = torch.full((B * (P + R),), -1.0)
    if bad_row is not None:
        values[bad_row * (P + R) : (bad_row + 1) * (P + R)] = math.nan
    return values


def test_a_finite_micro_batch_gives_no_finding():
    loss = torch.tensor(0.75)
    assert inspect_micro_batch(loss, _metrics(), {"log_probs": _log_probs()}, _micro_batch(), rank=0) is None


def test_a_nan_expert_log_prob_names_the_sft_term_and_the_row():
    finding = inspect_micro_batch(
        torch.tensor(math.nan), _metrics(sft=math.nan), {"log_probs": _log_probs(1)}, _micro_batch(), rank=1
    )
    assert finding == Finding(rank=1, loss_finite=False, terms=["sft"], rows=[(2, True, ["log_probs"])])


def test_a_non_finite_advantage_names_the_rollout_row_and_the_input():
    data = _micro_batch()
    data["advantages"][2, 1] = math.inf
    finding = inspect_micro_batch(
        torch.tensor(math.inf), _metrics(pg=math.inf), {"log_probs": _log_probs()}, data, rank=0
    )
    assert finding.terms == ["pg"] and finding.rows == [(5, False, ["advantages"])]


def test_non_finite_values_outside_the_response_mask_do_not_count():
    data = _micro_batch()
    data["response_mask"][0, 2] = 0.0
    data["old_log_probs"][0, 2] = math.nan  # padding
    finding = inspect_micro_batch(
        torch.tensor(math.nan), _metrics(kl=math.nan), {"log_probs": _log_probs()}, data, 0
    )
    assert finding.terms == ["kl"] and finding.rows == []


def test_the_verdict_covers_gradients_without_a_finding():
    assert check_before_step([], grads_finite=True) is None
    error = check_before_step([], grads_finite=False)
    assert isinstance(error, NonFiniteUpdate) and error.grads_finite == [False]
    assert "non-finite gradient" in str(error) and "rank(s) [0]" in str(error)


def test_grads_are_finite():
    layer = torch.nn.Linear(2, 1)
    assert grads_are_finite(layer)  # no gradients yet
    layer(torch.ones(1, 2)).sum().backward()
    assert grads_are_finite(layer)
    layer.weight.grad[0, 0] = math.nan
    assert not grads_are_finite(layer)


def test_message_names_step_terms_and_the_drivers_row_names():
    finding = Finding(rank=0, loss_finite=False, terms=["sft"], rows=[(1, True, ["log_probs"])])
    error = NonFiniteUpdate([finding], [False, False])
    names = ["rollout row 0", "expert row 12 of data/expert.parquet"]
    message = describe(error, step=7, row_names=names)
    assert message.startswith(
        "non-finite loss at step 7; term(s): sft; rows: expert row 12 of data/expert.parquet"
    )
    assert "(log_probs)" in message and "rank(s) [0, 1]" in message
    assert "expert row 1 of the merged batch" in describe(error, step=None, row_names=None)


def test_error_survives_pickling_and_is_found_through_wrappers():
    import pickle

    error = NonFiniteUpdate([Finding(0, False, ["pg"], [])], [True])
    again = pickle.loads(pickle.dumps(error))
    assert again.findings == error.findings and again.grads_finite == [True]
    try:
        try:
            raise again
        except NonFiniteUpdate as inner:
            raise RuntimeError("ray wrapper") from inner
    except RuntimeError as outer:
        assert find_cause(outer, NonFiniteUpdate) is again
        assert find_cause(outer, NonFiniteStop) is None


class _Engine:
    def __init__(self, grad: float):
        self.module = torch.nn.Linear(1, 1)
        self.module.weight.grad = torch.tensor([[grad]])
        self.stepped = 0
        self.zeroed = 0

    def optimizer_step(self):
        self.stepped += 1
        return 0.5

    def optimizer_zero_grad(self):
        self.zeroed += 1


def _worker(on_nonfinite: str, grad: float, findings=()):
    """The state `ChordTrainingWorker._checked_optimizer_step` reads, without Ray or FSDP."""
    from types import SimpleNamespace

    engine = _Engine(grad)
    return SimpleNamespace(
        engine=engine,
        _engine_optimizer_step=engine.optimizer_step,
        _findings=list(findings),
        _skipped=0,
        on_nonfinite=on_nonfinite,
    )


def test_worker_steps_only_when_every_rank_is_finite():
    import pytest

    from recipe.train.workers import ChordTrainingWorker

    step = ChordTrainingWorker._checked_optimizer_step
    ok = _worker("stop", 1.0)
    assert step(ok) == 0.5 and ok.engine.stepped == 1
    bad = _worker("stop", math.nan)
    with pytest.raises(NonFiniteUpdate, match="non-finite gradient"):
        step(bad)
    assert (bad.engine.stepped, bad.engine.zeroed) == (0, 1)  # the weights were not touched
    skipped = _worker("skip", 1.0, findings=[Finding(0, False, ["sft"], [])])
    assert math.isnan(step(skipped))
    assert (skipped.engine.stepped, skipped.engine.zeroed, skipped._skipped) == (0, 1, 1)
    assert skipped._findings == []  # consumed: the next optimizer step starts clean


def test_dead_worker_message_names_the_rank_pid_and_where_to_resume():
    from recipe.train.stops import dead_worker_message

    class Died(Exception):
        actor_id = "abc123"

    text = (
        "The actor died unexpectedly before finishing this task.\n"
        "\tclass_name: WorkerDict\n\tactor_id: abc123\n\tpid: 4242\n\tip: 10.0.0.2\n"
        "The actor is dead because its worker process has died. Worker exit type: X"
    )
    message = dead_worker_message(Died(text), {"abc123": "actor_rollout worker rank 1"}, 7, "Resume hint.")
    assert message == (
        "a worker of the job died at step 7: actor_rollout worker rank 1, pid 4242 on 10.0.0.2 "
        "(The actor is dead because its worker process has died). Resume hint."
    )
    assert "WorkerDict, pid 4242" in dead_worker_message(Died(text), {}, 7, "")
