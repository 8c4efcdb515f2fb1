"""Datasets: CSV/JSONL readers with bad-row accounting, the torch Dataset and
DataModule, and SynthPano, the built-in synthetic 360° dataset with known answers."""
