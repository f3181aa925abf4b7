"""`chord-compare`'s results: per-method summaries, the Markdown table and the JSON report.

Pure Python on metric rows (`recipe.compare.plots.read_metrics` output: one dict per training step
with a "step" key), so it is tested without running the trainer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REWARD = "critic/score/mean"
# What the plots and the JSON curves show, by short name.
CURVE_KEYS = {
    "reward": REWARD,
    "mu": "chord/mu",
    "entropy": "actor/entropy",
    "response_length": "response_length/mean",
}
_VAL_PREFIX, _VAL_SUFFIX = "val-core/", "/acc/mean@1"


@dataclass
class MethodResult:
    """One method's outcome. Rewards are verl's mean on-policy score per step; accuracies are %.

    `final_reward` and `response_length` are means over the last `last_k` logged steps;
    `eval_acc`: chord-eval avg@k per benchmark on the final checkpoint; `verl_val_acc`: the
    last validation accuracy verl logged (only when validation ran); `wall_s`: training wall
    time (start-up included, evaluation excluded).
    """

    method: str
    status: str = "ok"  # ok | failed
    steps: int = 0
    last_k: int = 0
    final_reward: float | None = None
    best_reward: float | None = None
    best_step: int | None = None
    response_length: float | None = None
    eval_acc: dict[str, float] = field(default_factory=dict)
    verl_val_acc: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    step_s: float | None = None  # mean of timing_s/step
    eval_s: float | None = None
    switch_steps: list[int] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    error: str | None = None
    curves: dict[str, list[list[float]]] = field(default_factory=dict)  # name -> [[step, value], ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def join_stages(stage_rows: list[list[dict]], offsets: list[int]) -> list[dict]:
    """The rows of consecutive stages on one step axis: a stage's step s becomes s + its offset."""
    if len(stage_rows) != len(offsets):
        raise ValueError(f"{len(stage_rows)} stages but {len(offsets)} offsets")
    joined: list[dict] = []
    for rows, offset in zip(stage_rows, offsets, strict=True):
        for row in rows:
            step = int(row["step"]) + offset
            if joined and step <= joined[-1]["step"]:
                raise ValueError(f"stage steps overlap at step {step}: check the offsets")
            joined.append({**row, "step": step})
    return joined


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def curves(rows: list[dict]) -> dict[str, list[list[float]]]:
    """`{name: [[step, value], ...]}` for every `CURVE_KEYS` metric the rows log (finite values)."""
    out: dict[str, list[list[float]]] = {}
    for name, key in CURVE_KEYS.items():
        points = [[row["step"], float(row[key])] for row in rows if _finite(row.get(key))]
        if points:
            out[name] = points
    return out


def validation_accuracy(records: list[dict]) -> dict[str, float]:
    """The last logged `val-core/<data_source>/acc/mean@1` per data source, in %.

    `records`: every record of verl's metrics file (validation-only rows included), as
    `{"step": N, "data": {...}}` or flat dicts.
    """
    last: dict[str, float] = {}
    for record in records:
        data = record.get("data", record)
        for key, value in data.items():
            if key.startswith(_VAL_PREFIX) and key.endswith(_VAL_SUFFIX) and _finite(value):
                last[key[len(_VAL_PREFIX) : -len(_VAL_SUFFIX)]] = 100.0 * float(value)
    return last


def summarize(method: str, rows: list[dict], last_k: int) -> MethodResult:
    """Reward and length summaries of one method's training rows (see `MethodResult`)."""
    if last_k < 1:
        raise ValueError(f"--last-k must be >= 1, got {last_k}")
    rewards = [(row["step"], float(row[REWARD])) for row in rows if _finite(row.get(REWARD))]
    if not rewards:
        raise ValueError(f"{method}: no step logged {REWARD!r}")
    k = min(last_k, len(rewards))
    tail = [value for _, value in rewards[-k:]]
    best_step, best = max(rewards, key=lambda item: (item[1], -item[0]))  # earliest best
    length_key = CURVE_KEYS["response_length"]
    lengths = [float(row[length_key]) for row in rows[-k:] if _finite(row.get(length_key))]
    step_times = [float(row["timing_s/step"]) for row in rows if _finite(row.get("timing_s/step"))]
    return MethodResult(
        method=method,
        steps=len(rows),
        last_k=k,
        final_reward=sum(tail) / k,
        best_reward=best,
        best_step=int(best_step),
        response_length=sum(lengths) / len(lengths) if lengths else None,
        step_s=sum(step_times) / len(step_times) if step_times else None,
        curves=curves(rows),
    )


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(results: list[MethodResult]) -> str:
    """One row per method. Eval columns are named after the benchmarks (union over methods)."""
    eval_names = sorted({name for r in results for name in r.eval_acc})
    val_names = sorted({name for r in results for name in r.verl_val_acc})
    last_k = max((r.last_k for r in results), default=0)
    header = ["method", "steps", f"final reward (last {last_k})", "best reward (step)"]
    header += [f"eval {name} (%)" for name in eval_names]
    header += [f"verl val {name} (%)" for name in val_names]
    header += ["response length", "wall (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        best = "-" if r.best_reward is None else f"{r.best_reward:.3f} ({r.best_step})"
        cells = [f"`{r.method}`", str(r.steps), _fmt(r.final_reward, 3), best]
        cells += [_fmt(r.eval_acc.get(name), 1) for name in eval_names]
        cells += [_fmt(r.verl_val_acc.get(name), 1) for name in val_names]
        cells += [_fmt(r.response_length, 2), f"{r.wall_s:.0f}"]
        if r.status != "ok":
            cells[1] = f"failed after {r.steps}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    results: list[MethodResult], config: dict[str, Any], out_dir: Path, plot: Path | None = None
) -> tuple[Path, Path]:
    """Write `compare.json` (config + every result with its curves) and `compare.md`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "compare.json", out_dir / "compare.md"
    report = {"config": config, "methods": [r.to_dict() for r in results]}
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# chord-compare",
        "",
        f"`{config.get('command', 'chord-compare')}`",
        "",
        f"config `{config.get('config_name')}`, seed {config.get('seed')}, {config.get('steps')} steps per "
        f"method. Reward: mean on-policy score per step (final = mean over the last steps, their number "
        "in the column header); eval: chord-eval avg@k on the final checkpoint; response length: mean "
        "tokens over the same last steps; wall: training time including start-up.",
        "",
        markdown_table(results).rstrip("\n"),
    ]
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        lines += ["", f"- `{r.method}` failed: {r.error}"]
    if plot is not None:
        lines += ["", f"![curves]({plot.name})"]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
