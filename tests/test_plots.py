"""Figures stay legible: no two tick labels of an axis overlap when drawn."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from amortgap import plots


def overlapping_tick_labels(fig: matplotlib.figure.Figure) -> list[tuple[str, str]]:
    """Pairs of drawn, non-empty x tick labels of one axes whose boxes intersect."""
    renderer = fig.canvas.get_renderer()
    pairs = []
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels(which="both") if t.get_visible() and t.get_text()]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
        pairs += [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]
    return pairs


@pytest.mark.parametrize("widths", [(16, 64, 256, 200), (3, 5, 7, 9)])
def test_gaps_against_units_labels_do_not_overlap(widths):
    """The width-per-unit panel is log-scaled over a short range, where matplotlib's default labels
    every minor tick (2x10^0, 3x10^0, ... on top of each other)."""
    units = [8, 14, 18, 17]
    models = pd.DataFrame({"active_units": units, "encoder_width": widths, "approximation_gap": [0.8, 1.7, 2.4, 2.3],
                           "amortization_gap": [6.4, 6.1, 4.4, 4.9], "label": [f"w{w}" for w in widths]})
    fig = plots.gaps_against_units(models)
    fig.canvas.draw()
    assert overlapping_tick_labels(fig) == []
    ticks = fig.axes[2].get_xticks()
    assert len([t for t in ticks if models.encoder_width.div(models.active_units).between(t / 2, t * 2).any()]) >= 2


def test_log_axes_over_a_short_range_label_round_numbers_only():
    """HMC's and AIS's evaluation axes span about one decade (4e3 to 4e4), where matplotlib's default
    would label 2x10^4, 3x10^4 and 4x10^4 on top of one another."""
    hmc = pd.DataFrame({"method": ["hmc"] * 5 + ["encoder", "q*"], "evaluations": [4000, 5000, 8000, 20000, 40000, 1, 15000],
                        "mean_z_error": [3, 2.2, 1.0, 0.7, 0.5, 1.24, 0.38]})
    ais = pd.DataFrame({"model": ["diagonal"] * 4 + ["planar"] * 4, "evaluations": [4000, 8000, 16000, 32000] * 2,
                        "mean": [0.02, 0, -0.01, 0.01, 0.07, 0.03, 0.01, -0.01], "low": [-0.03] * 8, "high": [0.1] * 8})
    for fig in (plots.hmc_accuracy(hmc), plots.ais_lengths(ais)):
        fig.canvas.draw()
        assert overlapping_tick_labels(fig) == []
        labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_visible()]
        assert "10000" in labels and "20000" in labels


def test_the_oracle_strip_plot_is_the_same_bytes_on_every_run_and_leaves_numpys_state_alone(tmp_path):
    """Its jitter is random (seaborn draws it from numpy's global RNG): seeded inside the figure."""
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"qstar_restarts": [0] * 20 + [2] * 20, "error_log_px": rng.normal(size=40),
                          "error_elbo_optimal": rng.normal(size=40)})
    state = np.random.get_state()[1].copy()
    for name in ("one", "two"):
        plots.save(plots.oracle_errors(table, ["log_px", "elbo_optimal"]), tmp_path / name)
    assert (tmp_path / "one.pdf").read_bytes() == (tmp_path / "two.pdf").read_bytes()
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "two.png").read_bytes()
    assert (np.random.get_state()[1] == state).all()


def test_the_protocol_curves_mark_the_kept_epochs_and_read_at_every_scale():
    epochs = np.arange(1, 5468)
    history = pd.DataFrame({"epoch": epochs, "train_elbo": -100 - 50 / epochs**0.5, "valid_elbo": -105 - 50 / epochs**0.5})
    plateau = history[history.epoch <= 60]
    chosen = {"early-stopped": 3000, "patience rule": 541, "Cremer": 3280}
    fig = plots.protocol_curves({"a": history, "b": history}, 3280, {"a": chosen}, {"a": plateau})
    ax = fig.axes[0]
    assert [line.get_xdata()[0] for line in ax.lines[4:]] == [3000, 541, 3280], "one marker per kept epoch"
    assert len(ax.lines) == 7 and len(fig.axes[1].lines) == 2, "the plateau curves only where given"
    assert not overlapping_tick_labels(fig)
