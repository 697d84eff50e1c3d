"""Other libraries' models in and out: snnTorch neurons and networks (``from_snntorch``,
``fuse``) and the Neuromorphic Intermediate Representation (``export_to_nir``,
``import_from_nir``), and NeuroBench's workload metrics for fused models (``neurobench_model``)."""

from .fuse import FusedSequential, fuse
from .neurobench import neurobench_model
from .nir import export_to_nir, import_from_nir
from .snntorch import from_snntorch

__all__ = ["FusedSequential", "fuse", "from_snntorch", "export_to_nir", "import_from_nir", "neurobench_model"]
