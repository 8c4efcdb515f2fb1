"""The demo recipe (``cora demo``): SynthPano data, the tiny-model kit, the two kit priors, the
three training stages, the same model trained blind, and a held-out comparison of both runs."""

from cora.recipes.demo.run import DemoOutcome, prepare_run, run_demo
from cora.recipes.demo.steps import DemoError

__all__ = ["DemoError", "DemoOutcome", "prepare_run", "run_demo"]
