"""The interval summaries that experiment notebooks and the results chapter share."""

import numpy as np
import pandas as pd
import pytest

from amortgap import summaries
from amortgap.stats import crossed_interval


@pytest.fixture
def joint() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"width": w, "seed": s, "image": i, "approximation_gap": 1 + rng.normal(), "amortization_gap": w / 8 + rng.normal(),
             "inference_gap": 2 + rng.normal()} for w in (16, 64) for s in range(3) for i in (5, 9, 2, 7)]
    return pd.DataFrame(rows)


def test_by_seed_and_image_is_a_seed_by_image_matrix(joint):
    m = summaries.by_seed_and_image(joint[joint.width == 16], "amortization_gap")
    assert m.shape == (3, 4)
    assert m[1, 0] == joint[(joint.width == 16) & (joint.seed == 1) & (joint.image == 2)].amortization_gap.item()


def test_width_gaps_are_the_crossed_intervals_of_each_width_and_gap(joint):
    table = summaries.width_gaps(joint)
    assert len(table) == 2 * 3
    row = table[(table.width == 64) & (table.gap == "amortization gap")].iloc[0]
    expected = crossed_interval(summaries.by_seed_and_image(joint[joint.width == 64], "amortization_gap"))
    assert row["mean"] == pytest.approx(expected.mean) and row.ci == pytest.approx(expected.high - expected.mean)


def test_frontier_seconds_joins_each_budget_with_its_mean_timing():
    frontier = pd.DataFrame({"init": ["encoder", "prior"], "steps": [10, 10], "mean": [1.0, 2.0]})
    timings = pd.DataFrame({"method": ["encoder", "encoder", "prior", "q*"], "steps": [10, 10, 10, 700],
                            "seconds_per_image": [1.0, 3.0, 5.0, 9.0]})
    with_seconds, qstar = summaries.frontier_seconds(frontier, timings, 7000.0)
    assert with_seconds.seconds.tolist() == [2.0, 5.0]
    assert qstar.to_dict("records") == [{"evaluations": 7000.0, "seconds": 9.0}]
