"""Data sets with no download: scikit-learn's digits (shipped in the package) by default, and
loaders for MNIST and CIFAR-10 files that the user already has on disk.

Every loader returns ``(images, labels)`` tensors: images float32 in [0, 1] shaped
``[N, C, H, W]``, labels int64 ``[N]``.

- ``digits``: 1,797 8x8 grey images of 10 digits (sklearn.datasets.load_digits, pixel values
  0..16 scaled to [0, 1]). A fixed, stratified-by-shuffle 80/20 split.
- ``mnist``: the four IDX files (``train-images-idx3-ubyte`` etc., optionally ``.gz``).
- ``cifar10``: the python-pickle batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``).

Event data sets are too large to hold as dense frames, so they load as an :class:`EventFrames`
object (binned on the fly, one batch at a time) with its labels tensor:

- ``shd`` / ``ssc``: the Spiking Heidelberg Digits / Spiking Speech Commands HDF5 files
  (``shd_train.h5``, ``shd_test.h5``; ``ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5``), read
  with h5py. Each sample's spikes (``spikes/times`` in seconds, ``spikes/units`` channel 0..699)
  become spike-count frames ``[T, 700]``: the first ``duration`` seconds (default 1.0) split into
  ``T`` equal bins, spike at time t into bin ``floor(t / duration * T)``; spikes at or after
  ``duration`` are dropped (SHD's recordings run up to ~1.4 s; pass ``duration=1.4`` to keep
  them all). Several spikes of one channel in one bin are kept as a count (float, may exceed 1).
- ``nmnist`` / ``dvsgesture``: read through tonic from the extracted folders
  (``NMNIST/Train/<digit>/*.bin``, ``DVSGesture/ibmGestureTrain/<user>_<lighting>/<label>.npy``),
  binned by ``tonic.transforms.ToFrame(n_time_bins=T)`` into integer counts ``[T, 2, H, W]``
  (int16; the models cast integer input to float32). tonic's bins end at the last event's
  timestamp, exclusive, so that one event is left out. tonic would download missing files: we
  check the folders first and refuse, and the tonic classes we use cannot download at all.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Iterator, Optional, Sequence

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


# ---------------------------------------------------------------------------------------------
# event data sets: binned to frames on the fly
# ---------------------------------------------------------------------------------------------

class EventFrames:
    """An event data set binned into ``num_steps`` frames per sample, one batch at a time.

    ``sample_shape``: one frame's shape (``(700,)`` for SHD, ``(2, 34, 34)`` for N-MNIST);
    ``labels``: int64 ``[N]``; ``num_classes``. ``self[i]`` -> ``(frames [T, *sample_shape], label)``;
    :meth:`batch` -> time-major ``[T, B, *sample_shape]``, what the models take.
    """

    sample_shape: tuple
    num_classes: int
    num_steps: int
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def frames(self, index: int) -> Tensor:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.frames(int(index)), int(self.labels[index])

    def batch(self, indices: Sequence[int] | Tensor) -> Tensor:
        """Samples ``indices`` stacked time-major: ``[T, B, *sample_shape]``."""
        indices = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        return torch.stack([self.frames(int(i)) for i in indices], dim=1)

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: Optional[torch.Generator] = None) -> Iterator[tuple[Tensor, Tensor]]:
        """``(x [T, B, *sample_shape], y [B])`` over the whole set; the last batch may be smaller."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            idx = order[start:start + batch_size]
            yield self.batch(idx), self.labels[idx]


#: name -> (file per split, number of classes, input channels)
SPIKING_AUDIO = {
    "shd": ({"train": "shd_train.h5", "test": "shd_test.h5"}, 20, 700),
    "ssc": ({"train": "ssc_train.h5", "valid": "ssc_valid.h5", "test": "ssc_test.h5"}, 35, 700),
}


def _positive(name: str, value, kind=int) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {value!r}")


