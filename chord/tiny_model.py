"""A tiny random-weight Qwen2-style causal LM and a byte-level tokenizer, built locally.

Nothing is downloaded: the tokenizer is made with `tokenizers` (one token per byte, so any
text encodes without unknowns, plus ChatML special tokens), the model from a `Qwen2Config`.
Both are saved with `save_pretrained` and are meant to be loaded back through
`from_pretrained`, exactly like a real checkpoint. The demo, the tests and the benchmarks use it.

Vocabulary entries use byte-level symbols (e.g. "Ċ" for a newline, "Ġ" for a space) because
transformers loads this tokenizer as `Qwen2Tokenizer` with a ByteLevel step, and verl requires
"\\n" to encode as exactly one token.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML, as Qwen models use it. `add_generation_prompt` opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(out_dir: str | Path) -> Path:
    """Write a byte-level tokenizer (256 byte tokens + ChatML specials) to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbols = list(pre_tokenizers.ByteLevel.alphabet())
    byte_symbols.sort()
    vocab = {sym: i for i, sym in enumerate(byte_symbols)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    fast.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    fast.chat_template = CHAT_TEMPLATE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return out


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    intermediate_size: int = 128,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> Path:
    """Save a random-weight Qwen2 causal LM and its tokenizer to `out_dir`; returns the path.

    The same (arguments, seed) always give the same weights. The defaults give a head size of
    32 (`hidden_size / num_heads`): vLLM's CPU attention kernels support head sizes 32, 64, 80,
    ... only, so a head size of 16 cannot run under `rollout.name=vllm`.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = build_tokenizer(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out)
    # Exactly the tokenizer's size, not padded: verl masks the logits past `len(tokenizer)` in
    # its vLLM rollout only, so with padded rows the rollout's and the actor's probabilities
    # would differ by the mass on those rows (a much larger rollout-vs-actor gap).
    vocab_size = len(tokenizer)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(out)
    (out / "chord_tiny_model.json").write_text(
        json.dumps({"seed": seed, "parameters": sum(p.numel() for p in model.parameters())})
    )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=2)
    parser.add_argument("--num-kv-heads", type=int, default=1)
    parser.add_argument("--intermediate-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_tiny_model(
        args.out_dir,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        num_kv_heads=args.num_kv_heads,
        intermediate_size=args.intermediate_size,
        seed=args.seed,
    )
    print(f"tiny model written to {path}")


if __name__ == "__main__":
    main()
