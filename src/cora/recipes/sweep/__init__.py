"""The sweep recipe (``cora sweep``, ``cora report`` on a sweep): a base config, named rows of config
deltas and a list of seeds; every (row, seed) trained and measured on the test split as a normal run
folder, then one table with mean ± std over seeds and paired bootstrap comparisons against a reference row."""

from cora.recipes.sweep.aggregate import aggregate, render
from cora.recipes.sweep.run import RunOutcome, run_sweep
from cora.recipes.sweep.spec import SweepError, SweepSpec, load_sweep

__all__ = ["RunOutcome", "SweepError", "SweepSpec", "aggregate", "load_sweep", "render", "run_sweep"]
