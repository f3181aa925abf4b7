"""Read verl's `file` logger output (one JSON object per line) and plot training curves."""

from __future__ import annotations

import json
from pathlib import Path

REWARD = "critic/score/mean"
MU = "chord/mu"


def read_metrics(path: str | Path) -> list[dict]:
    """Training rows of a metrics.jsonl, one per step (validation-only rows are skipped).

    verl writes `{"step": N, "data": {...}}`; a resumed run appends, so a step logged twice
    keeps its last entry.
    """
    by_step: dict[int, dict] = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {line_no} is not JSON: {exc}") from None
            data = record.get("data", record)
            if REWARD in data:
                by_step[int(record.get("step", data.get("training/global_step", line_no)))] = data
    if not by_step:
        raise ValueError(f"{path}: no training steps logged (no {REWARD!r} key)")
    return [by_step[s] | {"step": s} for s in sorted(by_step)]


def plot_reward_and_mu(rows: list[dict], out: str | Path) -> Path:
    """One PNG: mean on-policy reward (left axis) and mu (right axis) per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, [r[REWARD] for r in rows], color="tab:blue", label="on-policy reward (mean)")
    ax.set_xlabel("training step")
    ax.set_ylabel("reward", color="tab:blue")
    ax.grid(alpha=0.3)
    if all(MU in r for r in rows):
        ax2 = ax.twinx()
        ax2.plot(steps, [r[MU] for r in rows], color="tab:orange", linestyle="--", label="mu")
        ax2.set_ylabel("mu", color="tab:orange")
        ax2.set_ylim(-0.02, 1.02)
    ax.set_title("CHORD on the tiny task: reward and mu per step")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out