class SpikingAudio(EventFrames):
    """SHD or SSC from the published HDF5 files in ``root``, binned to ``[T, 700]`` count frames
    (see the module docstring for the binning). ``split``: "train" or "test" (SSC also "valid").

    The file stays open; each sample's spikes are read when its frames are asked for.
    """

    def __init__(self, root: str | Path, name: str = "shd", split: str = "train", num_steps: int = 100,
                 duration: float = 1.0) -> None:
        try:
            import h5py  # optional: the `data` extra
        except ImportError:
            raise ImportError("reading SHD/SSC needs h5py: pip install 'fusedsnn[data]'") from None
        if name not in SPIKING_AUDIO:
            raise ValueError(f"name must be one of {sorted(SPIKING_AUDIO)}, got {name!r}")
        files, self.num_classes, channels = SPIKING_AUDIO[name]
        if split not in files:
            raise ValueError(f"split for {name} must be one of {sorted(files)}, got {split!r}")
        _positive("num_steps", num_steps)
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0:
            raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
        self.path = Path(root) / files[split]
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} not found; put the {name.upper()} HDF5 files there yourself "
                                    "(fusedsnn never downloads data)")
        self.name, self.num_steps, self.duration = name, num_steps, float(duration)
        self.sample_shape = (channels,)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise ValueError(f"{self.path} is not an HDF5 file ({err})") from None
        missing = [key for key in ("spikes/times", "spikes/units", "labels") if key not in self._file]
        if missing:
            raise ValueError(f"{self.path} lacks {', '.join(missing)}: expected the {name.upper()} layout "
                             "(spikes/times, spikes/units, labels)")
        self._times, self._units = self._file["spikes/times"], self._file["spikes/units"]
        labels = np.asarray(self._file["labels"][()])
        if labels.ndim != 1 or len(self._times) != len(labels) or len(self._units) != len(labels):
            raise ValueError(f"{self.path}: spikes/times ({len(self._times)}), spikes/units ({len(self._units)}) "
                             f"and labels {labels.shape} must have one entry per sample")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"{self.path}: labels must lie in 0..{self.num_classes - 1}, found "
                             f"{labels.min()}..{labels.max()}")
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def frames(self, index: int) -> Tensor:
        """Sample ``index`` as spike counts ``[T, 700]`` float32."""
        times = np.asarray(self._times[index], dtype=np.float64)
        units = np.asarray(self._units[index], dtype=np.int64)
        if times.shape != units.shape or times.ndim != 1:
            raise ValueError(f"{self.path}: sample {index} has {times.shape} times but {units.shape} units")
        if units.size and (units.min() < 0 or units.max() >= self.sample_shape[0]):
            raise ValueError(f"{self.path}: sample {index} has units outside 0..{self.sample_shape[0] - 1}")
        steps = np.floor(times / self.duration * self.num_steps).astype(np.int64)
        keep = (steps >= 0) & (steps < self.num_steps)
        out = torch.zeros(self.num_steps * self.sample_shape[0], dtype=torch.float32)
        flat = torch.from_numpy(steps[keep] * self.sample_shape[0] + units[keep])
        out.index_add_(0, flat, torch.ones(len(flat)))  # counts: several spikes in one bin add up
        return out.view(self.num_steps, self.sample_shape[0])

    def close(self) -> None:
        self._file.close()


#: name -> (tonic class name, extracted folder per split, what one event file ends with, classes)
TONIC_SETS = {
    "nmnist": ("NMNIST", {True: "Train", False: "Test"}, ".bin", 10),
    "dvsgesture": ("DVSGesture", {True: "ibmGestureTrain", False: "ibmGestureTest"}, ".npy", 11),
}


