"""The demo recipe (``cora demo``): SynthPano data, the tiny-model kit, the two kit priors, the
three training stages, the same model trained blind, and a held-out comparison of both runs."""
