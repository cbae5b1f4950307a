"""Compression: `pruning` and `quantization`, each a package of methods registered by name.

`hate_compress.compression_steps` (a leaf beside this package, not in it, so neither
sub-package imports its own parent) records what was done to a model and keeps the registry of
restorers that let `load_classifier` rebuild a pruned or quantized architecture before loading
its safetensors. Importing `pruning` or `quantization` registers all of its methods and their
restorers; this `__init__` imports neither.
"""
