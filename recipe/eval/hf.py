"""HF `generate` backend for `chord-eval` (CPU, or one GPU without vLLM).

Sampling is reproducible: instead of generate's own `torch.multinomial` (global RNG), the last
logits processor adds Gumbel noise drawn from a seeded `torch.Generator` and generate decodes
greedily. With `g_v = -log(-log(u_v))`, `u_v ~ U(0, 1)`,
`argmax_v (log softmax(z / T)_v + g_v)` is an exact sample from `softmax(z / T)` (the
Gumbel-max trick), restricted to the top-p nucleus when `top_p < 1` (the filtered logits are
-inf). Given the seed, the prompts, `n` and the batch size, the outputs are deterministic.

Prompts are left-padded into batches of `batch_size` sequences (each prompt repeated `n` times).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recipe.eval.generate import Completion, SamplingConfig, stop_token_ids


class GumbelSampler:
    """Logits processor: `log_softmax(scores) + Gumbel(0, 1)` noise (finite entries only), drawn
    from `generator`, or, given one generator per row, row i's from `generator[i]` alone (a row's
    sample then does not depend on the other rows of its batch: the hf rollout's use).

    With `keep_log_probs`, it also keeps the log-probability of each sampled token under the
    distribution it sampled from, i.e. after every processor before it (penalties, temperature,
    top-k, top-p; vLLM's `processed_logprobs`): `sampled_log_probs(sequences)` after generation."""

    def __init__(self, generator: Any, keep_log_probs: bool = False) -> None:
        self.generator = generator
        self.keep_log_probs = keep_log_probs
        self._kept: list[Any] = []  # [B, 1] per step whose token is known
        self._pending: Any = None  # [B, V] of the last step: its token comes with the next call

    def sampled_log_probs(self, sequences: Any) -> Any:
        """``[B, steps]`` log-probs of the sampled tokens; `sequences` ends with the last one."""
        import torch

        if not self.keep_log_probs:
            raise ValueError("GumbelSampler(keep_log_probs=False) keeps no log-probs")
        kept = list(self._kept)
        if self._pending is not None:
            kept.append(self._pending.gather(-1, sequences[:, -1:]))
        return torch.cat(kept, dim=1) if kept else torch.zeros(sequences.shape[0], 0)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        log_probs = torch.log_softmax(scores.float(), dim=-1)
        if self.keep_log_probs:
            if self._pending is not None:  # input_ids now end with the previous step's token
                self._kept.append(self._pending.gather(-1, input_ids[:, -1:]))
            self._pending = log_probs
        if isinstance(self.generator, (list, tuple)):
            if len(self.generator) != scores.shape[0]:
                raise ValueError(f"{len(self.generator)} generators for {scores.shape[0]} rows")
            uniform = torch.stack(
                [torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generator]
            )
        else:
            uniform = torch.rand(log_probs.shape, generator=self.generator, device=scores.device)
        tiny = torch.finfo(torch.float32).tiny
        gumbel = -torch.log(-torch.log(uniform.clamp(min=tiny, max=1.0 - 1e-7)))
        return log_probs + gumbel


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ValueError(f"--dtype must be auto or one of {sorted(table)}, got {dtype!r}")
    return table[dtype]


class HFGenerator:
    backend = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        batch_size: int = 32,
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=_resolve_dtype(dtype, self.device), trust_remote_code=trust_remote_code
        ).to(self.device)
        self.model.eval()
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.stop_ids[0]

    def _batch(self, prompts: list[list[int]]) -> tuple[Any, Any]:
        """Left-pad `prompts` into input_ids and attention_mask tensors [B, max_len]."""
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _completion(self, tokens: list[int], max_new_tokens: int) -> Completion:
        stop = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
        if stop is None:
            body, num_tokens, truncated = tokens, len(tokens), len(tokens) >= max_new_tokens
        else:
            body, num_tokens, truncated = tokens[:stop], stop + 1, False
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        return Completion(text=text, num_tokens=num_tokens, truncated=truncated)

    def generate(self, prompts: list[list[int]], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        """`n` completions per prompt; result[i][j] is sample j of prompt i."""
        import torch
        from transformers import (
            GenerationConfig,
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        processors = LogitsProcessorList()
        if sampling.temperature > 0:
            if sampling.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_p < 1.0:
                processors.append(TopPLogitsWarper(sampling.top_p))
            processors.append(GumbelSampler(generator))
        # A fresh config, so a checkpoint's own defaults (top_k, repetition_penalty, ...) never apply.
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
        )
        flat = [(i, p) for i, p in enumerate(prompts) for _ in range(n)]
        results: list[list[Completion]] = [[] for _ in prompts]
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start : start + self.batch_size]
            input_ids, attention_mask = self._batch([p for _, p in chunk])
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=config,
                    logits_processor=processors,
                )
            new_tokens = out[:, input_ids.shape[1] :].tolist()
            for (i, _), tokens in zip(chunk, new_tokens, strict=True):
                results[i].append(self._completion(tokens, sampling.max_new_tokens))
        return results

    def close(self) -> None:
        del self.model
