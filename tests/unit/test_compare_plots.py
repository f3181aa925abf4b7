"""The comparison figure of chord-compare: size, panels, smoothing (no trainer run)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from recipe.compare.plots import (  # noqa: E402
    COMPARISON_PANELS,
    method_style,
    moving_average,
    plot_comparison,
    seed_band,
)


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
        {"grpo": [_curves(0.5)], "chord_phi": [_curves(1.0)], "sft_then_rl": [_curves(0.8)]},
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
    out = plot_comparison({"sft": [only_reward]}, tmp_path / "small.png", size_px=(640, 480), dpi=80)
    assert mpimg.imread(out).shape[:2] == (480, 640)


def test_comparison_panels_are_reward_mu_entropy_and_length():
    assert [name for name, _ in COMPARISON_PANELS] == ["reward", "mu", "entropy", "response_length"]


def test_moving_average_is_a_trailing_mean():
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([1.0, 2.0, 6.0], 5) == [1.0, 1.5, 3.0]
    assert moving_average([4.0, 2.0], 1) == [4.0, 2.0]
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)


def test_seed_band_smooths_each_seed_then_takes_mean_min_and_max_per_step():
    seed0 = [[1, 0.0], [2, 1.0], [3, 1.0]]  # window 2: 0.0, 0.5, 1.0
    seed1 = [[1, 1.0], [2, 0.0], [3, 0.0]]  # window 2: 1.0, 0.5, 0.0
    seed2 = [[1, 0.5], [2, 0.5]]  # stopped after step 2 (a failed run): steps 1-2 only
    steps, mean, low, high = seed_band([seed0, seed1, seed2], smooth=2)
    assert steps == [1, 2, 3]
    assert mean == pytest.approx([0.5, 0.5, 0.5])
    assert low == pytest.approx([0.0, 0.5, 0.0])
    assert high == pytest.approx([1.0, 0.5, 1.0])
    assert seed_band([seed0], smooth=1) == ([1, 2, 3], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0])


def test_plot_comparison_over_seeds_draws_a_band_per_method(tmp_path):
    out = plot_comparison(
        {"grpo": [_curves(0.5), _curves(0.7), _curves(0.9)], "sft": [_curves(1.0)]},
        tmp_path / "seeds.png",
        title="chord-compare: 3 seeds",
        smooth=2,
    )
    image = mpimg.imread(out)
    assert image.shape[:2] == (800, 1200)
    # the band: tab:blue (grpo's colour) at alpha 0.18 over white, over many pixels
    band = 1.0 - 0.18 * (1.0 - np.array([0.1216, 0.4667, 0.7059]))
    assert (np.abs(image[..., :3] - band).max(axis=-1) < 0.01).sum() > 20000
    single = mpimg.imread(plot_comparison({"grpo": [_curves(0.5)]}, tmp_path / "one.png", smooth=2))
    assert (
        np.abs(single[..., :3] - band).max(axis=-1) < 0.01
    ).sum() < 2000  # one seed: no band (line edges only)


def test_thirteen_methods_get_thirteen_styles_that_hold_across_panels(tmp_path, monkeypatch):
    assert len({method_style(i) for i in range(13)}) == 13  # tab10 alone repeats after ten
    assert method_style(0) == ("C0", "-") and method_style(10) == ("C0", "--")
    from matplotlib.figure import Figure

    methods = {f"m{i}": [_curves(0.1 * i)] for i in range(13)}
    panels = []
    real_savefig = Figure.savefig

    def capture(fig, *args, **kwargs):  # the lines as drawn, read just before the file is written
        for ax in fig.axes:
            panels.append([(ln.get_label(), ln.get_color(), ln.get_linestyle()) for ln in ax.lines])
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    plot_comparison(methods, tmp_path / "many.png")
    looks = {label: (colour, style) for label, colour, style in panels[0]}
    assert set(looks) == set(methods) and len(set(looks.values())) == 13
    for panel in panels[1:]:  # a method keeps its look in every panel
        assert all(looks[label] == (colour, style) for label, colour, style in panel if label in looks)
