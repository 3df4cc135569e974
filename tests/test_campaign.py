"""The campaign trains its entries in priority order, resumably: a deadline pauses it, a later entry
takes a run past its protocol's end while its early-stopped model stays the protocol's, finished runs
keep weights only, and a worker killed with SIGKILL at a random moment fails with a clear message and resumes to
the uninterrupted weights (on real Fashion-MNIST images, a tiny model)."""

import json
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from amortgap import campaign, data, models, train
from amortgap.qstar import QStarConfig
from amortgap.study import split_targets
from amortgap.parallel import worker_pool
from amortgap.train import evaluate_elbo

HOUR = 3600.0  # a deadline far enough away for any test-scale run (and past the start rule's minimum)

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


def in_worker(config: campaign.CampaignConfig, entry: campaign.Entry, roots: list[Path]) -> list[dict]:
    """``train_entry`` of ``entry`` in each of ``roots``, one after the other in a single-thread
    worker process, the way ``run_campaign`` trains every run: a test that compares bits trains both
    sides on one code path."""
    with worker_pool(1) as pool:
        return [pool.submit(campaign.train_entry, config, entry, time.time() + HOUR, str(root)).result() for root in roots]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """One run trained to the end without a pause, in a worker process like every campaign run."""
    root = tmp_path_factory.mktemp("whole")
    config = campaign.load_config(write_params(root, [{"family": "diagonal", "seed": 0, "protocol": "p"}]))
    campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(root))
    return config.run_dir("diagonal_p_s0", root)


@pytest.mark.slow
def test_a_finished_run_keeps_weights_only(uninterrupted):
    files = sorted(str(p.relative_to(uninterrupted)) for p in uninterrupted.rglob("*") if p.is_file())
    assert files == ["best.pt", "history.csv", "run.json", "train.snapshots/e1.pt", "train.snapshots/e12.pt"]
    status = campaign.read_status(uninterrupted)
    assert status["status"] == "finished" and status["epoch"] == 12 and status["patience_epoch"] is not None
    assert status["best_epoch"] > PROTOCOL["warmup_epochs"], "the best weights are chosen after the warm-up"
    history = pd.read_csv(uninterrupted / "history.csv")
    assert status["best_valid_elbo"] == pytest.approx(history.valid_elbo[history.epoch > 2].max())
    model = models.load(uninterrupted / "best.pt")
    valid = data.load_binarized("valid", "static", split_seed=0)
    assert evaluate_elbo(model, valid) == pytest.approx(status["best_valid_elbo"], abs=1e-3), "best.pt is the best epoch's"


@pytest.mark.slow
def test_a_longer_entry_extends_the_run_and_keeps_the_protocols_best(tmp_path, uninterrupted):
    entries = [{"family": "diagonal", "seed": 0, "protocol": "p", "epochs": 16}]  # alone: it stops at 12 first
    config = campaign.load_config(write_params(tmp_path, entries))
    run = config.run_dir("diagonal_p_s0", tmp_path)
    campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(tmp_path))
    status = campaign.read_status(run)
    assert status["status"] == "finished" and status["epoch"] == 16 and not (run / "train.pt").exists()
    for name in ("best.pt", "train.snapshots/e12.pt"):
        for a, b in zip(weights(run / name), weights(uninterrupted / name)):
            assert torch.equal(a, b), name
    history = pd.read_csv(run / "history.csv")
    assert history.lr.iloc[12:].tolist() == pytest.approx([3e-4] * 4), "past the end: the final rate"
    assert status["best_valid_elbo"] == pytest.approx(history.valid_elbo[(history.epoch > 2) & (history.epoch <= 12)].max())


@pytest.mark.slow
def test_a_finished_run_is_not_extended_from_nothing(tmp_path, uninterrupted):
    shutil.copytree(uninterrupted, tmp_path / "models" / "campaign" / "diagonal_p_s0")
    config = campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p", "epochs": 16}]))
    with pytest.raises(ValueError, match="stopped at epoch 12 and kept its weights only"):
        campaign.train_entry(config, config.entries[0], deadline=time.time() + 60, root=str(tmp_path))


@pytest.mark.slow
def test_an_encoder_entry_waits_for_its_decoder_then_trains_a_fresh_encoder_against_it_frozen(tmp_path, uninterrupted):
    entry = {"family": "diagonal", "seed": 3, "protocol": "p", "decoder": "diagonal_p_s0/best.pt", "encoder_hidden": [32, 8]}
    config = campaign.load_config(write_params(tmp_path, [entry]))
    run = "diagonal_enc32x8_on_diagonal_p_s0.best_p_s3"
    assert [e.run for e in config.entries] == [run]
    assert campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(tmp_path)) == []
    assert campaign.read_status(config.run_dir(run, tmp_path))["status"] == "not started", "no decoder yet: it waits"
    decoder_run = config.run_dir("diagonal_p_s0", tmp_path)
    decoder_run.mkdir(parents=True)
    shutil.copy(uninterrupted / "best.pt", decoder_run / "best.pt")
    [status] = campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(tmp_path))
    assert status["status"] == "finished" and status["epoch"] == 12
    trained, decoder = models.load(config.run_dir(run, tmp_path) / "best.pt"), models.load(uninterrupted / "best.pt")
    assert trained.config.encoder_hidden == (32, 8) and trained.config.decoder_hidden == decoder.config.decoder_hidden
    for a, b in zip(trained.decoder.state_dict().values(), decoder.decoder.state_dict().values()):
        assert torch.equal(a, b), "the decoder stays frozen"
    history = pd.read_csv(config.run_dir(run, tmp_path) / "history.csv")
    assert history.valid_elbo.iloc[-1] > history.valid_elbo.iloc[0], "the encoder trains"


