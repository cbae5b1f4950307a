"""`python -m hate_compress.sweep [overrides]`: the same app as `python -m hate_compress`, with
`hparams_search=kd_optuna` unless the command line picks another search."""

import runpy
import sys

if __name__ == "__main__":
    if not any(a.startswith(("hparams_search=", "+hparams_search=")) for a in sys.argv[1:]):
        sys.argv.insert(1, "hparams_search=kd_optuna")
    # run as __main__ (not imported): Hydra finds ../conf relative to the file only then
    runpy.run_module("hate_compress", run_name="__main__", alter_sys=True)
