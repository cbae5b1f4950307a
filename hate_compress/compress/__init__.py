"""Compression: pruning and quantization methods, their Lightning callbacks, and measurements.

Importing the package registers the restorers that let `load_classifier` rebuild pruned and
quantized models from safetensors.
"""

from hate_compress.compress import (  # noqa: F401
    onnx_export,
    pruning,
    pruning_structured,
    quantization,
)
