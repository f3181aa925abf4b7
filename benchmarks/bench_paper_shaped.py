"""The paper-shaped benchmark: every method on the shifted-expert task, over several seeds.

Runs `chord-compare --config-name shift_tiny` (task, base policy and expert data of
`chord.prepare.shift_task`, built once under --workdir) for every method, once per seed, with
the same step budget, data order and hyper-parameters (fixed in conf/shift_tiny.yaml and the
method presets before the first run; never tuned per method). chord-compare's report gives,
per method, mean +- std over seeds of the final reward, held-out accuracy (`val`),
second-skill retention (`retention`), response length, entropy, wall time and time-to-reward;
the raw per-seed values are in its JSON. Accuracies are chord-eval avg@8 of samples at
temperature 1 (`--eval-k`, `--eval-temperature`), as the reward sees the policy, and the
`base` row scores the starting policy the same way. This script adds the machine's load and
the whole run's wall time (`benchmark.json`) next to the report, and checks the papers'
orderings on the per-seed means (`recipe.compare.claims`: `claims.md`; `--claims-only`
re-checks an existing --out without training).

    python benchmarks/bench_paper_shaped.py --seeds 3 --steps 40 --jobs 2 --out docs/paper_shaped
    python benchmarks/bench_paper_shaped.py --seeds 1 --steps 2 --methods grpo,chord_phi  # smoke

A study run in parts (some methods into one --out, the others into another, same seeds,
steps and eval) is reported as one with `--merge`: the other parts' runs are copied into
--out and chord-compare re-reports every method (`--report-only`, nothing trained):

    python benchmarks/bench_paper_shaped.py --out docs/paper_shaped_v2 --merge docs/paper_shaped_v2_rest

Extra arguments are passed to chord-compare (hydra overrides included), e.g.
`shift_task.base_policy.max_steps=20` for a quick base policy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

# The papers' methods, then the newer hybrids where this checkout has their presets. The
# prefix-guided methods (uft, trapo) run with --methods; the default study leaves them out to
# fit its time budget.
CORE_METHODS = (
    "grpo",
    "sft",
    "sft_then_rl",
    "mix",
    "chord_mu",
    "chord_phi",
    "luffy",
    "iw_sft",
    "iw_sft_q",
    "dft",
)
HYBRID_METHODS = ("hpt", "srft", "relift")
CONF_METHODS = Path(__file__).resolve().parents[1] / "conf" / "method"


def default_methods() -> list[str]:
    """Every core method, and each hybrid whose preset exists in conf/method/."""
    return [*CORE_METHODS, *(m for m in HYBRID_METHODS if (CONF_METHODS / f"{m}.yaml").exists())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (chord-compare --jobs)")
    parser.add_argument("--methods", default=",".join(default_methods()))
    parser.add_argument("--out", default="outputs/paper_shaped")
    parser.add_argument("--workdir", default="outputs/shift", help="task data and base policy (built once)")
    # The reward is earned by samples at temperature 1, and the base policy's flaw (hedging,
    # conf/shift_tiny.yaml) shows only in samples: greedy decoding never hedges. So the
    # checkpoints (and the `base` row) are scored the way RL sees them: avg@8 at temperature 1.
    parser.add_argument("--eval-k", type=int, default=8, help="chord-eval samples per problem")
    parser.add_argument("--eval-temperature", type=float, default=1.0)
    parser.add_argument(
        "--claims-only", action="store_true", help="re-check the orderings of --out; train nothing"
    )
    parser.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="DIR",
        help="add another part's methods (its --out) to --out and report them all; trains nothing",
    )
    args, passthrough = parser.parse_known_args(argv)
    out = Path(args.out)
    if args.claims_only:
        return write_claims(out)
    if args.merge:
        try:
            return merge_parts(out, [Path(d) for d in args.merge], argv or sys.argv[1:])
        except ValueError as exc:
            print(f"bench_paper_shaped: error: {exc}", file=sys.stderr)
            return 2
    cmd = [
        sys.executable, "-m", "recipe.compare.cli", "--config-name", "shift_tiny",
        "--methods", args.methods, "--steps", str(args.steps), "--seeds", str(args.seeds),
        "--out", str(out), "--workdir", args.workdir, "--jobs", str(args.jobs),
        "--eval-k", str(args.eval_k), "--eval-temperature", str(args.eval_temperature), *passthrough,
    ]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    load_before, started = os.getloadavg(), time.monotonic()
    rc = subprocess.call(cmd)
    info = {
        "command": "python benchmarks/bench_paper_shaped.py " + " ".join(argv or sys.argv[1:]),
        "compare_command": cmd,
        "exit_code": rc,
        "wall_s": time.monotonic() - started,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(info, indent=1) + "\n")
    load_after = info["load_after"][0]
    print(f"bench_paper_shaped: {info['wall_s'] / 60:.1f} min, load {load_before[0]:.1f} -> {load_after:.1f}")
    if (out / "compare.json").exists():
        write_claims(out)
    return rc


# compare.json `config` keys every part of one study must share.
SHARED_SETTINGS = ("config_name", "steps", "seeds", "eval", "eval_k", "eval_temperature", "overrides")


def _read_part(folder: Path) -> dict:
    """A part's compare.json (its config and methods) and benchmark.json, or an error naming the file."""
    path = folder / "compare.json"
    if not path.exists():
        raise ValueError(f"{path} is missing: --merge takes the --out of a finished run of this benchmark")
    bench = folder / "benchmark.json"
    return {
        "config": json.loads(path.read_text())["config"],
        "benchmark": json.loads(bench.read_text()) if bench.exists() else None,
    }


