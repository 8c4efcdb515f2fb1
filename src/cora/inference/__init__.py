"""Inference: :class:`PanoramaGenerator` (batch and streaming generation with a trained model)."""

from cora.inference.generator import DecodingOptions, PanoramaGenerator

__all__ = ["DecodingOptions", "PanoramaGenerator"]
