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
# The row of the policy every method starts from, scored by the same chord-eval (no training):
# the reference every method's held-out and retention accuracy is read against.
BASE_METHOD = "base"


@dataclass
class MethodResult:
    """One method's outcome. Rewards are verl's mean on-policy score per step; accuracies are %.

    `final_reward` and `response_length` are means over the last `last_k` logged steps;
    `eval_acc`: chord-eval avg@k per benchmark on the final checkpoint; `verl_val_acc`: the
    last validation accuracy verl logged (only when validation ran); `wall_s`: training wall
    time (start-up included, evaluation excluded).
    `seed`: the run's `--seed` value (None in a result.json older than `--seeds`); `entropy`:
    mean `actor/entropy` over the same last steps; `step_wall_s`: `[[step, seconds]]`, when
    chord-compare saw each step's record, counted from the method's start (start-up, and for
    `sft_then_rl` the SFT stage and the hand-off, included). In a sweep launch (several seeds
    in one trainer process, `chord-compare --sweep`) a seed's start is when the previous seed's
    last step record was read: the first seed's `wall_s` and `step_wall_s` include the launch's
    start-up, a later seed's its reset to step 0.
    """

    method: str
    seed: int | None = None
    status: str = "ok"  # ok | failed
    steps: int = 0
    last_k: int = 0
    final_reward: float | None = None
    best_reward: float | None = None
    best_step: int | None = None
    response_length: float | None = None
    entropy: float | None = None
    eval_acc: dict[str, float] = field(default_factory=dict)
    verl_val_acc: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    step_s: float | None = None  # mean of timing_s/step
    eval_s: float | None = None
    switch_steps: list[int] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    error: str | None = None
    curves: dict[str, list[list[float]]] = field(default_factory=dict)  # name -> [[step, value], ...]
    step_wall_s: list[list[float]] = field(default_factory=list)

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
    entropy_key = CURVE_KEYS["entropy"]
    entropies = [float(row[entropy_key]) for row in rows[-k:] if _finite(row.get(entropy_key))]
    step_times = [float(row["timing_s/step"]) for row in rows if _finite(row.get("timing_s/step"))]
    return MethodResult(
        method=method,
        steps=len(rows),
        last_k=k,
        final_reward=sum(tail) / k,
        best_reward=best,
        best_step=int(best_step),
        response_length=sum(lengths) / len(lengths) if lengths else None,
        entropy=sum(entropies) / len(entropies) if entropies else None,
        step_s=sum(step_times) / len(step_times) if step_times else None,
        curves=curves(rows),
    )


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(results: list[MethodResult]) -> str:
    """One row per run. Eval columns are named after the benchmarks (union over methods); a seed
    column when the runs have more than one seed."""
    eval_names = sorted({name for r in results for name in r.eval_acc})
    val_names = sorted({name for r in results for name in r.verl_val_acc})
    last_k = max((r.last_k for r in results), default=0)
    with_seed = len({r.seed for r in results}) > 1
    header = ["method", *(["seed"] if with_seed else []), "steps", f"final reward (last {last_k})"]
    header += ["best reward (step)"]
    header += [f"eval {name} (%)" for name in eval_names]
    header += [f"verl val {name} (%)" for name in val_names]
    header += ["response length", "wall (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        best = "-" if r.best_reward is None else f"{r.best_reward:.3f} ({r.best_step})"
        steps = str(r.steps) if r.status == "ok" else f"failed after {r.steps}"
        cells = [f"`{r.method}`", *([str(r.seed)] if with_seed else []), steps, _fmt(r.final_reward, 3), best]
        cells += [_fmt(r.eval_acc.get(name), 1) for name in eval_names]
        cells += [_fmt(r.verl_val_acc.get(name), 1) for name in val_names]
        cells += [_fmt(r.response_length, 2), "-" if r.method == BASE_METHOD else f"{r.wall_s:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- over seeds
REFERENCE_METHOD = "grpo"  # time-to-reward is measured against this method's final reward


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sample standard deviation) of `values`: std = sqrt(sum((x - mean)^2) / (n - 1)).

    The std is None for fewer than 2 values, both are None for none.
    """
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))


def seed_stat(per_seed: dict[int, float | None]) -> dict[str, Any]:
    """`{"mean", "std", "n", "per_seed"}` of one quantity over seeds; None values (not measured,
    not reached) are kept in `per_seed` and left out of mean, std and n."""
    values = [float(v) for v in per_seed.values() if v is not None]
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values), "per_seed": {str(s): v for s, v in per_seed.items()}}


def fmt_mean_std(stat: dict[str, Any], digits: int) -> str:
    """`"0.375 ± 0.035"`; `"0.375 ± -"` for one value; `"-"` for none."""
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {_fmt(stat['std'], digits)}"


def first_step_reaching(points: list[list[float]], target: float, window: int) -> int | None:
    """The first step whose trailing moving average (over `window` logged steps, fewer at the
    start) of the `[[step, value], ...]` curve is >= `target`, or None if none is.

    A tolerance of 1e-9 absorbs summation order, so a curve reaches a target computed from its
    own values.
    """
    from recipe.compare.plots import moving_average

    if not points:
        return None
    averaged = moving_average([float(p[1]) for p in points], window)
    for (step, _), value in zip(points, averaged, strict=True):
        if value >= target - 1e-9:
            return int(step)
    return None


def wall_at_step(step_wall_s: list[list[float]], step: int) -> float | None:
    """Seconds from the method's start to `step` (`MethodResult.step_wall_s`), None if not seen."""
    return next((float(t) for s, t in step_wall_s if int(s) == step), None)


def time_to_reward(
    results: list[MethodResult], window: int, reference: str = REFERENCE_METHOD
) -> dict[str, dict[str, Any]] | None:
    """Per method: when its moving-average reward first reaches the reference method's final
    reward of the same seed. None when the reference method is not among the results.

    For every finished run of a seed whose reference run finished: `{"target", "step", "wall_s"}`
    (step and wall None when not reached). Summary per method: `"step"` and `"wall_s"` as
    `seed_stat` over the seeds that reached it, `"reached"` and `"seeds"` counts.
    """
    if not any(r.method == reference for r in results):
        return None
    targets = {
        r.seed: r.final_reward
        for r in results
        if r.method == reference and r.status == "ok" and r.final_reward is not None
    }
    out: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r.method for r in results if r.method != BASE_METHOD):
        per_seed: dict[int | None, dict[str, Any]] = {}
        for r in results:
            if r.method != method or r.status != "ok" or r.seed not in targets:
                continue
            target = float(targets[r.seed])
            step = first_step_reaching(r.curves.get("reward", []), target, window)
            wall = None if step is None else wall_at_step(r.step_wall_s, step)
            per_seed[r.seed] = {"target": target, "step": step, "wall_s": wall}
        out[method] = {
            "reference": reference,
            "window": window,
            "per_seed": {str(s): v for s, v in per_seed.items()},
            "step": seed_stat({s: v["step"] for s, v in per_seed.items()}),
            "wall_s": seed_stat({s: v["wall_s"] for s, v in per_seed.items()}),
            "reached": sum(v["step"] is not None for v in per_seed.values()),
            "seeds": len(per_seed),
        }
    return out


