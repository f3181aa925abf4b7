"""`chord-eval`: sample k responses per problem from a checkpoint and report avg@k / pass@k.

    chord-eval --model CKPT --data aime24.parquet aime25.parquet amc.parquet \\
        --k 8 --k-per-benchmark aime24=32,aime25=32 --max-new-tokens 8192 --out outputs/eval/run1

CKPT is an HF model directory or a verl FSDP checkpoint (see `recipe.eval.checkpoint`). Each
parquet file (or every `*.parquet` in a directory) is one benchmark in verl's RL prompt format,
named after the file stem. Responses are scored with `chord.rewards.compute_score` (the
training rewards); a sample is correct when its score is >= 1.0 (`chord.metrics.is_correct`).

Per benchmark: avg@k (mean correctness over the samples of each problem, averaged over
problems), unbiased pass@b for b in 1, 2, 4, ... up to k, mean response length in tokens and
truncation rate. Writes `eval_results.json` (config, summary, every sample) and
`eval_results.md` (a table, one row per benchmark) to --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chord.metrics import BenchmarkSummary, is_correct, markdown_table, summarize_benchmark
from recipe.eval.checkpoint import ResolvedModel, resolve_model
from recipe.eval.data import Benchmark, EvalProblem, load_benchmark
from recipe.eval.generate import Completion, Generator, SamplingConfig, choose_backend, render_prompts

RESULTS_JSON = "eval_results.json"
RESULTS_MD = "eval_results.md"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chord-eval", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="HF model dir or verl checkpoint (global_step_N[/actor])")
    p.add_argument("--data", required=True, nargs="+", help="benchmark parquet files or dirs of them")
    p.add_argument("--k", type=int, default=8, help="samples per problem and top pass@k budget (default 8)")
    p.add_argument("--k-per-benchmark", default="", help="per-benchmark k, e.g. aime24=32,amc=8")
    p.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="samples drawn per problem (>= k; default k): pass@k uses all",
    )
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=["auto", "vllm", "hf"])
    p.add_argument("--out", default=None, help="output dir (default outputs/eval/<model name>)")
    p.add_argument("--max-problems", type=int, default=None, help="first N problems of each benchmark")
    p.add_argument(
        "--dtype", default="auto", help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16"
    )
    p.add_argument("--score-workers", type=int, default=4, help="threads scoring responses")
    p.add_argument("--batch-size", type=int, default=32, help="HF backend: sequences per generate call")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM backend")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="vLLM backend")
    p.add_argument("--max-model-len", type=int, default=None, help="vLLM backend")
    p.add_argument(
        "--kv-cache-memory-bytes",
        type=int,
        default=None,
        help="vLLM backend: a fixed KV cache size instead of --gpu-memory-utilization "
        "(default on CPU: 512 MiB, since there the utilization is a share of host RAM)",
    )
    p.add_argument("--merged-dir", default=None, help="where to write a merged verl checkpoint (kept)")
    p.add_argument("--trust-remote-code", action="store_true")
    return p


def parse_k_per_benchmark(spec: str) -> dict[str, int]:
    """`"aime24=32,amc=8"` -> `{"aime24": 32, "amc": 8}` (names lower-cased)."""
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"--k-per-benchmark: expected NAME=K with K >= 1, got {item!r}")
        out[name.strip().lower()] = int(value)
    return out


def benchmark_files(paths: list[str]) -> list[Path]:
    """The parquet files named by --data (a directory stands for its `*.parquet`, sorted)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.parquet"))
            if not found:
                raise FileNotFoundError(f"--data: no *.parquet files in {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"--data: {path} does not exist")
    stems = [f.stem.lower() for f in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f"--data: benchmark names must be unique, repeated: {duplicates}")
    return files


def plan_samples(
    names: list[str], k: int, k_overrides: dict[str, int], n_samples: int | None
) -> dict[str, tuple[int, int]]:
    """`{benchmark: (k, n)}`: k from --k-per-benchmark (case-insensitive) or --k; n = --n-samples or k."""
    if k < 1:
        raise ValueError(f"--k must be >= 1, got {k}")
    unknown = sorted(set(k_overrides) - {n.lower() for n in names})
    if unknown:
        raise ValueError(f"--k-per-benchmark names unknown benchmark(s) {unknown}; benchmarks: {names}")
    plan = {}
    for name in names:
        k_b = k_overrides.get(name.lower(), k)
        n_b = k_b if n_samples is None else n_samples
        if n_b < k_b:
            raise ValueError(f"--n-samples={n_b} is smaller than k={k_b} of benchmark {name!r}")
        plan[name] = (k_b, n_b)
    return plan


def score_sample(problem: EvalProblem, completion: Completion) -> dict[str, Any]:
    """Score one completion with `chord.rewards.compute_score`; the truncation flag travels in
    `extra_info["truncated"]` so the math reward can give its truncation score (-1)."""
    from chord.rewards import compute_score

    extra_info = {**problem.extra_info, "truncated": completion.truncated}
    result = compute_score(problem.data_source, completion.text, problem.ground_truth, extra_info)
    score = float(result["score"])
    sample = {"response": completion.text, "score": score, "correct": is_correct(score)}
    sample.update({key: result[key] for key in ("reason", "pred") if key in result})
    sample.update(num_tokens=completion.num_tokens, truncated=completion.truncated)
    return sample


def score_samples(
    problems: list[EvalProblem], completions: list[list[Completion]], workers: int = 4
) -> list[list[dict[str, Any]]]:
    """`score_sample` for every (problem, completion), `workers` threads at a time (the math
    check itself runs in chord.rewards' worker processes); the result has the input's shape."""
    if workers < 1:
        raise ValueError(f"--score-workers must be >= 1, got {workers}")
    jobs = [(p, c) for p, outs in zip(problems, completions, strict=True) for c in outs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        flat = iter(list(pool.map(lambda job: score_sample(*job), jobs)))
    return [[next(flat) for _ in outs] for outs in completions]


def evaluate_benchmark(
    generator: Generator,
    tokenizer: Any,
    bench: Benchmark,
    k: int,
    n: int,
    sampling: SamplingConfig,
    score_workers: int = 4,
) -> tuple[BenchmarkSummary, list[dict[str, Any]], float]:
    """Generate n samples per problem, score them, summarise. Returns (summary, problems, seconds)."""
    started = time.perf_counter()
    prompts = render_prompts(tokenizer, [p.messages for p in bench.problems])
    completions = generator.generate(prompts, n, sampling)
    for problem, outs in zip(bench.problems, completions, strict=True):
        if len(outs) != n:
            raise RuntimeError(f"{bench.name} row {problem.row}: backend returned {len(outs)} of {n} samples")
    rows = []
    scored = score_samples(bench.problems, completions, score_workers)
    for problem, samples in zip(bench.problems, scored, strict=True):
        rows.append(
            {
                "row": problem.row,
                "data_source": problem.data_source,
                "prompt": problem.messages,
                "ground_truth": problem.ground_truth,
                "num_correct": sum(s["correct"] for s in samples),
                "samples": samples,
            }
        )
    summary = summarize_benchmark(
        bench.name,
        [[s["correct"] for s in r["samples"]] for r in rows],
        k=k,
        scores=[[s["score"] for s in r["samples"]] for r in rows],
        lengths=[[s["num_tokens"] for s in r["samples"]] for r in rows],
        truncated=[[s["truncated"] for s in r["samples"]] for r in rows],
    )
    return summary, rows, time.perf_counter() - started


def build_generator(args: argparse.Namespace, backend: str, model_dir: Path) -> Generator:
    if backend == "vllm":
        from recipe.eval.vllm import VLLMGenerator

        return VLLMGenerator(
            model_dir,
            tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
            dtype=args.dtype,
            seed=args.seed,
            trust_remote_code=args.trust_remote_code,
            kv_cache_memory_bytes=args.kv_cache_memory_bytes,
        )
    from recipe.eval.hf import HFGenerator

    return HFGenerator(
        model_dir, batch_size=args.batch_size, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )


def default_out_dir(model: str) -> Path:
    path = Path(model).resolve()
    name = path.parent.name if path.name == "actor" else path.name
    return Path("outputs") / "eval" / name


def write_report(report: dict[str, Any], summaries: list[BenchmarkSummary], out_dir: Path) -> str:
    """Write eval_results.json and eval_results.md to `out_dir`; returns the Markdown text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    cfg = report["config"]
    header = (
        f"# chord-eval: `{cfg['model']}`\n\n"
        f"backend {cfg['backend']}, temperature {cfg['temperature']}, top-p {cfg['top_p']}, "
        f"max new tokens {cfg['max_new_tokens']}, seed {cfg['seed']}. "
        "Accuracies in %; avg@k = mean correctness over all samples of a problem, averaged over "
        "problems; pass@b unbiased; mean len in tokens.\n\n"
    )
    table = markdown_table(summaries)
    (out_dir / RESULTS_MD).write_text(header + table)
    return table


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate `args.model` on every benchmark; writes the report and returns it."""
    sampling = SamplingConfig(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    if args.max_problems is not None and args.max_problems < 1:
        raise ValueError(f"--max-problems must be >= 1, got {args.max_problems}")
    if args.score_workers < 1:
        raise ValueError(f"--score-workers must be >= 1, got {args.score_workers}")
    benchmarks = [load_benchmark(f, args.max_problems) for f in benchmark_files(args.data)]
    plan = plan_samples(
        [b.name for b in benchmarks], args.k, parse_k_per_benchmark(args.k_per_benchmark), args.n_samples
    )
    backend = choose_backend(args.backend)
    out_dir = Path(args.out) if args.out else default_out_dir(args.model)
    temp_dir = None if args.merged_dir else Path(tempfile.mkdtemp(prefix="chord-eval-merged-"))
    try:
        resolved: ResolvedModel = resolve_model(
            args.model, Path(args.merged_dir) if args.merged_dir else temp_dir, args.trust_remote_code
        )
        print(f"chord-eval: model {resolved.hf_dir} ({resolved.kind}), backend {backend}", file=sys.stderr)
        generator = build_generator(args, backend, resolved.hf_dir)
        summaries, details = [], {}
        try:
            for bench in benchmarks:
                k_b, n_b = plan[bench.name]
                print(f"chord-eval: {bench.name}: {len(bench.problems)} problems x {n_b}", file=sys.stderr)
                summary, rows, seconds = evaluate_benchmark(
                    generator, generator.tokenizer, bench, k_b, n_b, sampling, args.score_workers
                )
                summaries.append(summary)
                details[bench.name] = {
                    "path": str(bench.path),
                    "seconds": round(seconds, 3),
                    "problems": rows,
                }
        finally:
            generator.close()
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    report = {
        "config": {
            "model": str(args.model),
            "model_kind": resolved.kind,
            "model_dir": str(resolved.hf_dir) if temp_dir is None or resolved.kind != "verl_fsdp" else None,
            "backend": backend,
            "data": [str(b.path) for b in benchmarks],
            "k": {name: k_b for name, (k_b, _) in plan.items()},
            "n_samples": {name: n_b for name, (_, n_b) in plan.items()},
            **asdict(sampling),
            "max_problems": args.max_problems,
            "dtype": args.dtype,
        },
        "summary": {s.benchmark: s.to_dict() for s in summaries},
        "benchmarks": details,
    }
    table = write_report(report, summaries, out_dir)
    print(table, end="")
    print(f"chord-eval: wrote {out_dir / RESULTS_JSON} and {out_dir / RESULTS_MD}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"chord-eval: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
