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


def campaign_experiment(repo: Path) -> str:
    """On a commit where run/ (stage r's output) holds a checkpoint, an experiment that finishes the
    run (deletes the checkpoint, writes best.pt, records stage r) with retrain=true set by -S, and
    whose snapshot also held an uncommitted other.txt; returns the commit it is based on."""
    (repo / "run").mkdir()
    (repo / "run" / "train.pt").write_text("checkpoint\n")
    (repo / "other.txt").write_text("committed\n")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    lock["stages"]["r"] = {"cmd": "train --retrain false", "outs": [{"path": "run", "md5": "1"}]}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a run in training")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "rm", "-q", "run/train.pt")  # (git takes the emptied folder away)
    (repo / "run").mkdir()
    (repo / "run" / "best.pt").write_text("weights\n")
    (repo / "params.yaml").write_text("retrain: true\n")
    (repo / "other.txt").write_text("uncommitted when queued\n")
    lock["stages"]["r"] = {"cmd": "train --retrain true", "outs": [{"path": "run", "md5": "2"}]}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "finished")
    git(repo, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/exp-done", git(repo, "rev-parse", "HEAD"))
    git(repo, "checkout", "-q", base)
    git(repo, "branch", "-qf", "main", base)
    git(repo, "checkout", "-q", "main")
    return base


def test_only_the_changed_stages_outputs_come_back_deletions_included(repo):
    """A finished campaign run deletes its checkpoint: collecting it deletes the file here too. The
    experiment's settings and whatever else its snapshot held stay in it."""
    base = campaign_experiment(repo)
    commit_experiment(repo, base, "exp-a", "a", "a.csv", "new a\n")
    assert collect.collect(repo) == {"exp-done": ["r"], "exp-a": ["a"]}
    assert not (repo / "run" / "train.pt").exists() and (repo / "run" / "best.pt").read_text() == "weights\n"
    assert (repo / "a.csv").read_text() == "new a\n"
    assert not (repo / "params.yaml").exists(), "settings stay in the experiment"
    assert (repo / "other.txt").read_text() == "committed\n", "not an output of a stage it ran"


def test_identical_entries_are_one_result_and_local_changes_are_never_overwritten(repo):
    base = git(repo, "rev-parse", "HEAD")
    commit_experiment(repo, base, "exp-a-again", "a", "a.csv", "new a\n")  # the same stage, the same result
    assert collect.collect(repo, ["exp-a", "exp-a-again"]) == {"exp-a": ["a"], "exp-a-again": ["a"]}
    git(repo, "reset", "-q", "--hard")
    (repo / "b.csv").write_text("edited here\n")
    with pytest.raises(ValueError, match="also changed here"):
        collect.collect(repo)
    assert (repo / "b.csv").read_text() == "edited here\n" and (repo / "a.csv").read_text() == "old a\n", "nothing touched"
