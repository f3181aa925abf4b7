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
    rewards = [r[REWARD] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, rewards, color="tab:blue", alpha=0.35, label="on-policy reward (step mean)")
    ax.plot(steps, moving_average(rewards, 10), color="tab:blue", label="on-policy reward (10-step average)")
    ax.set_xlabel("training step")
    ax.set_ylabel("reward", color="tab:blue")
    ax.grid(alpha=0.3)
    if all(MU in r for r in rows):
        ax2 = ax.twinx()
        ax2.plot(steps, [r[MU] for r in rows], color="tab:orange", linestyle="--", label="mu")
        ax2.set_ylabel("mu", color="tab:orange")
        ax2.set_ylim(-0.02, 1.02)
        lines = ax.get_lines() + ax2.get_lines()
        ax.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize=8)
    ax.set_title("CHORD on the tiny task: reward and mu per step")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


# Panels of `plot_comparison`: (curve name, axis label), left to right, top to bottom.
COMPARISON_PANELS = (
    ("reward", "on-policy reward (mean)"),
    ("mu", "mu"),
    ("entropy", "policy entropy"),
    ("response_length", "response length (tokens)"),
)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start); `window=1` is identity."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def seed_band(
    runs: list[list[list[float]]], smooth: int = 1
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(steps, mean, min, max) over seeds of one quantity.

    `runs`: one `[[step, value], ...]` curve per seed. Each curve is smoothed first (trailing
    moving average over `smooth` logged steps), then at every step the mean, minimum and
    maximum are taken over the seeds that logged that step.
    """
    by_step: dict[float, list[float]] = {}
    for points in runs:
        values = moving_average([float(p[1]) for p in points], smooth) if points else []
        for (step, _), value in zip(points, values, strict=True):
            by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    mean = [sum(by_step[s]) / len(by_step[s]) for s in steps]
    return steps, mean, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps]


LINE_STYLES = ("-", "--", "-.")  # ":" marks stage switches


def method_style(index: int) -> tuple[str, str]:
    """(colour, line style) of the `index`-th method: tab10's ten colours, solid first, then
    dashed, then dash-dotted, so up to 30 methods stay apart."""
    return f"C{index % 10}", LINE_STYLES[(index // 10) % len(LINE_STYLES)]


def plot_comparison(
    curves_by_method: dict[str, list[dict[str, list[list[float]]]]],
    out: str | Path,
    *,
    title: str = "",
    smooth: int = 1,
    switch_steps: dict[str, list[int]] | None = None,
    size_px: tuple[int, int] = (1200, 800),
    dpi: int = 100,
) -> Path:
    """One PNG of `size_px` pixels with 2 x 2 panels (reward, mu, entropy, response length) per
    step, every method on the same axes in the same colour and line style across panels
    (`method_style`).

    `curves_by_method[method]` holds one dict per seed, `{name: [[step, value], ...]}`
    (`recipe.compare.report.curves`). A method with one seed is drawn as one line (with
    `smooth > 1` the raw values faintly and the trailing moving average on top); with several
    seeds, the mean over seeds of the smoothed curves with a shaded min-max band (`seed_band`).
    mu is never smoothed (a schedule, not a noisy estimate).
    `switch_steps[method]` marks stage switches (e.g. SFT -> RL) with a dotted vertical line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(
        2, 2, figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi, sharex=True, squeeze=False
    )
    max_seeds = max((len(runs) for runs in curves_by_method.values()), default=1)
    for (name, label), ax in zip(COMPARISON_PANELS, axes.flat, strict=True):
        for i, (method, runs) in enumerate(curves_by_method.items()):
            colour, style = method_style(i)
            window = 1 if name == "mu" else smooth
            legend = (
                method if max_seeds == 1 else f"{method} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
            )
            per_seed = [curves.get(name, []) for curves in runs]
            per_seed = [points for points in per_seed if points]
            if len(per_seed) == 1:
                steps = [p[0] for p in per_seed[0]]
                values = [p[1] for p in per_seed[0]]
                if window > 1:
                    ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
                    values = moving_average(values, window)
                ax.plot(steps, values, color=colour, linestyle=style, linewidth=1.6, label=legend)
            elif per_seed:
                steps, mean, low, high = seed_band(per_seed, window)
                ax.fill_between(steps, low, high, color=colour, alpha=0.18, linewidth=0)
                ax.plot(steps, mean, color=colour, linestyle=style, linewidth=1.6, label=legend)
            for step in (switch_steps or {}).get(method, []):
                ax.axvline(step + 0.5, color=colour, linestyle=":", linewidth=1.0)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[1]:
        ax.set_xlabel("training step")
    if title:
        notes = []
        if smooth > 1:
            notes.append(f"moving average over {smooth} steps")
        if max_seeds > 1:
            notes.append("line: mean over seeds, band: min-max over seeds")
        fig.suptitle(title + (f" ({'; '.join(notes)})" if notes else ""), y=0.99)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="upper center",
            bbox_to_anchor=(0.5, 0.955),
            ncol=min(len(handles), 6),
            frameon=False,
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
