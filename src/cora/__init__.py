"""CORA: Contrastive Overlap Representation Alignment for 360° panoramas."""

__version__ = "0.1.0"
