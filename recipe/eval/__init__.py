"""Evaluation (`chord-eval`): benchmarks read from parquet/jsonl, checkpoints resolved to HF
folders, sampling with vLLM or transformers, avg@k / pass@k reports."""
