"""Loaders read the real file formats; tests write small files in those formats themselves."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from fusedsnn import data


def _write_idx(path, array: np.ndarray, compress: bool):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_mnist_idx_loader(tmp_path, compress):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 7), ("t10k", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28))
        labels = rng.integers(0, 10, size=(n,))
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images, compress)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels, compress)
        x, y = data.load_mnist(tmp_path, train=prefix == "train")
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
        assert torch.allclose(x[:, 0] * 255, torch.tensor(images, dtype=torch.float32))
        assert y.tolist() == labels.tolist()


def test_mnist_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        data.load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(tmp_path / "train-images-idx3-ubyte")


def test_cifar10_pickle_loader(tmp_path):
    rng = np.random.default_rng(1)
    expected = []
    for name, n in [(f"data_batch_{i}", 2) for i in range(1, 6)] + [("test_batch", 3)]:
        raw = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(n,)).tolist()
        with open(tmp_path / name, "wb") as fh:
            pickle.dump({b"data": raw, b"labels": labels}, fh)
        expected.append((raw, labels))
    x, y = data.load_cifar10(tmp_path, train=True)
    assert x.shape == (10, 3, 32, 32) and y.shape == (10,)
    assert torch.allclose(x[0].reshape(-1) * 255, torch.tensor(expected[0][0][0], dtype=torch.float32))
    xt, yt = data.load_cifar10(tmp_path, train=False)
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == expected[-1][1]


def test_digits_ship_with_the_package_and_split_is_fixed():
    x_train, y_train = data.load_digits(train=True)
    x_test, y_test = data.load_digits(train=False)
    assert x_train.shape[1:] == (1, 8, 8) and len(y_train) + len(y_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert torch.equal(data.load_digits(train=True)[1], y_train)
    assert data.resize(x_test[:2], 28).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="data-root"):
        data.load("mnist")
