"""The CORA model: vision backbone, resamplers, projectors, language model, fusion."""

from cora.model import hf  # noqa: F401  (registers model_type "cora" with transformers' Auto classes)
from cora.model.build import build_model, load_model, save_model
from cora.model.vlm import PanoramaOutput, PanoramaVLM, VisionFeatures

__all__ = ["PanoramaOutput", "PanoramaVLM", "VisionFeatures", "build_model", "load_model", "save_model"]
