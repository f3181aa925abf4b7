"""Aggregation of a per-token loss matrix into one scalar ("loss_agg_mode").

Notation: ``v`` values ``[B, T]``, ``m`` 0/1 mask ``[B, T]``, ``n_tok = sum(m)``,
``n_rows`` = number of rows with at least one counted token (rows with no counted token,
e.g. the other kind of row in a CHORD batch, take no part in any mean).

- ``token-mean``:              ``sum(v * m) / n_tok``
- ``seq-mean-token-mean``:     ``sum_b (sum_t v*m / sum_t m) / n_rows``
- ``seq-mean-token-sum``:      ``sum_b (sum_t v*m) / n_rows``
- ``seq-mean-token-sum-norm``: ``sum(v * m) / (n_rows * T)``, ``T = horizon or mask.shape[-1]``

``normalizer`` replaces the count in the denominator: ``n_tok`` for ``token-mean``, ``n_rows``
for the three ``seq-*`` modes (so ``seq-mean-token-sum-norm`` divides by ``normalizer * T``).
Pass the count of the WHOLE mini-batch (summed over micro-batches and data-parallel ranks, as
returned by :func:`agg_normalizer` on each part) and the sum of the micro-batch results equals
the full-batch result, value and gradient. A zero denominator (empty mask, or normalizer 0)
yields 0, not NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from chord.tensor_checks import check_choice, check_float_tensor, check_mask, check_number

__all__ = ["AGG_MODES", "agg_normalizer", "aggregate", "aggregate_checked"]

Normalizer = int | float | torch.Tensor | None


def _row_count(m: torch.Tensor) -> torch.Tensor:
    return (m.sum(-1) > 0).sum().float()


def _token_count(m: torch.Tensor) -> torch.Tensor:
    return m.sum()


def _safe(denominator: torch.Tensor) -> torch.Tensor:
    # A zero count only happens with an empty numerator, so dividing by 1 gives exactly 0.
    return torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _token_mean(v: torch.Tensor, m: torch.Tensor, n: torch.Tensor, horizon: int) -> torch.Tensor:
    return v.sum() / _safe(n)


def _seq_mean_token_mean(v: torch.Tensor, m: torch.Tensor, n: torch.Tensor, horizon: int) -> torch.Tensor:
    row_mean = v.sum(-1) / m.sum(-1).clamp(min=1.0)
    return row_mean.sum() / _safe(n)


def _seq_mean_token_sum(v: torch.Tensor, m: torch.Tensor, n: torch.Tensor, horizon: int) -> torch.Tensor:
    return v.sum() / _safe(n)


def _seq_mean_token_sum_norm(v: torch.Tensor, m: torch.Tensor, n: torch.Tensor, horizon: int) -> torch.Tensor:
    return v.sum() / (_safe(n) * horizon)


# mode -> (reduction given masked values, mask, denominator count, horizon; count function)
AGG_MODES: dict[str, tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "token-mean": (_token_mean, _token_count),
    "seq-mean-token-mean": (_seq_mean_token_mean, _row_count),
    "seq-mean-token-sum": (_seq_mean_token_sum, _row_count),
    "seq-mean-token-sum-norm": (_seq_mean_token_sum_norm, _row_count),
}


def agg_normalizer(mask: torch.Tensor, mode: str = "token-mean") -> torch.Tensor:
    """The count ``mode`` divides by for this mask (float32 scalar tensor).

    ``token-mean``: number of counted tokens; ``seq-*``: number of rows with a counted token.
    Sum it over micro-batches / ranks to get the ``normalizer`` of :func:`aggregate`.
    """
    check_choice("mode", mode, AGG_MODES)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError(f"mask: expected a [B, T] tensor, got {getattr(mask, 'shape', type(mask).__name__)}")
    m = check_mask("mask", mask, tuple(mask.shape))
    return AGG_MODES[mode][1](m)


def _normalizer_tensor(normalizer: Normalizer, name: str, device: torch.device) -> torch.Tensor:
    if isinstance(normalizer, torch.Tensor):
        if normalizer.numel() != 1:
            raise ValueError(f"{name}: expected a scalar, got a tensor of shape {tuple(normalizer.shape)}")
        return normalizer.detach().reshape(()).to(device=device, dtype=torch.float32)
    value = check_number(name, normalizer, low=0.0)
    return torch.tensor(value, dtype=torch.float32, device=device)


def aggregate_checked(
    values: torch.Tensor,
    m: torch.Tensor,
    mode: str,
    normalizer: Normalizer = None,
    *,
    horizon: int | None = None,
    normalizer_name: str = "normalizer",
) -> torch.Tensor:
    """:func:`aggregate` on already validated float32 inputs (used inside the loss functions)."""
    reduce, count = AGG_MODES[mode]
    n = count(m) if normalizer is None else _normalizer_tensor(normalizer, normalizer_name, values.device)
    # where() rather than v * m: a non-finite value on a padding token must not leak as NaN.
    masked = torch.where(m > 0, values, torch.zeros_like(values))
    return reduce(masked, m, n, horizon if horizon is not None else m.shape[-1])


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token-mean",
    normalizer: Normalizer = None,
    *,
    horizon: int | None = None,
) -> torch.Tensor:
    """Reduce ``values [B, T]`` over the 0/1 ``mask [B, T]`` to a float32 scalar.

    See the module docstring for the four modes and the meaning of ``normalizer``
    (token count for ``token-mean``, row count for ``seq-*``). ``horizon`` overrides ``T`` in
    ``seq-mean-token-sum-norm`` (e.g. the configured max response length when micro-batches are
    padded to different lengths).
    """
    check_choice("mode", mode, AGG_MODES)
    v = check_float_tensor("values", values)
    if v.dim() != 2:
        raise ValueError(f"values: expected shape [B, T], got {tuple(v.shape)}")
    m = check_mask("mask", mask, tuple(v.shape), like="values")
    if horizon is not None:
        check_number("horizon", horizon, low=0, low_open=True)
    return aggregate_checked(v, m, mode, normalizer, horizon=horizon)
