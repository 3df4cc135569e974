"""The campaign on a cluster: the Slurm array script's body, run here with the variables Slurm would
set (no Slurm runs here), trains the entry its task number names, for the job's time less a
margin, and records the job in each stretch."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from amortgap import campaign

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "cluster" / "campaign.sbatch"


def write_params(root: Path) -> campaign.CampaignConfig:
    section = {"model_dir": "models/campaign", "num_train": 400,
               "architecture": {"latent_dim": 3, "encoder_hidden": [16], "decoder_hidden": [16]},
               "protocols": {"p": {"epochs": 3, "batch_size": 100, "snapshot_epochs": [3]}},
               "entries": [{"family": "diagonal", "seed": 0, "protocol": "p"},
                           {"family": "diagonal", "seed": 1, "protocol": "p"}]}  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump({"campaign": section}))
    return campaign.load_config(root / "params.yaml")


def array_task(root: Path, task: int, **env: str) -> subprocess.CompletedProcess:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("SLURM") and k != "BUDGET_MINUTES"}
    variables = {**outside, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_JOB_ID": "77", "SLURM_JOB_ID": f"{78 + task}",
                 "PYTHON": sys.executable, "MIN_MINUTES": "1", **env}  # fmt: skip
    return subprocess.run(["bash", str(SCRIPT)], cwd=root, env=variables, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_each_array_task_trains_its_entry_for_the_jobs_time_and_records_the_job(tmp_path):
    config = write_params(tmp_path)
    end = str(int(time.time()) + 30 * 60)  # a 30-minute job: 20 minutes of training after the margin
    for task in (1, 0):
        done = array_task(tmp_path, task, SLURM_JOB_END_TIME=end)
        assert done.returncode == 0, done.stderr
        assert f"task {task} of job 77" in done.stdout and any(f": {m} minutes" in done.stdout for m in (19, 20))
        run = config.entries[task].run
        status = campaign.read_status(config.run_dir(run, tmp_path))
        assert status["status"] == "finished" and status["epoch"] == 3
        assert status["stretches"][-1]["scheduler"] == f"slurm {78 + task} task {task}"
        others = [e.run for e in config.entries if e.run != run]
        if task == 1:
            assert all(campaign.read_status(config.run_dir(r, tmp_path))["status"] == "not started" for r in others)


def test_a_task_without_a_known_time_limit_or_outside_an_array_says_what_is_missing(tmp_path):
    write_params(tmp_path)
    missing = array_task(tmp_path, 0, PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")  # no squeue, no budget
    assert missing.returncode != 0 and "no time limit known: set BUDGET_MINUTES" in missing.stderr
    outside = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("SLURM")})  # fmt: skip
    assert outside.returncode != 0 and "submit this script as an array job" in outside.stderr


def test_slurm_times_read_as_minutes():
    assert [campaign.slurm_minutes(t) for t in ("1-02:03:04", "2:03:04", "3:04", "0:59")] == [1563, 123, 3, 0]
    for bad in ("UNLIMITED", "INVALID", "1:2:3:4", "x-1:00"):
        with pytest.raises(ValueError, match="not a Slurm time"):
            campaign.slurm_minutes(bad)


@pytest.mark.slow
def test_the_dvc_matrix_leaves_runs_alone_in_repro_and_trains_them_as_queued_experiments(tmp_path):
    """dvc.yaml's campaign stages, their matrices set to test scale in a fresh repository: `dvc
    repro` trains nothing (params.yaml's retrain is false); `dvc exp run --queue -s -S retrain=true
    train@<run>` for two runs, run two at a time, trains both, each in its own workspace, and
    `python -m amortgap.build.collect` brings both directories back, with their lock entries; then
    an encoder on one of their decoders, committed, trains the same way without rerunning its
    decoder's stage."""
    config = write_params(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    runs = [e.run for e in config.entries]
    encoder = {"family": "diagonal", "seed": 2, "protocol": "p", "decoder": f"{runs[0]}/best.pt", "encoder_hidden": [8]}
    params["campaign"]["entries"].append(encoder)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"retrain": False, **params}))
    config = campaign.load_config(tmp_path / "params.yaml")
    fresh = config.runs[-1]
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    matrix = {"train": stages["train"] | {"foreach": runs}, "train_encoder": stages["train_encoder"] | {"foreach": {fresh: encoder["decoder"]}}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": matrix["train"]}}))
    shutil.copytree(ROOT / "lib", tmp_path / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip

    def sh(*command: str) -> str:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def queued(*stages: str) -> list[str]:
        for stage in stages:
            sh("dvc", "exp", "run", "--queue", "-s", "-S", "retrain=true", stage)
        sh("dvc", "exp", "run", "--run-all", "-j", "2")
        collected = sh(sys.executable, "-m", "amortgap.build.collect").splitlines()
        sh("dvc", "commit", "-f", *stages)  # the lock as params.yaml has it (retrain: false)
        sh("git", "add", "-A"), sh("git", "commit", "-qm", "collected")
        return sorted(line.split(": ")[1] for line in collected)

    sh("git", "init", "-q"), sh("git", "config", "user.name", "t"), sh("git", "config", "user.email", "t@t")  # DVC's own git too
    sh("dvc", "init", "-q"), sh("git", "add", "-A"), sh("git", "commit", "-qm", "campaign")
    assert "not trained here" in sh("dvc", "repro")
    assert [campaign.read_status(config.run_dir(r, tmp_path))["status"] for r in runs] == ["not started"] * 2
    sh("git", "add", "-A"), sh("git", "commit", "-qm", "the runs' stages, nothing trained")
    assert queued(*(f"train@{r}" for r in runs)) == sorted(f"train@{r}" for r in runs)
    for run in runs:
        status = campaign.read_status(config.run_dir(run, tmp_path))
        assert status["status"] == "finished" and status["epoch"] == 3 and (config.run_dir(run, tmp_path) / "best.pt").exists()
    assert "up to date" in sh("dvc", "status")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": matrix}))  # the encoder, once its decoder exists
    decoder = (config.run_dir(runs[0], tmp_path) / "best.pt").read_bytes()
    assert queued(f"train_encoder@{fresh}") == [f"train_encoder@{fresh}"], "its decoder's stage did not rerun"
    assert campaign.read_status(config.run_dir(fresh, tmp_path))["status"] == "finished"
    assert (config.run_dir(runs[0], tmp_path) / "best.pt").read_bytes() == decoder
    assert "up to date" in sh("dvc", "status")
