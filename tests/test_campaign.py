"""The campaign trains its entries in priority order, resumably: a deadline pauses it, an early entry
stops at the early-stopped model and a later entry extends the same run, finished runs keep weights
only, and a worker killed with SIGKILL at a random moment fails with a clear message and resumes to
the uninterrupted weights (on real Fashion-MNIST images, a tiny model)."""

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from amortgap import campaign, models

PROTOCOL = {"epochs": 12, "batch_size": 100, "lr": 3e-3, "lr_schedule": "stages", "stage_base": 2, "stages": 3,
            "lr_decay": 0.1, "warmup_epochs": 2, "best_after_warmup": True, "patience": 2, "min_delta": 3.0,
            "after_patience": "continue", "snapshot_epochs": [1, 12]}  # fmt: skip


def write_params(root: Path, entries: list[dict], **protocol) -> Path:
    section = {"model_dir": "models/campaign", "num_train": 400,
               "architecture": {"latent_dim": 3, "encoder_hidden": [16], "decoder_hidden": [16]},
               "protocols": {"p": {**PROTOCOL, **protocol}}, "entries": entries}  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump({"campaign": section}))
    return root / "params.yaml"


def weights(path: Path) -> list[torch.Tensor]:
    return list(models.load(path).state_dict().values())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """One run trained to the end without a pause, in a worker process like every campaign run."""
    root = tmp_path_factory.mktemp("whole")
    config = campaign.load_config(write_params(root, [{"family": "diagonal", "seed": 0, "protocol": "p"}]))
    campaign.run_campaign(config, deadline=time.time() + 600, workers=1, root=str(root))
    return config.run_dir("diagonal_p_s0", root)


def test_a_finished_run_keeps_weights_only(uninterrupted):
    files = sorted(str(p.relative_to(uninterrupted)) for p in uninterrupted.rglob("*") if p.is_file())
    assert files == ["early.pt", "history.csv", "run.json", "train.snapshots/e1.pt", "train.snapshots/e12.pt"]
    status = campaign.read_status(uninterrupted)
    assert status["status"] == "finished" and status["epoch"] == 12 and status["early_epoch"] is not None
    assert status["best_epoch"] > PROTOCOL["warmup_epochs"], "the best weights are chosen after the warm-up"


def test_early_then_end_extends_one_run_to_the_uninterrupted_weights(tmp_path, uninterrupted):
    entries = [{"family": "diagonal", "seed": 0, "protocol": "p", "until": "early"},
               {"family": "diagonal", "seed": 0, "protocol": "p", "until": "end"}]  # fmt: skip
    config = campaign.load_config(write_params(tmp_path, entries))
    run = config.run_dir("diagonal_p_s0", tmp_path)
    campaign.run_campaign(config, deadline=time.time() + 600, workers=1, only=["diagonal_p_s0"], root=str(tmp_path))
    assert campaign.read_status(run)["status"] == "finished"
    for name in ("early.pt", "train.snapshots/e12.pt"):
        for a, b in zip(weights(run / name), weights(uninterrupted / name)):
            assert torch.equal(a, b), name


def test_a_past_deadline_pauses_without_losing_anything(tmp_path):
    config = campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 1, "protocol": "p"}]))
    status = campaign.train_entry(config, config.entries[0], deadline=time.time() - 1, root=str(tmp_path))
    assert status["status"] == "paused" and status["epoch"] == 0
    assert campaign.status_table(config, root=str(tmp_path)).status.tolist() == ["paused"]


def test_bad_campaigns_are_refused_with_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="protocol 'q'"):
        campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "q"}]))
    with pytest.raises(ValueError, match="until"):
        campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p", "until": "x"}]))
    config = campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p"}]))
    with pytest.raises(ValueError, match="no entry .* named \\['nope'\\]"):
        campaign.run_campaign(config, deadline=time.time() + 60, only=["nope"], root=str(tmp_path))


def test_the_committed_campaign_names_its_protocols():
    config = campaign.load_config(Path(__file__).parents[1] / "params.yaml")
    cremer = config.protocols["cremer"]
    assert cremer.epochs == sum(3**i for i in range(8)) == 3280
    assert [cremer.learning_rate(e) for e in (0, 1, 3280 - 2187, 3279)] == pytest.approx([1e-3, 1e-3 * 10 ** (-1 / 7), 1e-4, 1e-4])
    assert config.entries[0].run == "diagonal_cremer_s0" and config.entries[0].until == "end"


def worker_pids() -> list[int]:
    """This process's children that are the campaign's spawned workers (not multiprocessing's resource
    tracker)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return [pid for pid in pids if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_worker_killed_at_a_random_moment_fails_clearly_and_resumes_to_the_uninterrupted_weights(tmp_path, uninterrupted):
    config = campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p"}]))
    run = config.run_dir("diagonal_p_s0", tmp_path)
    errors: list[BaseException] = []

    def go():
        try:
            campaign.run_campaign(config, deadline=time.time() + 600, workers=1, root=str(tmp_path))
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            errors.append(err)

    thread = threading.Thread(target=go)
    thread.start()
    deadline = time.time() + 120
    while not (run / "train.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    moment = random.Random().uniform(0, 0.5)  # somewhere inside the run's remaining epochs
    time.sleep(moment)
    workers = worker_pids()
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    thread.join(120)
    assert errors and "diagonal_p_s0 died" in str(errors[0]), (moment, errors)
    assert campaign.read_status(run)["status"] != "finished"
    campaign.run_campaign(config, deadline=time.time() + 600, workers=1, root=str(tmp_path))
    assert campaign.read_status(run)["status"] == "finished"
    for a, b in zip(weights(run / "train.snapshots/e12.pt"), weights(uninterrupted / "train.snapshots/e12.pt")):
        assert torch.equal(a, b), f"killed after {moment:.3f} s"


def test_the_campaign_stage_depends_on_every_module_it_imports():
    """The frozen DVC stage lists its code file by file (so that a change elsewhere in the library
    does not mark days of training stale): the list must cover what `amortgap.campaign` imports."""
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    imported = subprocess.run([sys.executable, "-c", "import sys, amortgap.campaign; print(' '.join(m.__file__ "
                               "for n, m in sys.modules.items() if n.split('.')[0] == 'amortgap'))"],
                              capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    deps = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["campaign"]["deps"]
    missing = sorted(str(Path(f).resolve().relative_to(root)) for f in imported) 
    missing = [f for f in missing if f not in deps]
    assert len(imported) >= 8 and not missing, f"add to the campaign stage's deps: {missing}"
