"""The tiny model's own compute per token, outside verl: what a token costs the actor update.

One process, plain torch: forward, a loss over every position, backward and one AdamW step on
`--rows` rows of `--length` tokens (one micro-batch = one mini-batch, as the CPU preset's
dynamic batching makes them), single-threaded, CPU seconds per 1,000 tokens. Set against
`bench_chord_overhead.py`'s rank-0 CPU seconds per padded forward token, it says how much of
the actor update is work that scales with tokens (the rest is per call: verl's engine, FSDP2
collectives on gloo, DTensor dispatch in the optimizer). Fixed lengths against lengths that
change from step to step (as CHORD-phi's shrinking rollouts make them) show whether new shapes
cost extra. Rounds alternate the cases.

    python benchmarks/bench_model_compute.py --model outputs/demo/model
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def cpu_ms_per_1k_tokens(model, optimizer, rows: int, lengths: list[int], vocab: int) -> float:
    """CPU seconds per 1,000 tokens of forward + backward + optimizer step, one step per length."""
    started, tokens = time.process_time(), 0
    for length in lengths:
        ids = torch.randint(0, vocab, (rows, length))
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        logits.float().logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        tokens += rows * length
    return (time.process_time() - started) / tokens * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local checkpoint folder (from_pretrained)")
    parser.add_argument("--rows", type=int, default=12, help="rows per step (the preset: 12 per rank)")
    parser.add_argument("--length", type=int, default=48, help="prompt + response tokens (40 + 8)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    vocab = model.config.vocab_size
    shortest = args.length - 12
    cases = {
        f"fixed {args.length}": lambda _: [args.length] * args.steps,
        f"changing {shortest}-{args.length}": lambda r: [
            random.Random(r * 1000 + i).randint(shortest, args.length) for i in range(args.steps)
        ],
    }
    cpu_ms_per_1k_tokens(model, optimizer, args.rows, [args.length] * 5, vocab)  # warm-up
    results: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(args.rounds):
        for name in cases if r % 2 == 0 else list(cases)[::-1]:
            results[name].append(cpu_ms_per_1k_tokens(model, optimizer, args.rows, cases[name](r), vocab))
    print(f"{args.rows} rows per step, {args.steps} steps per round, {args.rounds} rounds, 1 thread")
    print("| lengths | CPU s per 1k tokens: median (min-max over rounds) |")
    print("|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f}) |")


if __name__ == "__main__":
    main()