def test_an_entry_may_name_its_flow_length_which_names_its_run():
    config = campaign.CampaignConfig(architecture=models.VAEConfig(latent_dim=3, encoder_hidden=(16,), decoder_hidden=(16,)),
                                     protocols={"p": train.TrainConfig.from_section(PROTOCOL)})  # fmt: skip
    entry = campaign.Entry(family="sylvester", seed=1, protocol="p", decoder="r/best.pt", encoder_hidden=(8,), flow_length=2)
    assert entry.run == "sylvester2_enc8_on_r.best_p_s1"
    assert campaign.Entry(family="planar", seed=0, protocol="p", decoder="r/best.pt", encoder_hidden=(8,)).run == "planar_enc8_on_r.best_p_s0"
    built = config.model_config(entry)
    assert (built.family, built.flow_length, built.encoder_hidden) == ("sylvester", 2, (8,))
    assert config.model_config(campaign.Entry(family="planar", seed=0)).flow_length == 10, "the architecture's, unless named"
    for family, length in (("diagonal", 2), ("sylvester", 0)):
        with pytest.raises(ValueError, match="flow_length is a flow's number of layers"):
            campaign.Entry(family=family, seed=0, flow_length=length)


def test_a_subset_entry_and_its_table_model_name_their_runs_and_train_on_one_random_subset():
    config = campaign.CampaignConfig(architecture=models.VAEConfig(latent_dim=3, encoder_hidden=(16,), decoder_hidden=(16,)),
                                     protocols={"p": train.TrainConfig.from_section(PROTOCOL)}, num_train=400)  # fmt: skip
    vae, table = (campaign.Entry(family="diagonal", seed=0, protocol="p", images=50, table=t) for t in (False, True))
    scaled = campaign.Entry(family="diagonal", seed=0, protocol="p", images=50, table=True, table_scale=30)
    assert (vae.run, table.run, scaled.run) == ("diagonal_n50_p_s0", "diagonal_table1_n50_p_s0", "diagonal_table30_n50_p_s0")
    assert (config.model_config(vae).table_images, config.model_config(table).table_images) == (0, 50)
    assert config.model_config(scaled).table_scale == 30 and "table_scale" not in config.model_config(vae).to_dict()
    rows = config.train_images(table)
    assert torch.equal(rows, config.train_images(vae)) and len(rows) == 50 and rows.unique().numel() == 50
    assert rows.max() > 300 and torch.equal(rows, rows.sort().values), "a random subset of the whole split, sorted"
    assert torch.equal(config.train_images(campaign.Entry(family="diagonal", seed=0)), torch.arange(400))
    with pytest.raises(ValueError, match="a subset of 500 images of the 400"):
        campaign.CampaignConfig.from_section({"num_train": 400, "protocols": {"p": PROTOCOL},
                                              "entries": [{"family": "diagonal", "seed": 0, "protocol": "p", "images": 500}]})
    for bad, message in (({"table": True}, "names images"), ({"images": 0}, "size of its training subset"),
                         ({"images": 50, "table": True, "decoder": "r/best.pt", "encoder_hidden": (8,)}, "and no decoder"),
                         ({"images": 50, "table_scale": 3.0}, "an entry without a table has none")):
        with pytest.raises(ValueError, match=message):
            campaign.Entry(family="diagonal", seed=0, **bad)


@pytest.mark.slow
def test_a_table_model_trains_its_decoder_by_per_image_vi_and_keeps_its_last_weights(tmp_path):
    """A table entry runs the whole protocol on its subset (no validation ELBO: ``best.pt`` is the
    last epoch's weights, the e12 snapshot), resumable like any run."""
    entries = [{"family": "diagonal", "seed": 0, "protocol": "p", "images": 60, "table": True, "table_scale": 10.0}]
    config = campaign.load_config(write_params(tmp_path, entries))
    campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(tmp_path))
    run = config.run_dir("diagonal_table10_n60_p_s0", tmp_path)
    status = campaign.read_status(run)
    assert status["status"] == "finished" and status["epoch"] == 12 and status["best_epoch"] is None
    best, last = models.load(run / "best.pt"), models.load(run / "train.snapshots/e12.pt")
    assert best.config.table_images == 60 and all(torch.equal(a, b) for a, b in zip(weights(run / "best.pt"), weights(run / "train.snapshots/e12.pt")))
    assert pd.read_csv(run / "history.csv").valid_elbo.isna().all()
    assert campaign.protocol_table(config, campaign.read_runs(config, tmp_path)).best_epoch.isna().all()


