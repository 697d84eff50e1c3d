"""Data sets with no download: scikit-learn's digits (shipped in the package) by default, and
loaders for MNIST and CIFAR-10 files that the user already has on disk.

Every loader returns ``(images, labels)`` tensors: images float32 in [0, 1] shaped
``[N, C, H, W]``, labels int64 ``[N]``.

- ``digits``: 1,797 8x8 grey images of 10 digits (sklearn.datasets.load_digits, pixel values
  0..16 scaled to [0, 1]). A fixed, stratified-by-shuffle 80/20 split.
- ``mnist``: the four IDX files (``train-images-idx3-ubyte`` etc., optionally ``.gz``).
- ``cifar10``: the python-pickle batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits as sk_digits

Tensor = torch.Tensor


def load_digits(train: bool = True, seed: int = 0) -> tuple[Tensor, Tensor]:
    """scikit-learn's digits as ``[N, 1, 8, 8]`` images in [0, 1] and labels."""
    data = sk_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(labels))
    idx = order[:cut] if train else order[cut:]
    return images[idx], labels[idx]


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz", root / name.replace("-idx", ".idx")):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{name} (or {name}.gz) not found in {root}; download the MNIST IDX files there yourself "
        "(fusedsnn never downloads data)"
    )


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): magic 0x00 0x00 type ndim, big-endian dims, raw data."""
    with _open(Path(path)) as fh:
        header = fh.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0:
            raise ValueError(f"{path} is not an IDX file (bad magic number)")
        dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(header[2])
        if dtype is None:
            raise ValueError(f"{path}: unknown IDX data type 0x{header[2]:02x}")
        ndim = header[3]
        dims = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
        data = np.frombuffer(fh.read(), dtype=dtype)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values for shape {dims}, found {data.size}")
    return data.reshape(dims)


def load_mnist(root: str | Path, train: bool = True) -> tuple[Tensor, Tensor]:
    """MNIST from the IDX files in ``root``: ``[N, 1, 28, 28]`` in [0, 1] and labels."""
    root = Path(root)
    prefix = "train" if train else "t10k"
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST files in {root} have inconsistent shapes {images.shape} and {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_cifar10(root: str | Path, train: bool = True) -> tuple[Tensor, Tensor]:
    """CIFAR-10 from the python pickle batches in ``root`` (the ``cifar-10-batches-py`` folder)."""
    root = Path(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    xs, ys = [], []
    for name in names:
        path = root / name
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; put the CIFAR-10 python batches there yourself "
                                    "(fusedsnn never downloads data)")
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs).astype(np.float32) / 255.0)
    return x, torch.from_numpy(np.concatenate(ys))


def load(name: str, root: str | Path | None = None, train: bool = True) -> tuple[Tensor, Tensor]:
    """``name`` in {"digits", "mnist", "cifar10"}; ``root`` is required for the last two."""
    if name == "digits":
        return load_digits(train)
    if root is None:
        raise ValueError(f"dataset {name!r} needs --data-root pointing at files you already have")
    if name == "mnist":
        return load_mnist(root, train)
    if name == "cifar10":
        return load_cifar10(root, train)
    raise ValueError(f"dataset must be 'digits', 'mnist' or 'cifar10', got {name!r}")


def resize(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of ``[N, C, H, W]`` to ``size x size`` (digits' 8x8 -> 28x28 for the CSNN)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
