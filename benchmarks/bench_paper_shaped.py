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

Extra arguments are passed to chord-compare (hydra overrides included), e.g.
`shift_task.base_policy.max_steps=20` for a quick base policy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    args, passthrough = parser.parse_known_args(argv)
    out = Path(args.out)
    if args.claims_only:
        return write_claims(out)
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
