"""The CORA model: vision backbone, resamplers, projectors, language model, fusion."""
