"""Independent pieces of work in single-thread worker processes.

On this 2-core machine two 1-thread processes do 1.6-1.8x the work of one 2-thread process (`make
bench`), because one small model's matrix products keep two threads only partly busy. Each task is
seeded by its own arguments, so its result does not depend on which process ran it; the numbers
can differ in their last bits from a 2-thread run (another summation order), well inside their
standard errors.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

import torch

from .progress import bar


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes of one thread each: the one kind of worker of every
    parallel stage and of the training campaign (a computation gives the same bits in any of them)."""
    context = torch.multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,))


def run_tasks(
    fn: Callable[..., Any], tasks: Sequence[tuple], workers: int = 1, desc: str = "tasks", progress: bool = False
) -> list[Any]:
    """[fn(*task) for task in tasks], in ``workers`` spawned processes of one thread each when
    ``workers`` > 1 (``fn`` must then be importable: a module-level function of a package). A task
    that fails raises here; a worker killed (out of memory, say) raises a RuntimeError that says so
    instead of hanging. Progress
    goes where :func:`amortgap.progress.bar` sends it (a pipeline stage's terminal)."""
    if workers < 1:
        raise ValueError(f"workers must be positive, not {workers}")
    steps = bar(total=len(tasks), desc=desc, show=progress)
    if workers == 1 or len(tasks) <= 1:
        results = []
        for task in tasks:
            results.append(fn(*task))
            steps.update()
        steps.close()
        return results
    with worker_pool(min(workers, len(tasks))) as pool:
        futures = [pool.submit(fn, *task) for task in tasks]
        for future in futures:
            future.add_done_callback(lambda _: steps.update())
        results = []
        for i, future in enumerate(futures):
            try:
                results.append(future.result())
            except BrokenProcessPool as err:  # the worker vanished: no traceback comes back, only this
                raise RuntimeError(f"a worker process died while the pool ran {desc!r} (task {i + 1} of {len(tasks)}, "
                                   f"{getattr(fn, '__name__', fn)} or one beside it): killed, or out of memory? "
                                   "Its stage failed; work already checkpointed resumes on the next run") from err  # fmt: skip
    steps.close()
    return results
