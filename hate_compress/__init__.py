"""hate_compress: distil, prune and quantize hate-speech classifiers (Lightning + Hydra)."""

import logging as _logging
import warnings as _warnings

# torchao (imported by transformers and our quantizers) warns at import about GPU-only kernels
# and enum registrations that cannot matter on a CPU machine; they only bury real messages.
for _name in ("torchao", "torchao.kernel.intmm", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates, once per fit; not ours to fix
_warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

__version__ = "0.1.0"
