"""Fashion-MNIST idx parsing on tiny files written here, the clear errors, and the real data set."""

import gzip
import struct

import numpy as np
import pytest
import torch

from amortgap import data
from conftest import write_idx


def test_reads_what_was_written(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), array)


def test_splits_partition_the_training_images(tiny_dir):
    train = data.load("train", tiny_dir, num_valid=10)
    valid = data.load("valid", tiny_dir, num_valid=10)
    test = data.load("test", tiny_dir)
    assert (len(train), len(valid), len(test)) == (20, 10, 7)
    assert train.x.shape == (20, 784) and train.x.dtype == torch.float32
    assert 0 <= train.x.min() and train.x.max() <= 1
    rows = {tuple(r.tolist()) for r in torch.cat([train.x, valid.x])}
    assert len(rows) == 30, "train and valid are disjoint and together hold every training image"
    again = data.load("valid", tiny_dir, num_valid=10)
    assert torch.equal(valid.x, again.x), "the split is seeded"
    other = data.load("valid", tiny_dir, num_valid=10, split_seed=1)
    assert not torch.equal(valid.x, other.x)


def test_environment_variable_points_at_the_data(tiny_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tiny_dir))
    assert len(data.load("test")) == 7


def test_binarization():
    x = torch.tensor([[0.0, 0.5, 0.51, 1.0]])
    assert data.binarize(x, "static").tolist() == [[0.0, 0.0, 1.0, 1.0]]
    draws = data.binarize(x.expand(4000, -1), "dynamic", torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(draws.mean(0), x[0], atol=0.03, rtol=0)
    with pytest.raises(ValueError, match="binarization"):
        data.binarize(x, "soft")


def test_load_binarized_is_fixed_per_seed(tiny_dir):
    a = data.load_binarized("test", "dynamic", tiny_dir, binarize_seed=3)
    b = data.load_binarized("test", "dynamic", tiny_dir, binarize_seed=3)
    assert torch.equal(a, b)


def test_missing_file_names_it_and_the_install_command(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.load("test", tmp_path)
    assert str(tmp_path / "t10k-images-idx3-ubyte.gz") in str(err.value)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "not_gzip", "bad_magic", "wrong_size", "empty"])
def test_corrupt_file_gives_the_clear_error(tiny_dir, damage):
    target = tiny_dir / data.FILES["test"][0]
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "not_gzip":
        target.write_bytes(b"this is not gzip at all")
    elif damage == "bad_magic":
        write_idx(target, np.zeros((7, 28, 28)), magic_dtype=0x0D)
    elif damage == "wrong_size":
        with gzip.open(target, "wb") as f:
            f.write(struct.pack(">HBBIII", 0, 8, 3, 7, 28, 28) + b"\0" * 100)
    else:
        with gzip.open(target, "wb") as f:
            f.write(b"")
    with pytest.raises(data.DataError, match="corrupt") as err:
        data.load("test", tiny_dir)
    assert str(target) in str(err.value) and "apt-get install" in str(err.value)


def test_images_and_labels_must_agree(tiny_dir):
    write_idx(tiny_dir / data.FILES["test"][1], np.zeros(3))
    with pytest.raises(data.DataError, match="disagree"):
        data.load("test", tiny_dir)


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        data.load("holdout")


def test_real_fashion_mnist():
    """`make test` installs Debian's dataset-fashion-mnist; this reads the real files."""
    train, valid, test = (data.load(s, data.DEFAULT_DATA_DIR) for s in ("train", "valid", "test"))
    assert (len(train), len(valid), len(test)) == (50_000, 10_000, 10_000)
    assert train.labels.bincount().tolist() == pytest.approx([5000] * 10, rel=0.05)
    assert test.labels.bincount().tolist() == [1000] * 10
    binary = data.binarize(test.x)
    assert 0.2 < binary.mean() < 0.5


def test_random_subsets_are_seeded_nested_and_spread_over_the_split():
    from amortgap.data import random_subset

    a = random_subset(10_000, 500, seed=0)
    assert torch.equal(a, random_subset(10_000, 500, seed=0)) and len(set(a.tolist())) == 500
    assert set(random_subset(10_000, 200, seed=0).tolist()) <= set(a.tolist())
    assert not torch.equal(a, random_subset(10_000, 500, seed=1))
    assert a.min() < 500 and a.max() > 9_500  # not the first rows
    with pytest.raises(ValueError):
        random_subset(10, 11, seed=0)
