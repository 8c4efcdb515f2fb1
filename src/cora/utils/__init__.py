"""Small leaf helpers shared by every package (no cora imports here)."""
