"""An evaluation's finished parts are kept in the repository and loaded, not recomputed, while the
call and the science's code stay the same (amortgap.parts)."""

import pandas as pd
import pytest
import torch

from amortgap import parts, qstar
from amortgap.ais import AISConfig
from amortgap.certify import validate_simulated
from amortgap.parallel import run_tasks

CALLS: list[tuple] = []


def table(scale: float, x: torch.Tensor) -> pd.DataFrame:
    CALLS.append((scale,))
    return pd.DataFrame({"image": range(len(x)), "value": (scale * x.sum(1)).double().numpy()})


def test_a_part_is_computed_once_and_loaded_after(tmp_path):
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    CALLS.clear()
    first = parts.kept(tmp_path, "m_s0_test", table, 2.0, x)
    again = parts.kept(tmp_path, "m_s0_test", table, 2.0, x)
    assert CALLS == [(2.0,)] and again.equals(first), "loaded, bit for bit"
    (path,) = tmp_path.glob("m_s0_test-*.pkl.xz")
    parts.kept(tmp_path, "m_s0_test", table, 2.0, x + 1)  # other data: another fingerprint, recomputed
    assert len(CALLS) == 2 and not path.exists() and len(list(tmp_path.glob("m_s0_test-*"))) == 1, "the older removed"
    parts.kept(tmp_path, "m_s0_train", table, 2.0, x)
    assert len(CALLS) == 3 and len(list(tmp_path.glob("*.pkl.xz"))) == 2, "each name keeps its own"
    assert parts.kept(None, "anything", table, 3.0, x).value.tolist() == pytest.approx((3 * x.sum(1)).tolist())
    with pytest.raises(ValueError, match="file name"):
        parts.kept(tmp_path, "a/b", table, 2.0, x)


def test_the_fingerprint_follows_the_code_not_its_comments():
    code = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    assert parts.code_digest(code) == parts.code_digest('def f(x):\n    # another comment\n    return (x + 1)\n')
    assert parts.code_digest(code) != parts.code_digest('def f(x):\n    """Doc."""\n    return x + 2\n')
    model = torch.nn.Linear(2, 2)
    before = parts.fingerprint(table, model, AISConfig(steps=2, chains=2))
    assert before == parts.fingerprint(table, model, AISConfig(steps=2, chains=2))
    assert before != parts.fingerprint(table, model, AISConfig(steps=3, chains=2)), "a config by its fields"
    with torch.no_grad():
        model.weight[0, 0] += 1
    assert before != parts.fingerprint(table, model, AISConfig(steps=2, chains=2)), "a model by its weights"
    with pytest.raises(TypeError, match="memory address"):
        parts.fingerprint(table, object())


def test_a_real_part_kept_by_workers_is_loaded_by_the_next_stage_run(tmp_path, linear_model):
    """The validation's simulated part on the closed-form model: computed in two worker processes,
    then loaded (its files are what a stretch commits) without calling the estimator."""
    tasks = [(tmp_path, f"linear_s{seed}_simulated", validate_simulated, linear_model, 4, qstar.QStarConfig(max_steps=50),
              AISConfig(steps=20, chains=2), [AISConfig(steps=2, chains=2)], seed) for seed in (0, 1)]  # fmt: skip
    computed = run_tasks(parts.kept, tasks, workers=2)
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("*.pkl.xz")) == ["linear_s0_simulated", "linear_s1_simulated"]
    assert max(p.stat().st_size for p in tmp_path.glob("*.pkl.xz")) < 50_000, "small enough to commit"
    def refuse(*args):
        pytest.fail("recomputed")

    refuse.__module__, refuse.__qualname__ = validate_simulated.__module__, validate_simulated.__qualname__
    loaded = [parts.kept(*task[:2], refuse, *task[3:]) for task in tasks]
    assert all(a.equals(b) for a, b in zip(computed, loaded))