def seed_summary(results: list[MethodResult]) -> dict[str, dict[str, Any]]:
    """Per method (in order of first appearance): `runs` and `ok` counts, and for each quantity
    a `seed_stat` over its finished runs: final_reward, eval/<benchmark>, verl_val/<source>,
    response_length, entropy, wall_s (failed runs are counted in `runs`, not in the stats; the
    `base` row trains nothing and has no wall time)."""
    out: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r.method for r in results):
        runs = [r for r in results if r.method == method]
        ok = [r for r in runs if r.status == "ok"]
        stats: dict[str, dict[str, Any]] = {"final_reward": seed_stat({r.seed: r.final_reward for r in ok})}
        for name in sorted({n for r in ok for n in r.eval_acc}):
            stats[f"eval/{name}"] = seed_stat({r.seed: r.eval_acc.get(name) for r in ok})
        for name in sorted({n for r in ok for n in r.verl_val_acc}):
            stats[f"verl_val/{name}"] = seed_stat({r.seed: r.verl_val_acc.get(name) for r in ok})
        stats["response_length"] = seed_stat({r.seed: r.response_length for r in ok})
        stats["entropy"] = seed_stat({r.seed: r.entropy for r in ok})
        stats["wall_s"] = seed_stat({r.seed: None if r.method == BASE_METHOD else r.wall_s for r in ok})
        out[method] = {"runs": len(runs), "ok": len(ok), "seeds": [r.seed for r in runs], **stats}
    return out


def fmt_reach(entry: dict[str, Any], key: str, digits: int) -> str:
    """A time-to-reward cell: `"12.0 ± 3.0 (2/3 reached)"`, `"- (0/3 reached)"`."""
    return f"{fmt_mean_std(entry[key], digits)} ({entry['reached']}/{entry['seeds']} reached)"


