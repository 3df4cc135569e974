"""`python -m amortgap train` then `evaluate`, end to end on a tiny Fashion-MNIST look-alike."""

import subprocess
import sys

import pandas as pd
import pytest

from amortgap import cli, data, models

TINY_MODEL = ["--latent-dim", "2", "--encoder-hidden", "16", "--decoder-hidden", "16"]
CHEAP_EVAL = ["--elbo-samples", "20", "--iwae-samples", "20", "--ais-steps", "10", "--ais-chains", "2",
              "--qstar-max-steps", "20"]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--device" in out and ("--encoder-hidden" in out if command == "train" else "--ais-steps" in out)


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "amortgap", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "evaluate" in result.stdout


def test_train_then_evaluate(tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tiny_dir))
    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), "--epochs", "2", "--batch-size", "10", "--num-valid", "10",
                     "--quiet", "--device", "cpu", *TINY_MODEL]) == 0
    assert {p.name for p in run.iterdir()} == {"model.pt", "checkpoint.pt", "history.csv", "config.json"}
    assert models.load(run / "model.pt").config.encoder_hidden == (16,)
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert "best validation ELBO" in capsys.readouterr().out

    table_path = tmp_path / "table.csv"
    assert cli.main(["evaluate", str(run / "model.pt"), "--num-points", "5", "--out", str(table_path),
                     "--quiet", *CHEAP_EVAL]) == 0
    out = capsys.readouterr().out
    assert "amortization_gap" in out and "5 test points" in out
    table = pd.read_csv(table_path, index_col="datapoint")
    assert len(table) == 5 and (table.ais_steps == 10).all() and (table.iwae_samples == 20).all()
    assert table.image.tolist() == data.random_subset(len(data.load("test", tiny_dir)), 5, seed=0).tolist()

    # resuming a finished run with more epochs continues it
    assert cli.main(["train", "--out", str(run), "--epochs", "3", "--batch-size", "10", "--num-valid", "10",
                     "--quiet", "--resume", *TINY_MODEL]) == 0
    assert len(pd.read_csv(run / "history.csv")) == 3


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--data-dir", str(tmp_path), "--quiet"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"nonsense")
    assert cli.main(["evaluate", str(tmp_path / "bad.pt"), "--quiet"]) == 2
    assert "not a loadable amortgap checkpoint" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--epochs", "0"]) == 2
    assert "epochs must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"hello world\n", b"", b"PK\x03\x04 not a zip", b"\x80\x02}q\x00."])
def test_every_unreadable_checkpoint_gets_the_same_clear_error(tmp_path, capsys, content):
    """A short text file once raised torch's raw ``KeyError: 101`` from the unpickler."""
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    assert cli.main(["evaluate", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("not a loadable amortgap checkpoint" in err or "no format tag" in err)
    assert "Traceback" not in err


@pytest.mark.parametrize("points", ["8", "0"])
def test_more_points_than_the_split_has_fails_before_any_work(tiny_dir, tmp_path, monkeypatch, capsys, points):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tiny_dir))
    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), "--epochs", "1", "--batch-size", "10", "--num-valid", "10",
                     "--quiet", "--device", "cpu", *TINY_MODEL]) == 0
    monkeypatch.setattr(cli.gaps, "decompose", lambda *a, **k: pytest.fail("decompose must not start"))
    capsys.readouterr()
    assert cli.main(["evaluate", str(run / "model.pt"), "--num-points", points, "--quiet"]) == 2
    assert "between 1 and 7, the number of test images" in capsys.readouterr().err
