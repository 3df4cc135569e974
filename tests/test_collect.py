"""Collecting DVC experiments that each ran different stages: files and lock entries of each arrive,
and two experiments that ran the same stage are refused."""

import subprocess
from pathlib import Path

import pytest
import yaml

from amortgap.build import collect


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def commit_experiment(root: Path, base: str, name: str, stage: str, path: str, content: str) -> None:
    """An experiment commit on top of ``base`` that changes one output and one lock entry, stored
    under refs/exps like `dvc exp run` does; the workspace returns to ``base``."""
    git(root, "checkout", "-q", base)
    (root / path).write_text(content)
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    lock["stages"][stage] = {"cmd": f"make {path}", "outs": [{"path": path, "md5": content}]}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    git(root, "commit", "-qam", name)
    sha = git(root, "rev-parse", "HEAD")
    git(root, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/{name}", sha)
    git(root, "checkout", "-q", "main")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "a.csv").write_text("old a\n")
    (tmp_path / "b.csv").write_text("old b\n")
    lock = {"schema": "2.0", "stages": {"a": {"cmd": "make a.csv"}, "b": {"cmd": "make b.csv"}, "c": {"cmd": "c"}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    base = git(tmp_path, "rev-parse", "HEAD")
    commit_experiment(tmp_path, base, "exp-a", "a", "a.csv", "new a\n")
    commit_experiment(tmp_path, base, "exp-b", "b", "b.csv", "new b\n")
    return tmp_path


def test_each_experiment_brings_its_own_stages(repo):
    assert set(collect.experiments(repo)) == {"exp-a", "exp-b"}
    assert collect.collect(repo) == {"exp-a": ["a"], "exp-b": ["b"]}
    assert (repo / "a.csv").read_text() == "new a\n" and (repo / "b.csv").read_text() == "new b\n"
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert stages["a"]["outs"][0]["md5"] == "new a\n" and stages["b"]["outs"][0]["md5"] == "new b\n"
    assert stages["c"] == {"cmd": "c"}, "stages no experiment ran are left alone"


def test_two_experiments_that_ran_one_stage_are_refused(repo):
    base = git(repo, "rev-parse", "HEAD")
    commit_experiment(repo, base, "exp-a2", "a", "a.csv", "other a\n")
    with pytest.raises(ValueError, match="reran stages another experiment also ran"):
        collect.collect(repo, ["exp-a", "exp-a2"])
    assert (repo / "a.csv").read_text() == "old a\n", "a refused collection changes nothing"
    with pytest.raises(ValueError, match="no experiments"):
        collect.collect(repo, ["missing"])


def test_a_file_the_experiment_deleted_goes_from_the_workspace_too_and_its_settings_stay(repo):
    """A campaign run that finishes deletes its checkpoint: collecting it deletes the file here; the
    experiment's parameter overrides stay in it."""
    (repo / "train.pt").write_text("checkpoint\n")
    git(repo, "add", "train.pt")
    git(repo, "commit", "-qm", "a run in training")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", base)
    git(repo, "rm", "-q", "train.pt")
    (repo / "params.yaml").write_text("retrain: true\n")  # the experiment's setting (dvc exp run -S), not a result
    git(repo, "add", "params.yaml")
    git(repo, "commit", "-qm", "finished")
    git(repo, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/exp-done", git(repo, "rev-parse", "HEAD"))
    git(repo, "checkout", "-q", "main")
    commit_experiment(repo, base, "exp-a", "a", "a.csv", "new a\n")
    assert collect.collect(repo) == {"exp-done": [], "exp-a": ["a"]}
    assert not (repo / "train.pt").exists() and (repo / "a.csv").read_text() == "new a\n"
    assert not (repo / "params.yaml").exists(), "settings stay in the experiment"
