"""Compression: `pruning` and `quantization`, each a package of methods registered by name.

`steps` (a leaf) records what was done to a model and keeps the registry of restorers that let
`load_classifier` rebuild a pruned or quantized architecture before loading its safetensors.
Importing `pruning` or `quantization` registers all of its methods and their restorers; this
`__init__` imports neither, so importing the leaf `steps` stays cheap and cycle-free.
"""