class TonicFrames(EventFrames):
    """N-MNIST or DVS Gesture through tonic from the extracted folder under ``root``, binned by
    ``tonic.transforms.ToFrame(n_time_bins=num_steps)`` into int16 counts ``[T, 2, H, W]``."""

    def __init__(self, root: str | Path, name: str = "nmnist", train: bool = True, num_steps: int = 25) -> None:
        if name not in TONIC_SETS:
            raise ValueError(f"name must be one of {sorted(TONIC_SETS)}, got {name!r}")
        _positive("num_steps", num_steps)
        cls_name, folders, suffix, self.num_classes = TONIC_SETS[name]
        # Checked before tonic sees the folder: tonic downloads whatever it does not find.
        folder = Path(root) / cls_name / folders[train]
        if not folder.is_dir() or next(folder.rglob(f"*{suffix}"), None) is None:
            raise FileNotFoundError(f"{folder} holds no {suffix} event files; extract the {cls_name} archives "
                                    f"under {Path(root)} yourself (fusedsnn never downloads data)")
        try:
            import tonic  # optional: the `data` extra
        except ImportError:
            raise ImportError(f"reading {cls_name} needs tonic: pip install 'fusedsnn[data]'") from None
        base = getattr(tonic.datasets, cls_name)

        def _refuse_download(ds) -> None:
            raise FileNotFoundError(f"{folder} is incomplete and fusedsnn never downloads data")

        # tonic's own check wants the zip archive and the full file count (10,000 .bin files for
        # N-MNIST) and downloads otherwise; the extracted folder is all we read.
        # Same class name: tonic reads from save_to/<class name>/.
        offline = type(cls_name, (base,), {"_check_exists": lambda ds: True,
                                                        "download": _refuse_download})
        w, h, p = base.sensor_size
        self.sample_shape = (p, h, w)
        self.num_steps, self.name = num_steps, name
        self._to_frame = tonic.transforms.ToFrame(sensor_size=base.sensor_size, n_time_bins=num_steps)
        self._set = offline(save_to=str(root), train=train)
        self.labels = torch.tensor(self._set.targets, dtype=torch.int64)
        if not len(self.labels):  # pragma: no cover - the folder check above found a file
            raise FileNotFoundError(f"tonic found no samples in {folder}")

    def frames(self, index: int) -> Tensor:
        """Sample ``index`` as event counts ``[T, 2, H, W]`` int16."""
        events, _ = self._set[index]
        frames = np.asarray(self._to_frame(events))
        if frames.shape[0] != self.num_steps:  # ToFrame gives fewer bins for very short recordings
            pad = np.zeros((self.num_steps - frames.shape[0], *frames.shape[1:]), dtype=frames.dtype)
            frames = np.concatenate([frames, pad])
        return torch.from_numpy(frames.astype(np.int16))


EVENT_SETS = (*SPIKING_AUDIO, *TONIC_SETS)


def load(name: str, root: str | Path | None = None, train: bool = True,
         num_steps: Optional[int] = None) -> tuple[Tensor | EventFrames, Tensor]:
    """``name`` in {"digits", "mnist", "cifar10", "shd", "ssc", "nmnist", "dvsgesture"}; ``root`` is
    required for all but digits. Event sets return an :class:`EventFrames` with ``num_steps``
    bins (default 100 for SHD/SSC, 25 for N-MNIST/DVS Gesture) instead of an images tensor."""
    if name == "digits":
        return load_digits(train)
    if root is None:
        raise ValueError(f"dataset {name!r} needs --data-root pointing at files you already have")
    if name == "mnist":
        return load_mnist(root, train)
    if name == "cifar10":
        return load_cifar10(root, train)
    if name in SPIKING_AUDIO:
        frames = SpikingAudio(root, name, "train" if train else "test", num_steps or 100)
        return frames, frames.labels
    if name in TONIC_SETS:
        frames = TonicFrames(root, name, train, num_steps or 25)
        return frames, frames.labels
    raise ValueError(f"dataset must be one of 'digits', 'mnist', 'cifar10', {', '.join(map(repr, EVENT_SETS))}; "
                     f"got {name!r}")


def resize(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of ``[N, C, H, W]`` to ``size x size`` (digits' 8x8 -> 28x28 for the CSNN)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
