"""Training: overlap losses, stage-1 diagnostics, the language prior and the three-stage runner."""
