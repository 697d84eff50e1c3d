"""``fusedsnn train``: train the study's DSNN or CSNN from the command line (:mod:`fusedsnn.train`).

The embedded default needs no download: scikit-learn's digits. MNIST and CIFAR-10 load from
local files given with ``--data-root``, and so do the event sets: SHD/SSC (HDF5, a recurrent
network 700 -> all-to-all RLeaky -> Leaky readout) and N-MNIST/DVS Gesture (through tonic, the
CSNN on the frames).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from typing import Optional

import torch

from .. import data as data_mod
from ..models import NEURONS
from .. import train
from .args import UsageError, device_name, non_negative_int, positive_float, positive_int, writable_file

Tensor = torch.Tensor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=["dsnn", "csnn"], default=None,
                        help="network to train (default: dsnn; csnn for nmnist and dvsgesture)")
    parser.add_argument("--dataset", choices=["digits", "mnist", "cifar10", *data_mod.EVENT_SETS], default="digits",
                        help="digits ships with scikit-learn; the others need --data-root")
    parser.add_argument("--data-root", default=None,
                        help="folder with the MNIST IDX files, the CIFAR-10 python batches, the SHD/SSC .h5 "
                             "files, or the extracted NMNIST/ or DVSGesture/ folder's parent (never downloaded)")
    parser.add_argument("--epochs", type=positive_int, default=5, help="passes over the training set")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="images per training step")
    parser.add_argument("--num-steps", type=positive_int, default=None,
                        help="time steps per image, or time bins per event sample (default: 25, or 100 for "
                             "shd and ssc; with --population-study: the 10-output baseline's steps)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="AdamW learning rate (default: 2e-3, or 1e-2 with --population-study)")
    parser.add_argument("--hidden", type=positive_int, default=None,
                        help="DSNN hidden width (default: 1000, or 256 for shd and ssc; the CSNN's layers are fixed)")
    parser.add_argument("--neuron", choices=NEURONS, default=None,
                        help="neuron model of every layer (default: leaky; for shd and ssc the hidden layer's, "
                             "default rleaky_all_to_all, read out by leaky neurons)")
    parser.add_argument("--pop-size", type=positive_int, default=1,
                        help="output neurons per class (--population-study sweeps it itself)")
    parser.add_argument("--loss", choices=["ce_rate", "mse_count"], default="ce_rate",
                        help="rate-coded cross-entropy or spike-count MSE")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of weights and batch order")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="autocast dtype for the forward")
    parser.add_argument("--population-study", action="store_true",
                        help="run the population-code experiment (10 outputs over --num-steps steps against "
                             "10..1000 outputs in 1 step) instead of one training")
    parser.add_argument("--json", type=writable_file, default=None, help="write the results to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_arguments(args: argparse.Namespace) -> None:
    """Combinations argparse cannot check by itself; raises cli.UsageError naming the argument.
    Fills the defaults that depend on --dataset (model, neuron, readout, hidden, num_steps)."""
    audio = args.dataset in data_mod.SPIKING_AUDIO
    if args.model is None:
        args.model = "csnn" if args.dataset in data_mod.TONIC_SETS else "dsnn"
    if audio and args.model == "csnn":
        raise UsageError(f"--model csnn takes image frames; --dataset {args.dataset} gives 700 channels per step, "
                         "use --model dsnn")
    if args.dataset in data_mod.EVENT_SETS and args.population_study:
        raise UsageError(f"--population-study compares 1-step outputs on the 10-class image sets; --dataset "
                         f"{args.dataset} is an event set with its own time bins")
    args.readout_neuron = "leaky" if audio else None
    if args.neuron is None:
        args.neuron = "rleaky_all_to_all" if audio else "leaky"
    if args.num_steps is None:
        args.num_steps = 100 if audio else 25
    if args.model == "csnn" and args.hidden is not None:
        raise UsageError("--hidden sets the DSNN's hidden width; --model csnn has fixed layers "
                         "(5C12-MP2-5C64-MP2), so it would be ignored")
    if args.hidden is None:
        args.hidden = 256 if audio else 1000
    if args.population_study and args.pop_size != 1:
        raise UsageError("--pop-size cannot be combined with --population-study, which sweeps the outputs itself")
    if args.dataset == "digits":
        if args.data_root is not None:
            raise UsageError("--data-root is for the data sets read from files; digits ship with scikit-learn")
        return
    if args.data_root is None:
        raise UsageError(f"--dataset {args.dataset} needs --data-root DIR with the files you already have "
                         "(fusedsnn never downloads data)")
    if not os.path.isdir(args.data_root):
        raise UsageError(f"--data-root {args.data_root!r} is not a folder")


def _load_data(dataset: str, data_root: Optional[str], num_steps: int) -> tuple:
    """Train and test splits (images ``[N, C, H, W]`` or :class:`data.EventFrames` binned to
    ``num_steps``); a missing or malformed file is a usage error, not a traceback."""
    try:
        x_train, y_train = data_mod.load(dataset, data_root, train=True, num_steps=num_steps)
        x_test, y_test = data_mod.load(dataset, data_root, train=False, num_steps=num_steps)
    except ImportError as err:  # h5py or tonic missing: the `data` extra
        raise UsageError(f"--dataset {dataset}: {err}") from None
    except (FileNotFoundError, ValueError, OSError, EOFError, pickle.UnpicklingError) as err:
        raise UsageError(f"--data-root {data_root!r}: {err}") from None
    return x_train, y_train, x_test, y_test


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    autocast = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.precision]
    data = _load_data(args.dataset, args.data_root, args.num_steps)
    start = time.perf_counter()
    if args.population_study:
        rows = train.population_study(epochs=args.epochs, model_name=args.model, dataset=args.dataset,
                                data_root=args.data_root, hidden=args.hidden, device=args.device,
                                progress=not args.no_progress, batch_size=args.batch_size,
                                baseline_steps=args.num_steps, neuron=args.neuron, loss=args.loss,
                                seed=args.seed, autocast_dtype=autocast, data=data,
                                **({} if args.lr is None else {"lr": args.lr}))
        result = {"population_study": rows}
        for row in rows:
            print(f"{row['outputs']:>5} outputs {row['num_steps']:>2} step(s): test acc {row['test_acc']:.3f}  "
                  f"{row['images_per_s']:.0f} images/s")
        best = max(rows, key=lambda r: r["test_acc"])
        print(f"done: population study, {len(rows)} trainings of {args.epochs} epoch(s) in "
              f"{time.perf_counter() - start:.1f} s; best test acc {best['test_acc']:.3f} "
              f"({best['outputs']} outputs, {best['num_steps']} step(s))")
    else:
        result = train.fit(args.model, args.dataset, args.data_root, args.epochs, args.batch_size, args.num_steps,
                     2e-3 if args.lr is None else args.lr, args.hidden, args.neuron, args.pop_size, args.loss,
                     args.device, args.seed, progress=not args.no_progress, autocast_dtype=autocast, data=data,
                     readout_neuron=args.readout_neuron)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
        print(f"results written to {args.json}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