def merge_parts(out: Path, others: list[Path], argv: list[str]) -> int:
    """Copy each other part's `runs/<method>/` into `out/runs/`, re-report every method with
    `chord-compare --report-only`, and record the parts' commands and wall times in benchmark.json.

    The parts must share the settings in SHARED_SETTINGS (one study, run in pieces) and have no
    method in common; the starting policy (`runs/base/`) is --out's own."""
    main = _read_part(out)
    methods = list(main["config"]["methods"])
    parts = [main]
    for folder in others:
        part = _read_part(folder)
        for key in SHARED_SETTINGS:
            if part["config"].get(key) != main["config"].get(key):
                raise ValueError(
                    f"{folder / 'compare.json'}: config.{key} is {part['config'].get(key)!r}, "
                    f"{out / 'compare.json'} has {main['config'].get(key)!r} (not one study)"
                )
        for method in part["config"]["methods"]:
            if method in methods:
                raise ValueError(f"{folder}: method {method!r} is already in {out} (a part per method)")
            stale = out / "runs" / method
            if stale.exists():
                raise ValueError(f"{stale} exists but {out} does not report it: move it first")
            methods.append(method)
        parts.append(part)
    for folder, part in zip(others, parts[1:], strict=True):
        for method in part["config"]["methods"]:
            source, target = folder / "runs" / method, out / "runs" / method
            shutil.copytree(source, target)
            old, new = str(source.resolve()), str(target.resolve())
            for result in target.rglob("result.json"):  # where the run lives now
                data = json.loads(result.read_text())
                data["run_dirs"] = [d.replace(old, new) for d in data["run_dirs"]]
                result.write_text(json.dumps(data, indent=1) + "\n")
    config = main["config"]
    cmd = [
        sys.executable, "-m", "recipe.compare.cli", "--config-name", config["config_name"],
        "--methods", ",".join(methods), "--steps", str(config["steps"]), "--seed", str(config["seeds"][0]),
        "--seeds", str(len(config["seeds"])), "--out", str(out), "--workdir", config["workdir"],
        "--eval-k", str(config["eval_k"]), "--eval-temperature", str(config["eval_temperature"]),
        "--jobs", str(config["jobs"]), *([] if config["eval"] else ["--no-eval"]), "--report-only",
        *config["overrides"],
    ]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    benchmarks = [p["benchmark"] for p in parts]
    info = {
        "command": "python benchmarks/bench_paper_shaped.py " + " ".join(argv),
        "parts": benchmarks,
        "wall_s": sum(b["wall_s"] for b in benchmarks if b),
        "exit_code": rc,
    }
    (out / "benchmark.json").write_text(json.dumps(info, indent=1) + "\n")
    if rc == 0:
        write_claims(out)
    return rc


def write_claims(out: Path) -> int:
    """`claims.md` and `claims.json` in `out` from its `compare.json`; prints the table."""
    from recipe.compare.claims import check_claims, claims_table

    path = out / "compare.json"
    if not path.exists():
        print(
            f"bench_paper_shaped: error: {path} is missing (run the benchmark with this --out first)",
            file=sys.stderr,
        )
        return 2
    report = json.loads(path.read_text())
    rows = check_claims(report["summary"])
    seeds = len(report["config"]["seeds"])
    header = (
        f"The papers' orderings on `{report['config']['config_name']}`, {report['config']['steps']} steps, "
        f"{seeds} seed(s): means over seeds, se = standard error of the difference "
        "(recipe/compare/claims.py).\n\n"
    )
    text = header + claims_table(rows)
    (out / "claims.md").write_text(text)
    (out / "claims.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
