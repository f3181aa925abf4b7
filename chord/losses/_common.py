"""Small helpers shared by the loss modules (masked means, metric conversion)."""

from __future__ import annotations

import torch

# Log-ratios and log-weights are clamped to this range before exp() so that extreme
# log-probabilities (e.g. -1e4 from a masked-out vocabulary entry) stay finite.
LOG_RATIO_CLAMP = 20.0


def masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``sum(x * m) / sum(m)`` over counted entries (0 when nothing is counted); no grad."""
    x = x.detach().float()
    total = torch.where(m > 0, x, torch.zeros_like(x)).sum()
    return total / m.sum().clamp(min=1.0)


def masked_max(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Largest counted entry of a non-negative ``x`` (0 when nothing is counted); no grad."""
    x = x.detach().float().expand_as(m)
    if x.numel() == 0:
        return x.new_zeros(())
    return torch.where(m > 0, x, torch.full_like(x, -torch.inf)).max().clamp(min=0.0)


def zero_masked(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``x`` with every uncounted entry set to 0 (gradient flows only through counted entries)."""
    return torch.where(m > 0, x, torch.zeros_like(x))


def to_floats(metrics: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """Convert scalar tensors to Python floats with a single device sync."""
    keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor)}
    if keys:
        values = torch.stack([metrics[k].detach().float().reshape(()) for k in keys]).tolist()
        out.update(zip(keys, values, strict=True))
    return {k: out[k] for k in metrics}
