"""Non-finite loss or gradient: found per micro-batch, decided once per optimizer step, by name.

Three pieces, each small on purpose (the loss itself lives in `actor_loss.py`):

- `inspect_micro_batch(loss, metrics, model_output, data)`: after the loss of one micro-batch,
  which terms are non-finite (pg, sft, entropy, kl from the loss's `actor/*_loss` metrics) and,
  when something is, which rows carry a non-finite input (log-prob, entropy, old/ref log-prob,
  advantage, quality) on their response tokens. Rows are named by `ROW_ID` (their index in the
  driver's merged batch) and `is_expert`.
- `check_before_step(findings, grads_finite, group)`: all ranks exchange what they found before
  the optimizer step; the verdict is the same on every rank (so no rank waits in a collective
  for one that stopped).
- `NonFiniteUpdate`: raised on every rank when the step must stop; the driver turns its row
  indices into "expert row 12 of data.parquet" / "rollout row 3" and adds the step
  (`describe`).

`chord.on_nonfinite`: "stop" (default) raises before the optimizer step touches the weights;
"skip" zeroes the gradients instead and counts the skipped step (`chord/nonfinite_skipped`).

Test hook: `CHORD_TEST_NONFINITE="<step>:<expert|rollout>"` sets the log-probs of the first such
row of the first micro-batch on rank 0 at that step to NaN (`poison_first_row`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

ROW_ID = "chord_row"  # per-row int64: the row's index in the merged batch the driver sent
GLOBAL_STEP = "chord_global_step"  # meta: the trainer's step
TEST_HOOK_ENV = "CHORD_TEST_NONFINITE"

# loss metrics (as `chord_actor_loss` names them) -> the term named in messages
TERMS = {
    "actor/pg_loss": "pg",
    "actor/sft_loss": "sft",
    "actor/luffy_loss": "luffy",
    "actor/offpolicy_loss": "off-policy (expert)",
    "actor/entropy_loss": "entropy",
    "actor/kl_loss": "kl",
}
# per-token inputs of the loss checked on a row's response tokens, and per-row ones
_TOKEN_INPUTS = ("old_log_probs", "advantages", "ref_log_prob")
_ROW_INPUTS = ("chord_quality",)


@dataclass
class Finding:
    """What one micro-batch on one rank had that was not finite."""

    rank: int
    loss_finite: bool
    terms: list[str] = field(default_factory=list)
    # (row id in the merged batch, is an expert row, names of its non-finite inputs)
    rows: list[tuple[int, bool, list[str]]] = field(default_factory=list)


class NonFiniteUpdate(RuntimeError):
    """An optimizer step with a non-finite loss or gradient; `findings` from every rank."""

    def __init__(self, findings: list[Finding], grads_finite: list[bool]):
        super().__init__(findings, grads_finite)
        self.findings = findings
        self.grads_finite = grads_finite

    def __str__(self) -> str:
        return describe(self, step=None, row_names=None)


def _value(metric: Any) -> float:
    if hasattr(metric, "aggregate"):
        return float(metric.aggregate())
    return float(metric)


def _non_finite(x: torch.Tensor) -> torch.Tensor:
    return ~torch.isfinite(x.detach())


def inspect_micro_batch(
    loss: torch.Tensor, metrics: dict[str, Any], model_output: dict, data: Any, rank: int
) -> Finding | None:
    """A `Finding` if the loss or one of its terms is non-finite, else None."""
    terms = [name for key, name in TERMS.items() if key in metrics and not _finite_number(metrics[key])]
    loss_finite = bool(torch.isfinite(loss.detach()).all())
    if loss_finite and not terms:
        return None
    return Finding(rank=rank, loss_finite=loss_finite, terms=terms, rows=_bad_rows(model_output, data))


def _finite_number(metric: Any) -> bool:
    try:
        value = _value(metric)
    except (TypeError, ValueError):
        return True
    return value == value and abs(value) != float("inf")


def _bad_rows(model_output: dict, data: Any) -> list[tuple[int, bool, list[str]]]:
    from verl.workers.utils.padding import no_padding_2_padding

    fields = [k for k in ("response_mask", "is_expert", ROW_ID, *_TOKEN_INPUTS, *_ROW_INPUTS) if k in data]
    batch = data.select(*fields).to_padded_tensor()
    mask = batch["response_mask"].bool()
    bad: dict[str, torch.Tensor] = {}
    per_token = {}
    for name in ("log_probs", "entropy"):
        if model_output.get(name) is not None:
            per_token[name] = no_padding_2_padding(model_output[name], data)
    per_token.update({k: batch[k] for k in _TOKEN_INPUTS if k in batch.keys()})
    for name, values in per_token.items():
        if values.dim() == 1:  # a per-row value (e.g. advantages [B])
            bad[name] = _non_finite(values)
        else:
            bad[name] = (_non_finite(values) & mask).any(dim=-1)
    for name in _ROW_INPUTS:
        if name in batch.keys():
            bad[name] = _non_finite(batch[name].float())
    n = mask.shape[0]
    row_ids = batch[ROW_ID].tolist() if ROW_ID in batch.keys() else list(range(n))
    is_expert = batch["is_expert"].bool().tolist() if "is_expert" in batch.keys() else [False] * n
    rows = []
    for i in range(n):
        names = [name for name, flags in bad.items() if bool(flags[i])]
        if names:
            rows.append((int(row_ids[i]), bool(is_expert[i]), names))
    return rows


def grads_are_finite(module: torch.nn.Module) -> bool:
    """Whether every local gradient shard of `module` is finite."""
    for param in module.parameters():
        grad = param.grad
        if grad is None:
            continue
        if hasattr(grad, "to_local"):  # a DTensor shard (FSDP2)
            grad = grad.to_local()
        if not bool(torch.isfinite(grad).all()):
            return False
    return True


def check_before_step(
    findings: list[Finding], grads_finite: bool, group: Any = None
) -> NonFiniteUpdate | None:
    """Exchange this rank's findings with every rank of `group`; the same verdict everywhere."""
    local = (findings, grads_finite)
    if dist.is_initialized():
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, local, group=group)
    else:
        gathered = [local]
    all_findings = [f for rank_findings, _ in gathered for f in rank_findings]
    all_grads = [bool(g) for _, g in gathered]
    if all_findings or not all(all_grads):
        return NonFiniteUpdate(all_findings, all_grads)
    return None


