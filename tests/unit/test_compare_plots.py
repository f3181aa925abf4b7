"""The comparison figure of chord-compare: size, panels, smoothing (no trainer run)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import pytest  # noqa: E402

from recipe.compare.plots import COMPARISON_PANELS, moving_average, plot_comparison  # noqa: E402


def _curves(scale: float) -> dict[str, list[list[float]]]:
    steps = range(1, 11)
    return {
        "reward": [[s, scale * s / 10] for s in steps],
        "mu": [[s, 0.1] for s in steps],
        "entropy": [[s, 2.0 - scale * s / 10] for s in steps],
        "response_length": [[s, 3.0 + s % 2] for s in steps],
    }


def test_plot_comparison_writes_a_png_of_the_requested_pixel_size(tmp_path):
    out = plot_comparison(
        {"grpo": _curves(0.5), "chord_phi": _curves(1.0), "sft_then_rl": _curves(0.8)},
        tmp_path / "sub" / "compare.png",
        title="chord-compare: test",
        smooth=3,
        switch_steps={"sft_then_rl": [5]},
    )
    assert out == tmp_path / "sub" / "compare.png"
    image = mpimg.imread(out)
    assert image.shape[:2] == (800, 1200)  # rows x columns = height x width
    assert image[..., :3].min() < 0.5  # something dark was drawn, not a blank canvas


def test_plot_comparison_custom_size_and_a_method_without_some_metrics(tmp_path):
    only_reward = {"reward": [[1, 0.0], [2, 1.0]]}
    out = plot_comparison({"sft": only_reward}, tmp_path / "small.png", size_px=(640, 480), dpi=80)
    assert mpimg.imread(out).shape[:2] == (480, 640)


def test_comparison_panels_are_reward_mu_entropy_and_length():
    assert [name for name, _ in COMPARISON_PANELS] == ["reward", "mu", "entropy", "response_length"]


def test_moving_average_is_a_trailing_mean():
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([1.0, 2.0, 6.0], 5) == [1.0, 1.5, 3.0]
    assert moving_average([4.0, 2.0], 1) == [4.0, 2.0]
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)
