"""fusedsnn: spiking neurons whose whole time loop runs as one fused kernel.

>>> import torch, fusedsnn as fs
>>> lif = fs.Leaky(beta=0.9)
>>> spk, mem = lif(torch.randn(25, 8, 100))     # x: [T, B, *features]
"""

from . import _moved, functional, memory, population, surrogate
from .backends import available_backends
from .graph_step import cuda_graph_step
from .interop import FusedSequential, export_to_nir, from_snntorch, fuse, import_from_nir, neurobench_model
from .layers import Leaky, LinearLeaky, RLeaky, RSynaptic, Synaptic
from .memory import memory_lean
from .models import CSNN, DSNN

_moved.register()

__version__ = "0.1.0"

__all__ = [
    "Leaky",
    "LinearLeaky",
    "Synaptic",
    "RLeaky",
    "RSynaptic",
    "from_snntorch",
    "fuse",
    "FusedSequential",
    "neurobench_model",
    "memory_lean",
    "memory",
    "DSNN",
    "CSNN",
    "export_to_nir",
    "import_from_nir",
    "population",
    "functional",
    "surrogate",
    "available_backends",
    "cuda_graph_step",
    "__version__",
]
