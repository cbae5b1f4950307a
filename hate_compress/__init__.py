"""hate_compress: distil, prune and quantize hate-speech classifiers (Lightning + Hydra).

Importing the package changes no warning or logging setting; a run applies the `extras` config
group for that (hate_compress/extras.py, conf/extras/default.yaml).
"""

__version__ = "0.1.0"
