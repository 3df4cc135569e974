"""An evaluation's finished parts are kept in the repository and loaded, not recomputed, while the
call and the science's code stay the same (amortgap.parts)."""

import functools
from pathlib import Path

import numpy as np
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


def test_a_part_kept_under_code_declared_equivalent_is_found_renamed_and_loaded(tmp_path, monkeypatch):
    """A code change declared equivalent (equivalent_code.json) keeps the parts computed before it:
    the part under the former fingerprint is renamed to today's and loaded, not computed; without
    the declaration it is computed again."""
    x = torch.arange(6.0)
    module, older, oldest = "amortgap.parts", "e" * 64, "f" * 64
    code = parts.code_digests(parts.tensor_digest)
    assert module in code, "the function's own module is in its fingerprint"
    chain = {module: {code[module]: older, older: oldest}}
    assert parts.former_fingerprints(parts.tensor_digest, x, declared=chain) == [
        parts.fingerprint(parts.tensor_digest, x, code={**code, module: d}) for d in (older, oldest)]
    for declared, folder in ((chain, tmp_path / "declared"), ({}, tmp_path / "not")):
        folder.mkdir()
        before = folder / f"d-{parts.fingerprint(parts.tensor_digest, x, code={**code, module: oldest})}.pkl.xz"
        pd.to_pickle({"result": "kept before the change", "provenance": {}}, before, compression="xz")
        monkeypatch.setattr(parts, "declared_equivalent", lambda declared=declared: declared)
        result = parts.kept(folder, "d", parts.tensor_digest, x)
        (now,) = folder.glob("d-*.pkl.xz")
        assert now.name == f"d-{parts.fingerprint(parts.tensor_digest, x)}.pkl.xz" and not before.exists()
        assert result == ("kept before the change" if declared else parts.tensor_digest(x))


def test_a_declaration_of_equivalent_code_must_say_why(tmp_path):
    path = tmp_path / "equivalent.json"
    path.write_text('[{"module": "amortgap.gaps", "former": "a", "current": "b", "why": "  "}]')
    with pytest.raises(ValueError, match="a why"):
        parts.declared_equivalent(path)
    path.write_text('[{"module": "amortgap.gaps", "former": "a", "current": "b", "why": "a clearer error"}]')
    assert parts.declared_equivalent(path) == {"amortgap.gaps": {"b": "a"}}
    assert parts.declared_equivalent(tmp_path / "none.json") == {}
    path.write_text('[{"module": "m", "former": "a", "current": "b", "why": "x"}, {"module": "m", "former": "c", "current": "b", "why": "y"}]')
    with pytest.raises(ValueError, match="declared twice"):
        parts.declared_equivalent(path)
    committed = parts.declared_equivalent()  # the repository's own declarations parse
    assert all(len(d) == 64 for digests in committed.values() for pair in digests.items() for d in pair)


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
    assert parts.fingerprint(table, {3, 1, 2}) == parts.fingerprint(table, {2, 3, 1})
    assert parts.fingerprint(table, np.zeros(2000)) != parts.fingerprint(table, np.eye(1, 2000).ravel()), "by its bytes"
    assert parts.fingerprint(table, table) != parts.fingerprint(table, test_a_part_is_computed_once_and_loaded_after)
    for unstable, why in ((object(), "memory address"), (Path("/"), "only a file"), (lambda: 0, "module-level"),
                          (functools.partial(table, 1.0), "module-level")):
        with pytest.raises(TypeError, match=why):
            parts.fingerprint(table, unstable)


def test_a_part_depends_on_the_code_it_runs_and_on_no_other():
    modules = parts.code_modules("amortgap.gap_rows")
    assert {"amortgap.gap_rows", "amortgap.gaps", "amortgap.qstar", "amortgap.ais", "amortgap.models"} <= set(modules)
    assert not {"amortgap.campaign", "amortgap.plots", "amortgap.study.gap_table", "amortgap.study.validation",
                "amortgap.parts"} & set(modules), "the table's summaries and figures are not the rows' code"  # fmt: skip
    assert set(parts.code_modules("amortgap.certify")) < set(parts.code_modules("amortgap.gap_rows")) | {"amortgap.certify"}


def test_a_part_that_cannot_be_read_is_computed_again_and_says_where_it_was_made(tmp_path, capsys):
    x = torch.ones(2, 3)
    parts.kept(tmp_path, "m_test", table, 1.0, x)
    (path,) = tmp_path.glob("m_test-*.pkl.xz")
    assert parts.provenance(path)["kernels"] == torch.backends.cpu.get_cpu_capability()
    path.write_bytes(b"not a pickle")
    CALLS.clear()
    assert parts.kept(tmp_path, "m_test", table, 1.0, x).value.tolist() == [3.0, 3.0] and CALLS == [(1.0,)]
    assert "cannot be read" in capsys.readouterr().err


@pytest.mark.slow
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