def seed_table(
    summary: dict[str, dict[str, Any]], reach: dict[str, dict[str, Any]] | None, last_k: int
) -> str:
    """One row per method: mean ± sample std over seeds of every `seed_summary` quantity, and
    the time-to-reward columns when `reach` (from `time_to_reward`) is given."""
    prefixes = ("eval/", "verl_val/")
    names = list(dict.fromkeys(k for s in summary.values() for k in s if k.startswith(prefixes)))
    names.sort(key=lambda k: (not k.startswith("eval/"), k))
    header = ["method", "runs", f"final reward (last {last_k})"]
    for key in names:
        kind, bench = key.split("/", 1)
        header.append(f"eval {bench} (%)" if kind == "eval" else f"verl val {bench} (%)")
    header += ["response length", f"entropy (last {last_k})", "wall (s)"]
    if reach is not None:
        header += ["steps to GRPO's reward", "wall (s) to GRPO's reward"]
    empty = {"mean": None}
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, s in summary.items():
        runs = str(s["runs"]) if s["ok"] == s["runs"] else f"{s['ok']}/{s['runs']} ok"
        cells = [f"`{method}`", runs, fmt_mean_std(s["final_reward"], 3)]
        cells += [fmt_mean_std(s.get(key, empty), 1) for key in names]
        cells += [fmt_mean_std(s["response_length"], 2), fmt_mean_std(s["entropy"], 3)]
        cells.append(fmt_mean_std(s["wall_s"], 0))
        if reach is not None:
            entry = reach.get(method)
            if entry is None:
                cells += ["-", "-"]
            else:
                cells += [fmt_reach(entry, "step", 1), fmt_reach(entry, "wall_s", 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    results: list[MethodResult],
    config: dict[str, Any],
    out_dir: Path,
    plot: Path | None = None,
    window: int = 1,
) -> tuple[Path, Path]:
    """Write `compare.json` and `compare.md`.

    JSON: `config`, `methods` (every run's result with its seed and curves), `summary`
    (`seed_summary`: per method mean, sample std and per-seed values) and `time_to_reward`
    (`time_to_reward` with moving-average `window`; null without a GRPO run). Markdown: the
    mean ± std table, then one row per run.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "compare.json", out_dir / "compare.md"
    summary = seed_summary(results)
    reach = time_to_reward(results, window)
    report = {
        "config": config,
        "methods": [r.to_dict() for r in results],
        "summary": summary,
        "time_to_reward": reach,
    }
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    seeds = sorted({r.seed for r in results if r.seed is not None}) or [config.get("seed")]
    seed_text = f"seed {seeds[0]}"
    if len(seeds) > 1:
        seed_text = f"{len(seeds)} seeds ({', '.join(map(str, seeds))})"
    last_k = max((r.last_k for r in results), default=0)
    lines = [
        "# chord-compare",
        "",
        f"`{config.get('command', 'chord-compare')}`",
        "",
        f"config `{config.get('config_name')}`, {seed_text}, {config.get('steps')} steps per "
        "method and seed. Reward: mean on-policy score per step (final = mean over the last steps, "
        "their number in the column header); eval: chord-eval avg@k on the final checkpoint; "
        "response length and entropy (`actor/entropy`): means over the same last steps; wall: "
        "training time including start-up"
        + (
            f", {config['jobs']} runs at a time (`--jobs`), so it includes sharing the machine."
            if config.get("jobs", 1) > 1
            else "."
        ),
        "",
        "## Mean ± standard deviation over seeds",
        "",
        "Sample standard deviation (n - 1); `-` with one seed. Runs that failed are left out of the "
        "statistics (`runs` shows `ok/all`).",
        "",
        seed_table(summary, reach, last_k).rstrip("\n"),
        "",
    ]
    if any(r.method == BASE_METHOD for r in results):
        lines += [
            f"`{BASE_METHOD}`: the policy every method starts from (`actor_rollout_ref.model.path`), "
            "scored by the same chord-eval without training: read the eval columns against it.",
            "",
        ]
    if reach is None:
        lines.append(
            f"No time-to-reward columns: `{REFERENCE_METHOD}` is not among the methods "
            "(they measure when a method reaches GRPO's final reward)."
        )
    else:
        steps = f"{window} step{'s' if window != 1 else ''}"
        lines.append(
            f"Time to GRPO's reward: per seed, the first step at which the method's moving-average "
            f"reward (window {steps}) reaches `{REFERENCE_METHOD}`'s final reward of the same seed, "
            "and the wall time at that step, counted from the method's start (start-up included) to the "
            "moment chord-compare saw that step's record; mean ± std over the seeds that reached it, "
            "with how many did."
        )
    lines += ["", "## Per run", "", markdown_table(results).rstrip("\n")]
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        seed = "" if len(seeds) == 1 else f" (seed {r.seed})"
        lines += ["", f"- `{r.method}`{seed} failed: {r.error}"]
    if plot is not None:
        lines += ["", f"![curves]({plot.name})"]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path
