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


# ---------------------------------------------------------------------------------------------
# SHD / SSC: the published HDF5 layout, written small
# ---------------------------------------------------------------------------------------------

def write_shd(path, samples: list[tuple[list[float], list[int]]], labels: list[int]) -> None:
    """An HDF5 file in SHD's layout: spikes/times (vlen float), spikes/units (vlen uint16), labels."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as fh:
        times = fh.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float32))
        units = fh.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i] = np.asarray(t, dtype=np.float32)
            units[i] = np.asarray(u, dtype=np.uint16)
        fh.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))


def test_shd_binning_by_hand(tmp_path):
    # T=4 over 1.0 s: bins [0, .25), [.25, .5), [.5, .75), [.75, 1); 1.2 s is past the duration.
    samples = [([0.0, 0.1, 0.2, 0.3, 0.99, 1.2], [5, 5, 699, 5, 0, 3]), ([], []), ([0.5], [7])]
    write_shd(tmp_path / "shd_train.h5", samples, [3, 0, 19])
    ds = data.SpikingAudio(tmp_path, "shd", "train", num_steps=4)
    assert len(ds) == 3 and ds.sample_shape == (700,) and ds.num_classes == 20
    frames, label = ds[0]
    assert frames.shape == (4, 700) and frames.dtype == torch.float32 and label == 3
    expected = torch.zeros(4, 700)
    expected[0, 5] = 2.0  # two spikes of channel 5 in the first bin stay a count of 2
    expected[0, 699] = 1.0
    expected[1, 5] = 1.0
    expected[3, 0] = 1.0
    assert torch.equal(frames, expected)
    assert torch.equal(ds[1][0], torch.zeros(4, 700))
    x = ds.batch([2, 0])
    assert x.shape == (4, 2, 700)
    assert x[2, 0, 7] == 1 and x[:, 0].sum() == 1 and torch.equal(x[:, 1], expected)
    # a longer window keeps the spike at 1.2 s: bin floor(1.2 / 2.0 * 4) = 2
    assert data.SpikingAudio(tmp_path, "shd", "train", num_steps=4, duration=2.0)[0][0][2, 3] == 1
    (xb, yb), = list(ds.batches(8))
    assert xb.shape == (4, 3, 700) and yb.tolist() == [3, 0, 19]


def test_ssc_and_load(tmp_path):
    write_shd(tmp_path / "ssc_valid.h5", [([0.1], [1])], [34])
    assert data.SpikingAudio(tmp_path, "ssc", "valid", num_steps=2).num_classes == 35
    write_shd(tmp_path / "shd_test.h5", [([0.1], [1])] * 2, [1, 2])
    x, y = data.load("shd", tmp_path, train=False, num_steps=10)
    assert isinstance(x, data.EventFrames) and y.tolist() == [1, 2] and x.batch([0, 1]).shape == (10, 2, 700)


def test_shd_errors_are_clear(tmp_path):
    h5py = pytest.importorskip("h5py")
    with pytest.raises(FileNotFoundError, match="shd_train.h5.*never downloads"):
        data.SpikingAudio(tmp_path, "shd", "train")
    with h5py.File(tmp_path / "shd_train.h5", "w") as fh:
        fh.create_dataset("labels", data=np.zeros(2, np.uint16))
    with pytest.raises(ValueError, match="lacks spikes/times, spikes/units"):
        data.SpikingAudio(tmp_path, "shd", "train")
    (tmp_path / "shd_test.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        data.SpikingAudio(tmp_path, "shd", "test")
    write_shd(tmp_path / "shd_train.h5", [([0.1], [1])], [20])
    with pytest.raises(ValueError, match="labels must lie in 0..19"):
        data.SpikingAudio(tmp_path, "shd", "train")
    write_shd(tmp_path / "shd_train.h5", [([0.1, 0.2], [1])], [2])
    with pytest.raises(ValueError, match="sample 0 has"):
        data.SpikingAudio(tmp_path, "shd", "train")[0]
    with pytest.raises(ValueError, match="num_steps"):
        data.SpikingAudio(tmp_path, "shd", "train", num_steps=0)
    with pytest.raises(ValueError, match="split"):
        data.SpikingAudio(tmp_path, "shd", "valid")


# ---------------------------------------------------------------------------------------------
# N-MNIST / DVS Gesture through tonic, from small files in their formats
# ---------------------------------------------------------------------------------------------

def write_nmnist_bin(path, events: list[tuple[int, int, int, int]]) -> None:
    """N-MNIST's 40-bit events: x, y, polarity (bit 7) + 23-bit timestamp in us."""
    raw = bytearray()
    for x, y, p, t in events:
        raw += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(raw))


def test_nmnist_frames_through_tonic(tmp_path):
    pytest.importorskip("tonic")
    events = [(1, 2, 1, 0), (1, 2, 1, 10), (30, 0, 0, 500), (33, 0, 0, 999)]
    write_nmnist_bin(tmp_path / "NMNIST/Train/3/00001.bin", events)
    write_nmnist_bin(tmp_path / "NMNIST/Train/7/00002.bin", [(0, 0, 0, 0), (5, 6, 1, 500)])
    ds = data.TonicFrames(tmp_path, "nmnist", train=True, num_steps=2)
    assert ds.labels.tolist() == [3, 7] and ds.sample_shape == (2, 34, 34) and ds.num_classes == 10
    frames, label = ds[0]
    assert frames.shape == (2, 2, 34, 34) and frames.dtype == torch.int16 and label == 3
    # bins [0, 499.5) and [499.5, 999) us: tonic's ToFrame leaves out the last event (its bins
    # end at the last timestamp, exclusive)
    assert frames[0, 1, 2, 1] == 2 and frames[1, 0, 0, 30] == 1 and frames.sum() == 3
    assert ds.batch([0, 1]).shape == (2, 2, 2, 34, 34)


def test_dvsgesture_frames_through_tonic(tmp_path):
    pytest.importorskip("tonic")
    folder = tmp_path / "DVSGesture/ibmGestureTest/user24_led"
    folder.mkdir(parents=True)
    # x, y, p, t (ms); the last event falls out of tonic's bins (see the N-MNIST test)
    np.save(folder / "4.npy", np.array([[3, 4, 1, 0.0], [3, 4, 1, 1.0], [127, 0, 0, 2.0], [0, 0, 0, 3.0]]))
    ds = data.TonicFrames(tmp_path, "dvsgesture", train=False, num_steps=3)
    frames, label = ds[0]
    assert label == 4 and frames.shape == (3, 2, 128, 128) and frames.sum() == 3
    assert frames[0, 1, 4, 3] == 1 and frames[1, 1, 4, 3] == 1 and frames[2, 0, 0, 127] == 1


def test_tonic_sets_refuse_missing_files_before_tonic(tmp_path, monkeypatch):
    # tonic would download: the check must come first, with or without tonic installed.
    with pytest.raises(FileNotFoundError, match=r"NMNIST.Train holds no \.bin.*never downloads"):
        data.TonicFrames(tmp_path, "nmnist")
    with pytest.raises(FileNotFoundError, match="ibmGestureTrain"):
        data.load("dvsgesture", tmp_path)
    with pytest.raises(ValueError, match="name must be one of"):
        data.TonicFrames(tmp_path, "cifar10dvs")