def describe(error: NonFiniteUpdate, step: int | None, row_names: list[str] | None) -> str:
    """One message: the step, the terms, the rows (named by the driver when it can)."""
    terms = sorted({t for f in error.findings for t in f.terms})
    where = f"step {step}" if step is not None else "an update"
    parts = [f"non-finite {'loss' if error.findings else 'gradient'} at {where}"]
    if terms:
        parts.append("term(s): " + ", ".join(terms))
    elif error.findings:
        parts.append("the total loss is non-finite while every logged term is finite")
    rows: dict[int, tuple[bool, set[str]]] = {}
    for f in error.findings:
        for row, expert, names in f.rows:
            rows.setdefault(row, (expert, set()))[1].update(names)
    if rows:
        shown = []
        for row in sorted(rows)[:8]:
            expert, names = rows[row]
            if row_names is not None and row < len(row_names):
                label = row_names[row]
            else:
                label = f"{'expert' if expert else 'rollout'} row {row} of the merged batch"
            shown.append(f"{label} ({', '.join(sorted(names))})")
        more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
        parts.append("rows: " + "; ".join(shown) + more)
    elif error.findings:
        parts.append("no row has a non-finite input: the loss arithmetic itself overflowed")
    bad_ranks = [r for r, ok in enumerate(error.grads_finite) if not ok]
    if bad_ranks:
        parts.append(f"non-finite gradients on rank(s) {bad_ranks}")
    return "; ".join(parts)


def poison_first_row(model_output: dict, data: Any, step: int, rank: int) -> bool:
    """The test hook (see the module docstring): True if this call poisoned a row."""
    spec = os.environ.get(TEST_HOOK_ENV)
    if not spec or rank != 0:
        return False
    want_step, kind = spec.split(":")
    if int(want_step) != step or "is_expert" not in data:
        return False
    flags = data["is_expert"].bool().tolist()
    matches = [i for i, e in enumerate(flags) if e == (kind == "expert")]
    if not matches:
        return False
    row = matches[0]
    log_probs = model_output["log_probs"]
    if log_probs.is_nested:
        offsets = log_probs.offsets()
        values = log_probs.values().clone()
        values[offsets[row] : offsets[row + 1]] = float("nan")
        model_output["log_probs"] = torch.nested.nested_tensor_from_jagged(values, offsets)
    else:
        offsets = data["input_ids"].offsets()
        poisoned = log_probs.clone()
        poisoned[offsets[row] : offsets[row + 1]] = float("nan")
        model_output["log_probs"] = poisoned
    os.environ[TEST_HOOK_ENV] = ""  # once
    return True