@pytest.mark.slow
def test_a_sylvester_encoder_trains_against_a_frozen_decoder_by_the_hand_written_step(tmp_path, uninterrupted):
    entry = {"family": "sylvester", "seed": 0, "protocol": "p", "decoder": "diagonal_p_s0/best.pt", "encoder_hidden": [16],
             "flow_length": 2}  # fmt: skip
    config = campaign.load_config(write_params(tmp_path, [entry]))
    decoder_run = config.run_dir("diagonal_p_s0", tmp_path)
    decoder_run.mkdir(parents=True)
    shutil.copy(uninterrupted / "best.pt", decoder_run / "best.pt")
    [status] = campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(tmp_path))
    run_dir = config.run_dir("sylvester2_enc16_on_diagonal_p_s0.best_p_s0", tmp_path)
    assert status["status"] == "finished" and [s["step"] for s in campaign.read_status(run_dir)["stretches"]] == ["by-hand"]
    trained = models.load(run_dir / "best.pt")
    assert (trained.config.family, trained.config.flow_length) == ("sylvester", 2)
    history = pd.read_csv(run_dir / "history.csv")
    assert history.valid_elbo.iloc[-1] > history.valid_elbo.iloc[0], "the encoder trains"


@pytest.mark.slow
def test_a_joint_entry_trains_on_the_decoder_files_own_encoder_and_a_distilled_one_on_its_fit_to_qstar(tmp_path, uninterrupted):
    decoder_run = tmp_path / "models" / "campaign" / "diagonal_p_s0"
    decoder_run.mkdir(parents=True)
    shutil.copy(uninterrupted / "best.pt", decoder_run / "best.pt")
    source = models.load(decoder_run / "best.pt")
    entries = [{"family": "diagonal", "seed": 0, "protocol": "p", "decoder": "diagonal_p_s0/best.pt", "encoder_hidden": [16],
                "init": init} for init in ("joint", "distilled")]  # fmt: skip
    entries[1]["epochs"] = 6  # past the protocol's 4: its second leg resumes from the checkpoint
    params = write_params(tmp_path, entries, epochs=4, snapshot_epochs=[])
    section = yaml.safe_load(params.read_text())
    section["campaign"]["distill"] = {"epochs": 20, "lr": 3e-3}
    params.write_text(yaml.safe_dump(section))
    config = campaign.load_config(params)
    joint, distilled = config.entries
    assert [joint.run, distilled.run] == ["diagonal_enc16_joint_on_diagonal_p_s0.best_p_s0",
                                          "diagonal_enc16_distilled_on_diagonal_p_s0.best_p_s0"]  # fmt: skip
    start = config.initial_model(joint, tmp_path)
    for a, b in zip(start.state_dict().values(), source.state_dict().values()):
        assert torch.equal(a, b), "a joint entry starts from the decoder file's encoder"
    with pytest.raises(ValueError, match="does not exist"):
        config.initial_model(distilled, tmp_path)
    images = split_targets.SplitImages(reported=20, selection=20, targets=300)
    split_config = split_targets.TargetsConfig(decoders=("diagonal_p_s0/best.pt",), images=images,
                                               qstar=QStarConfig(max_steps=200, num_samples=4), chunk=150, workers=1)  # fmt: skip
    targets = split_targets.targets(split_config, "diagonal_p_s0/best.pt", tmp_path)
    path = config.targets_path(distilled, tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({**targets, "split_seed": 1}, path)
    with pytest.raises(ValueError, match="split_seed"):
        config.initial_model(distilled, tmp_path)
    torch.save(targets, path)
    statuses = campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(tmp_path))
    assert [(s["status"], s["epoch"]) for s in statuses] == [("finished", 4), ("finished", 6)], "a distilled run resumes"
    run = config.run_dir(distilled.run, tmp_path)
    fit = pd.read_csv(run / "distill.csv")
    assert fit.held_out_kl.min() < 0.9 * fit.held_out_kl.iloc[0], "the encoder moves towards q*"
    before_elbo = models.load(run / "distilled.pt")
    for a, b in zip(before_elbo.decoder.state_dict().values(), source.decoder.state_dict().values()):
        assert torch.equal(a, b), "the decoder stays frozen"
    assert not torch.equal(before_elbo.encoder[0].weight, source.encoder[0].weight)
    resumed = config.initial_model(distilled, tmp_path, resuming=True)
    for a, b in zip(resumed.state_dict().values(), before_elbo.state_dict().values()):
        assert torch.equal(a, b), "a resumed distilled run starts from its saved fit, not a new one"


def test_an_entry_starts_fresh_joint_or_distilled_and_only_on_a_decoder(tmp_path):
    with pytest.raises(ValueError, match="init is one of"):
        campaign.Entry(family="diagonal", seed=0, decoder="r/best.pt", encoder_hidden=(8,), init="warm")
    with pytest.raises(ValueError, match="names the decoder file"):
        campaign.Entry(family="diagonal", seed=0, init="joint")


