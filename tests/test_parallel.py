"""Tasks in worker processes give what they give in this one, in order, and failures surface."""

import pytest
import torch

from amortgap.parallel import run_tasks


def test_worker_results_equal_in_process_results_in_task_order():
    tasks = [(torch.arange(6.0).view(2, 3), d) for d in (0, 1, 0)]
    assert [t.tolist() for t in run_tasks(torch.sum, tasks, workers=2, progress=False)] == \
        [t.tolist() for t in run_tasks(torch.sum, tasks, workers=1, progress=False)]  # fmt: skip


def test_a_failing_task_raises():
    with pytest.raises(RuntimeError):
        run_tasks(torch.ones, [(2,), (-1,)], workers=2, progress=False)
    with pytest.raises(ValueError):
        run_tasks(torch.ones, [(2,)], workers=0)


def test_a_worker_killed_fails_with_a_clear_message_instead_of_hanging():
    """What the OOM killer does to a worker (it dies at once, without a Python traceback)."""
    import os

    with pytest.raises(RuntimeError, match="worker process died.*'doomed'.*out of memory"):
        run_tasks(os._exit, [(137,), (137,)], workers=2, desc="doomed", progress=False)
