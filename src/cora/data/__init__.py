"""Datasets: CSV/JSONL readers with bad-row accounting (SPEC §6), the torch Dataset and
DataModule, and SynthPano, the built-in synthetic 360° dataset with known answers."""
