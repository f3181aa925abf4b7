"""Shared fixtures. tests/ has no __init__.py on purpose (verl's wheel owns `tests`)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-weight tiny Qwen2 model + byte-level tokenizer, saved like a real checkpoint."""
    from chord.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, request) -> Path:
    """The CPU preset's inputs, built once per test module: the tiny model (`model/`) and the tiny
    task (`data/`: 128 train, 16 validation and 64 expert rows), where `CHORD_WORKDIR` points."""
    from chord.prepare.tiny_task import generate_tiny_task
    from chord.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    build_tiny_model(root / "model")
    generate_tiny_task(root / "data", num_train=128, num_val=16, num_expert=64, seed=0)
    return root