def test_a_table_model_has_no_encoder_to_start_another_from(tmp_path):
    architecture = models.VAEConfig(latent_dim=3, encoder_hidden=(16,), decoder_hidden=(16,))
    config = campaign.CampaignConfig(architecture=architecture, protocols={"p": train.TrainConfig.from_section(PROTOCOL)},
                                     model_dir="m")  # fmt: skip
    (tmp_path / "m" / "r").mkdir(parents=True)
    models.save(models.VAE(models.VAEConfig(**{**architecture.to_dict(), "table_images": 5})), tmp_path / "m" / "r" / "best.pt")
    joint = campaign.Entry(family="diagonal", seed=0, protocol="p", decoder="r/best.pt", encoder_hidden=(16,), init="joint")
    with pytest.raises(ValueError, match="a table model, which has none"):
        config.initial_model(joint, tmp_path)
    fresh = config.initial_model(campaign.Entry(family="diagonal", seed=0, protocol="p", decoder="r/best.pt", encoder_hidden=(16,)), tmp_path)
    assert fresh.config.table_images == 0, "a fresh encoder on a table model's decoder reads images"


def test_an_encoder_entry_names_its_decoder_file_and_widths(tmp_path):
    for bad in ({"decoder": "diagonal_p_s0/best.pt"}, {"decoder": "best.pt", "encoder_hidden": [8]}):
        with pytest.raises(ValueError, match="names the decoder as '<run>/<weights file>' and its encoder's widths"):
            campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p", **bad}]))


def test_a_past_deadline_pauses_without_losing_anything(tmp_path):
    config = campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 1, "protocol": "p"}]))
    status = campaign.train_entry(config, config.entries[0], deadline=time.time() - 1, root=str(tmp_path))
    assert status["status"] == "paused" and status["epoch"] == 0
    assert campaign.status_table(config, root=str(tmp_path)).status.tolist() == ["paused"]


def test_bad_campaigns_are_refused_with_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="protocol 'q'"):
        campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "q"}]))
    with pytest.raises(ValueError, match="fewer than its protocol's 12"):
        campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p", "epochs": 5}]))
    config = campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p"}]))
    with pytest.raises(ValueError, match="no entry .* named \\['nope'\\]"):
        campaign.run_campaign(config, deadline=time.time() + 60, only=["nope"], root=str(tmp_path))


def test_the_committed_campaign_names_its_protocols():
    config = campaign.load_config(Path(__file__).parents[1] / "params.yaml")
    cremer = config.protocols["cremer"]
    assert cremer.epochs == sum(3**i for i in range(8)) == 3280
    assert [cremer.learning_rate(e) for e in (0, 1, 3280 - 2187, 3279)] == pytest.approx([1e-3, 1e-3 * 10 ** (-1 / 7), 1e-4, 1e-4])
    assert config.entries[0].run == "diagonal_cremer_s0" and config.target(config.entries[0]) == 3280
    assert cremer.patience is not None and cremer.after_patience == "continue", "patience only records, never stops"
    snapshots = {e.run: config.train_config(e, config.target(e)).snapshot_epochs for e in config.entries}
    assert snapshots["diagonal_cremer_s0"] == (1, 3, 10, 30, 100, 300, 1000, 3280), "Cremer's snapshots"
    assert snapshots["diagonal_cremer_s1"] == snapshots["diagonal_cremer_s2"] == snapshots["diagonal_cremer_s0"]
    assert snapshots["planar_cremer_s1"] == (3280,), "an entry's snapshots replace its protocol's"


def worker_pids(parent: int | None = None) -> list[int]:
    """The children of ``parent`` (default: this process) that are the campaign's spawned workers
    (not multiprocessing's resource tracker)."""
    pids = []
    for task in Path(f"/proc/{parent or os.getpid()}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return [pid for pid in pids if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.slow
def test_a_worker_killed_at_a_random_moment_fails_clearly_and_resumes_to_the_uninterrupted_weights(tmp_path, uninterrupted):
    config = campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p"}]))
    run = config.run_dir("diagonal_p_s0", tmp_path)
    errors: list[BaseException] = []

    def go():
        try:
            campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(tmp_path))
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            errors.append(err)

    thread = threading.Thread(target=go)
    thread.start()
    deadline = time.time() + 120
    while not (run / "train.pt").exists() and time.time() < deadline:
        time.sleep(0.001)
    # somewhere inside the run's remaining epochs, however fast they go: after a random number of
    # checkpoints (each epoch replaces train.pt, a new inode) and a random part of the next epoch
    checkpoints, rng = random.Random().randint(1, 7), random.Random()
    seen = [(run / "train.pt").stat().st_ino]
    while len(seen) < checkpoints and time.time() < deadline:
        try:
            inode = (run / "train.pt").stat().st_ino
        except FileNotFoundError:  # the run finished (its checkpoint goes): the assert below says so
            break
        if inode != seen[-1]:
            seen.append(inode)
    moment = rng.uniform(0, 0.01)
    time.sleep(moment)
    workers = worker_pids()
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    thread.join(120)
    assert errors and "diagonal_p_s0 died" in str(errors[0]), (checkpoints, moment, errors)
    assert campaign.read_status(run)["status"] != "finished"
    campaign.run_campaign(config, deadline=time.time() + HOUR, workers=1, root=str(tmp_path))
    status = campaign.read_status(run)
    assert status["status"] == "finished"
    resumed = status["stretches"][-1]
    assert 1 <= resumed["from_epoch"] < 12 and resumed["to_epoch"] == 12, "from the epoch the checkpoint held"
    for a, b in zip(weights(run / "train.snapshots/e12.pt"), weights(uninterrupted / "train.snapshots/e12.pt")):
        assert torch.equal(a, b), f"killed {moment:.3f} s after checkpoint {checkpoints}"


