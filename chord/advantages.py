"""GRPO outcome advantages that keep expert rows out of the group statistics."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from chord.tensor_checks import check_float_tensor, check_mask, check_number, check_row_flags

__all__ = ["broadcast_to_tokens", "grpo_outcome_advantages"]


def _group_index(group_ids: Any, batch: int) -> torch.Tensor:
    """Map arbitrary hashable ids (strings, ints, a tensor or array of them) to ``0..G-1``, ``[B]``."""
    if isinstance(group_ids, torch.Tensor) or hasattr(group_ids, "tolist"):
        ids: Sequence[Hashable] = group_ids.tolist()
    else:
        ids = list(group_ids)
    if len(ids) != batch:
        raise ValueError(f"group_ids: expected {batch} ids (one per row of scores), got {len(ids)}")
    index: dict[Hashable, int] = {}
    try:
        return torch.tensor([index.setdefault(g, len(index)) for g in ids], dtype=torch.long)
    except TypeError as err:  # unhashable id, e.g. a list
        raise ValueError(f"group_ids: ids must be hashable ({err})") from err


def grpo_outcome_advantages(
    scores: torch.Tensor,
    group_ids: Any,
    is_expert: torch.Tensor,
    *,
    eps: float = 1e-6,
    norm_by_std: bool = True,
    expert_in_groups: bool = False,
) -> torch.Tensor:
    """Per-row GRPO advantages ``[B]`` (float32) from outcome ``scores [B]``.

    For each group (rows sharing a ``group_ids`` entry, e.g. a prompt uid), over its
    participating rows only: ``A_b = (r_b - mean) / (std + eps)`` (``norm_by_std``) or
    ``r_b - mean``. ``std`` is the unbiased sample std (divisor n - 1), as ``torch.std`` in
    verl's GRPO estimator.

    Participating rows: the on-policy rows; with ``expert_in_groups=True`` (LUFFY) also the expert
    rows, which then get advantages too. Otherwise expert rows get 0 and never enter any mean or
    std. A group with a single participating row gets 0: without a second sample there is no
    baseline to compare against (verl instead uses mean 0, std 1 there, i.e. ``A = r``, which
    would turn a lone sample's raw reward into an advantage).
    """
    r = check_float_tensor("scores", scores)
    if r.dim() != 1:
        raise ValueError(f"scores: expected shape [B], got {tuple(r.shape)}")
    check_number("eps", eps, low=0.0)
    batch = r.shape[0]
    expert = check_row_flags("is_expert", is_expert, batch).to(r.device)
    group = _group_index(group_ids, batch).to(r.device)
    r = r.detach()

    part = torch.ones_like(r) if expert_in_groups else (~expert).float()
    n_groups = int(group.max()) + 1 if batch else 0
    count = torch.zeros(n_groups, device=r.device).index_add_(0, group, part)
    total = torch.zeros(n_groups, device=r.device).index_add_(0, group, r * part)
    mean = total / count.clamp(min=1.0)
    centred = (r - mean[group]) * part
    sq = torch.zeros(n_groups, device=r.device).index_add_(0, group, centred**2)
    std = torch.sqrt(sq / (count - 1.0).clamp(min=1.0))
    adv = centred / (std[group] + eps) if norm_by_std else centred
    has_baseline = (count[group] > 1) & (part > 0)
    return torch.where(has_baseline, adv, torch.zeros_like(adv))


def broadcast_to_tokens(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``A[b, t] = adv[b] * mask[b, t]``: per-row advantages ``[B]`` spread over counted tokens ``[B, T]``."""
    a = check_float_tensor("adv", adv)
    if a.dim() != 1:
        raise ValueError(f"adv: expected shape [B], got {tuple(a.shape)}")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] != a.shape[0]:
        raise ValueError(f"mask: expected shape [{a.shape[0]}, T], got {tuple(getattr(mask, 'shape', ()))}")
    m = check_mask("mask", mask, tuple(mask.shape))
    return a.unsqueeze(-1) * m
