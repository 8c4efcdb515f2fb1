"""Training: the stage engine (runner, LightningModule, checkpoints, callbacks, loggers), overlap losses and
stage-1 diagnostics. Recipes built on it (the demo) live in :mod:`cora.recipes`."""