@pytest.mark.slow
def test_a_killed_campaign_leaves_no_worker_training_on(tmp_path):
    """Killing the campaign's process ends its workers too: none trains on into a run's files
    beside the next campaign (as an orphaned worker did on 2026-12-06, until it was found)."""
    import subprocess
    import sys

    write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p", "epochs": 100_000}])
    env = {**os.environ, "PYTHONPATH": str(Path(campaign.__file__).parents[1])}
    parent = subprocess.Popen([sys.executable, "-m", "amortgap.campaign", "run", "--params", "params.yaml", "--workers", "1"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoint, deadline = tmp_path / "models/campaign/diagonal_p_s0/train.pt", time.time() + 120
    workers: list[int] = []

    def training(pid: int) -> bool:
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")

    try:
        while not checkpoint.exists() and time.time() < deadline:
            time.sleep(0.05)
        workers = worker_pids(parent.pid)
        assert checkpoint.exists() and len(workers) == 1, workers
        parent.kill()
        parent.wait()
        deadline = time.time() + 20
        while training(workers[0]) and time.time() < deadline:
            time.sleep(0.05)
        assert not training(workers[0]), "the worker outlived the campaign that started it"
    finally:  # nothing of this test trains on, whatever failed
        parent.kill()
        for pid in workers:
            if training(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("to", ["the campaign", "every process of the job"])
def test_a_sigterm_stops_the_campaign_with_its_leases_released_so_the_next_job_starts_at_once(tmp_path, to):
    """A scheduler's time limit or scancel sends SIGTERM (Slurm: to every process of the job, then
    SIGKILL after KillWait): the workers stop, release their leases and keep their last checkpoints,
    and the campaign exits with a message; the next job resumes the run at once, without waiting
    out the lease's limit."""
    import subprocess
    import sys

    write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p", "epochs": 100_000}])
    env = {**os.environ, "PYTHONPATH": str(Path(campaign.__file__).parents[1])}
    command = [sys.executable, "-m", "amortgap.campaign", "run", "--params", "params.yaml", "--workers", "1"]
    parent = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)  # fmt: skip
    run = tmp_path / "models/campaign/diagonal_p_s0"
    try:
        deadline = time.time() + 120
        while not (run / "train.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (run / "lease.json").exists() and len(worker_pids(parent.pid)) == 1
        if to == "the campaign":
            parent.send_signal(signal.SIGTERM)
        else:
            os.killpg(parent.pid, signal.SIGTERM)
        out, err = parent.communicate(timeout=60)
    finally:
        os.killpg(parent.pid, signal.SIGKILL) if parent.poll() is None else None
    assert parent.returncode == 2 and "stopped by SIGTERM" in err, (out, err)
    assert "diagonal_p_s0 stopped by SIGTERM; it resumes from its last checkpoint" in out
    assert not (run / "lease.json").exists(), "the lease was released"
    epoch = torch.load(run / "train.pt", weights_only=False)["epoch"]
    config = campaign.load_config(tmp_path / "params.yaml")
    status = campaign.train_entry(config, config.entries[0], time.time() + 5, str(tmp_path))  # a 5-second job
    stretch = status["stretches"][-1]
    assert stretch["from_epoch"] == epoch and stretch["to_epoch"] > epoch, "resumed at once, from the last checkpoint"


def test_the_campaign_stages_depend_on_every_module_it_imports():
    """The campaign's DVC stages list their code file by file (so that a change elsewhere in the
    library does not mark days of training stale): the list must cover what `amortgap.campaign` imports."""
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    imported = subprocess.run([sys.executable, "-c", "import sys, amortgap.campaign; print(' '.join(m.__file__ "
                               "for n, m in sys.modules.items() if n.split('.')[0] == 'amortgap'))"],
                              capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    modules = sorted(str(Path(f).resolve().relative_to(root)) for f in imported)
    for name in ("train", "train_encoder", "train_distilled"):
        missing = [f for f in modules if f not in stages[name]["do"]["deps"]]
        assert len(imported) >= 8 and not missing, f"add to the {name} stage's deps: {missing}"


def test_the_dvc_matrix_has_one_stage_per_run_of_the_campaign_in_its_order():
    """dvc.yaml's train@<run>, train_encoder@<run> (with its decoder file) and train_distilled@<run>
    (with its decoder file and q* targets, from the split_targets stage) are the campaign's runs."""
    root = Path(__file__).parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    config = campaign.load_config(root / "params.yaml")
    runs = config.runs
    plain = [r for r in runs if all(e.decoder is None for e in config.entries if e.run == r)]
    encoders = {e.run: e.decoder for e in config.entries if e.decoder is not None and e.init != "distilled"}
    distilled = {e.run: {"decoder": e.decoder, "targets": str(config.targets_path(e))} for e in config.entries if e.init == "distilled"}
    assert stages["train"]["foreach"] == plain, f"dvc.yaml's train stage should list {plain}"
    assert stages["train_encoder"]["foreach"] == encoders, f"dvc.yaml's train_encoder stage should map {encoders}"
    assert stages["train_distilled"]["foreach"] == distilled, f"dvc.yaml's train_distilled stage should map {distilled}"
    decoders = params["split_targets"]["decoders"]
    targets = stages["split_targets"]
    assert targets["cmd"] == " && ".join(f"python -m amortgap.study.split_targets {d} --params params.yaml" for d in decoders)
    assert {f"models/campaign/{d}" for d in decoders} <= set(targets["deps"])
    assert [next(iter(out)) for out in targets["outs"]] == [params["split_targets"]["targets_dir"], params["split_targets"]["parts_dir"]]
    assert params["split_targets"]["targets_dir"] == config.targets_dir, "the campaign reads the targets where they are written"
    made = {str(campaign.targets_file(config.targets_dir, d)) for d in decoders}
    assert {t["targets"] for t in distilled.values()} <= made, "every distilled run's targets come from split_targets"
    assert yaml.safe_load((root / "params.yaml").read_text())["retrain"] is False, "make repro must never train"
    missing = [d for d in [*encoders.values(), *(t["decoder"] for t in distilled.values())] if not (root / config.model_dir / d).exists()]
    assert not missing, f"an encoder's entry comes once its decoder's run has written {missing} (dvc repro needs it)"


def test_the_longer_schedule_check_compares_the_protocols_best_with_the_longer_runs():
    protocol = campaign.load_config(Path(__file__).parents[1] / "params.yaml").protocols["cremer"]
    epochs = pd.Series(range(1, 5468))
    valid = -120 + 10 * (1 - 1 / epochs**0.5)  # still rising at 3280: gains 0.03 more by 5467
    valid[50] = 0.0  # during the warm-up: never chosen
    history = pd.DataFrame({"epoch": epochs, "valid_elbo": valid})
    check = campaign.longer_schedule_check(history, protocol, 5467, patience_epoch=541)
    assert check["best_epoch"] == 3280 and check["longer_epochs"] == 5467
    assert check["gain"] == pytest.approx(10 / 3280**0.5 - 10 / 5467**0.5) and check["holds"]
    assert check["patience_shortfall"] == pytest.approx(10 / 541**0.5 - 10 / 3280**0.5)
    assert not campaign.longer_schedule_check(history, protocol, 5467, tolerance=0.01)["holds"]
    for short in (history[history.epoch <= 3000], history[history.epoch <= 5000]):  # not yet at 5467
        pending = campaign.longer_schedule_check(short, protocol, 5467)
        assert pending["holds"] is None and pending["gain"] is None
    assert campaign.longer_schedule_check(history[history.epoch <= 3000], protocol, 5467)["best_epoch"] == 3000
    assert campaign.longer_schedule_check(history, protocol, 4000)["gain"] == pytest.approx(10 / 3280**0.5 - 10 / 4000**0.5)
    with pytest.raises(ValueError, match="no epoch after the warm-up"):
        campaign.longer_schedule_check(history[history.epoch <= 100], protocol, 5467)


FIXTURE = Path(__file__).parent / "fixtures" / "campaign"


def test_the_protocol_table_reads_both_models_and_the_longer_schedule_check_from_the_runs(tmp_path):
    root = Path(__file__).parents[1]  # the fixture's model_dir is relative to the project
    config = campaign.load_config(FIXTURE / "params.yaml")
    protocol = config.protocols["cremer"]
    runs = campaign.read_runs(config, root)
    table = campaign.protocol_table(config, runs)
    assert list(table.run) == ["diagonal_cremer_s0", "planar_cremer_s0", "diagonal_batch20_s0"]
    for row in table.itertuples():
        own = config.protocols[row.protocol]
        history = runs[row.run][0].set_index("epoch").valid_elbo
        after = history[history.index > own.warmup_epochs]
        within = after[after.index <= own.epochs]
        assert row.best_valid_elbo == within.max() and row.best_epoch == within.idxmax() <= own.epochs
        assert row.final_valid_elbo == history[own.epochs]
        if row.protocol != "cremer":  # the batch-size control has no longer entry: no check
            assert pd.isna(row.longer_epochs) and pd.isna(row.longer_gain)
            continue
        assert row.longer_epochs == 67 and row.longer_gain == pytest.approx(after.max() - within.max())
        assert row.longer_holds == (row.longer_gain <= 0.3)
    # a run still short of the longer schedule: its check is pending, its early-stopped model is known
    shutil.copytree(root / config.model_dir, tmp_path / config.model_dir)
    path = config.run_dir("planar_cremer_s0", tmp_path) / "history.csv"
    pd.read_csv(path).query("epoch <= 50").to_csv(path, index=False)
    row = campaign.protocol_table(config, campaign.read_runs(config, tmp_path)).iloc[1]
    assert row.epoch == 50 and row.last_epoch == 67 and pd.isna(row.longer_gain) and row.best_epoch <= protocol.epochs


@pytest.mark.slow
def test_a_paused_run_resumes_from_its_committed_files_in_a_fresh_clone(tmp_path, uninterrupted):
    """Only what git commits survives a working stretch: a run paused at its protocol's end (its
    checkpoint kept for the longer entry) is committed under the project's .gitignore, cloned afresh
    and resumed there; it goes on exactly as the same run resumed where it paused (a snapshot at the
    longer entry's end holds its weights)."""
    import subprocess

    def git(*args, cwd):
        subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args], cwd=cwd,
                       check=True, capture_output=True)  # fmt: skip

    entries = [{"family": "diagonal", "seed": 0, "protocol": "p"},
               {"family": "diagonal", "seed": 0, "protocol": "p", "epochs": 16}]  # fmt: skip
    stretch, here, clone = tmp_path / "stretch", tmp_path / "here", tmp_path / "clone"
    for root in (stretch, here):
        root.mkdir()
        shutil.copy(Path(__file__).parents[1] / ".gitignore", root)
        config = campaign.load_config(write_params(root, entries, snapshot_epochs=[1, 12, 16]))
    assert [s["status"] for s in in_worker(config, config.entries[0], [stretch, here])] == ["paused"] * 2
    git("init", "-q", cwd=stretch)
    git("add", "-A", cwd=stretch)
    git("commit", "-q", "-m", "a working stretch's end", cwd=stretch)
    git("clone", "-q", str(stretch), str(clone), cwd=tmp_path)
    run = config.run_dir("diagonal_p_s0", clone)
    assert (run / "train.pt").exists(), "the checkpoint is committed, not ignored"
    for status in in_worker(config, config.entries[1], [clone, here]):
        assert status["status"] == "finished"
        assert [(s["from_epoch"], s["to_epoch"]) for s in status["stretches"]] == [(0, 12), (12, 16)], "both stretches"
    assert pd.read_csv(run / "history.csv").drop(columns="seconds").equals(
        pd.read_csv(config.run_dir("diagonal_p_s0", here) / "history.csv").drop(columns="seconds"))
    for a, b in zip(weights(run / "train.snapshots/e16.pt"), weights(config.run_dir("diagonal_p_s0", here) / "train.snapshots/e16.pt")):
        assert torch.equal(a, b), "the weights after the resumed epochs"
    for a, b in zip(weights(run / "best.pt"), weights(uninterrupted / "best.pt")):
        assert torch.equal(a, b), "the early-stopped model, written before the pause"


@pytest.mark.slow
def test_every_run_trains_on_one_thread_whoever_calls_and_records_each_stretch(tmp_path):
    """The campaign's rule, one thread per run, holds in its workers and when a caller with more
    threads trains a run itself; ``run.json`` records each stretch's threads and epochs."""
    entries = [{"family": "diagonal", "seed": 0, "protocol": "p"}, {"family": "planar", "seed": 0, "protocol": "p"},
               {"family": "diagonal", "seed": 0, "protocol": "p", "epochs": 14}]  # fmt: skip
    config = campaign.load_config(write_params(tmp_path, entries, epochs=3, snapshot_epochs=[3], warmup_epochs=1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        campaign.run_campaign(config, deadline=time.time() + HOUR, workers=2, root=str(tmp_path), only=["planar_p_s0"])
        campaign.train_entry(config, config.entries[0], time.time() + HOUR, str(tmp_path))
        assert torch.get_num_threads() == 2, "the caller's threads are restored"
        campaign.run_campaign(config, deadline=time.time() + HOUR, workers=2, root=str(tmp_path))
    finally:
        torch.set_num_threads(threads)
    planar, diagonal = (campaign.read_status(config.run_dir(run, tmp_path)) for run in ("planar_p_s0", "diagonal_p_s0"))
    assert [(s["from_epoch"], s["to_epoch"], s["threads"]) for s in planar["stretches"]] == [(0, 3, 1)]
    assert [(s["from_epoch"], s["to_epoch"], s["threads"]) for s in diagonal["stretches"]] == [(0, 3, 1), (3, 14, 1)]
    for stretch in diagonal["stretches"]:
        assert stretch["kernels"] == torch.backends.cpu.get_cpu_capability() and stretch["cpu"] and stretch["seconds"] > 0
        assert stretch["step"] == campaign.STEP, "each stretch names the training step that trained it"


def test_the_seconds_per_epoch_are_todays_steps_once_it_has_trained(tmp_path):
    """A run's time left is priced at the step that will train it: the stretches it trained (or
    its kind's) with today's step; before those, every epoch's median. A stretch recorded before
    the step was named was the autograd step's."""
    entries = [{"family": "diagonal", "seed": 0, "protocol": "p"}, {"family": "diagonal", "seed": 1, "protocol": "p"}]
    config = campaign.load_config(write_params(tmp_path, entries))
    older = {"from_epoch": 0, "to_epoch": 10, "seconds": 40.0}
    for seed, stretches in ((0, [older]), (1, [older, {"from_epoch": 10, "to_epoch": 30, "seconds": 50.0,
                                                       "step": campaign.STEP}])):  # fmt: skip
        run_dir = config.run_dir(f"diagonal_p_s{seed}", tmp_path)
        run_dir.mkdir(parents=True)
        status = {"status": "paused", "epoch": stretches[-1]["to_epoch"], "epoch_seconds_median": 4.0, "stretches": stretches}
        (run_dir / "run.json").write_text(json.dumps(status))
    assert campaign.step_epoch_seconds(campaign.read_status(run_dir)) == 2.5
    assert campaign.step_epoch_seconds(campaign.read_status(run_dir), campaign.STEP_BEFORE) == 4.0
    assert campaign.epoch_seconds(config, tmp_path) == {"diagonal_p_s0": 2.5, "diagonal_p_s1": 2.5}, "its kind's, today"
    table = campaign.status_table(config, root=str(tmp_path))
    assert table.steps.tolist() == [campaign.STEP_BEFORE, f"{campaign.STEP_BEFORE}+{campaign.STEP}"]
    assert table[f"s_per_epoch_{campaign.STEP}"].isna().tolist() == [True, False]


def test_no_run_starts_that_cannot_train_a_worthwhile_stretch_before_the_deadline(tmp_path, capsys):
    entries = [{"family": "diagonal", "seed": 0, "protocol": "p"}, {"family": "diagonal", "seed": 1, "protocol": "p"}]
    config = campaign.load_config(write_params(tmp_path, entries))
    assert campaign.run_campaign(config, deadline=time.time() + 9 * 60, root=str(tmp_path)) == []
    assert "not starting diagonal_p_s0: 9.0 min to the deadline, it needs 10.0" in capsys.readouterr().out
    assert campaign.status_table(config, root=str(tmp_path)).status.tolist() == ["not started"] * 2
    # a run whose epochs are known to be long needs two of them and a worker's start, beyond the minimum
    run_dir = config.run_dir("diagonal_p_s0", tmp_path)
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text('{"status": "paused", "epoch": 3, "epoch_seconds_median": 400.0}')
    seconds = campaign.epoch_seconds(config, tmp_path)
    assert seconds == {"diagonal_p_s0": 400.0, "diagonal_p_s1": 400.0}, "a run not started: its kind's median"
    assert campaign.start_need(seconds["diagonal_p_s0"]) == campaign.STARTUP_SECONDS + 800
    assert campaign.start_need(None) == campaign.start_need(1.0) == 600, "the minimum"
    assert campaign.run_campaign(config, deadline=time.time() + 800, root=str(tmp_path)) == []
    assert "not starting diagonal_p_s1: 13.3 min to the deadline, it needs 14.3" in capsys.readouterr().out
    params = str(tmp_path / "params.yaml")
    assert campaign.main(["run", "--params", params, "--budget-minutes", "5"]) == 2
    assert "a budget of 5 minutes starts no run" in capsys.readouterr().err


def test_a_run_in_training_says_where_it_is_in_its_run_json(tmp_path):
    """So that a commit in the middle of a stretch (its checkpoint at epoch N) says epoch N."""
    config = campaign.load_config(write_params(tmp_path, [{"family": "diagonal", "seed": 0, "protocol": "p"}]))
    entry, run_dir = config.entries[0], tmp_path / "run"
    run_dir.mkdir()
    status = {"run": entry.run, "status": "paused", "epoch": 3, "train_seconds": 30.0, "stretches": [{"started": "a"}]}
    stretch = campaign.stretch_record()
    on_epoch = campaign._on_epoch(entry, config.protocols["p"], run_dir, status, stretch, record_every=0.0)
    for epoch in (4, 5):
        on_epoch({"epoch": epoch, "train_elbo": -200.0, "valid_elbo": -210.0, "lr": 1e-3, "seconds": 2.0})
    now = campaign.read_status(run_dir)
    assert now["status"] == "training" and now["training_epoch"] == 5 and now["train_seconds"] == 34.0
    assert now["epoch"] == 3, "the last pause's, whose files are complete: a killed run is resumed, not taken for reached"
    assert now["stretches"] == [{"started": "a"}, {**stretch, "to_epoch": 5, "seconds": 4.0}]
    assert not list(run_dir.glob(".*.tmp")), "written atomically"
