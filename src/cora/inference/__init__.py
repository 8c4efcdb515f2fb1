"""Inference: :class:`PanoramaGenerator` (batch and streaming generation with a trained model), the
:class:`AnswerGenerator` protocol the server and evaluation use, and :class:`GeneratorBase`, the generation
loop every generator shares."""

from cora.inference.base import GeneratorBase
from cora.inference.decoding import DecodingOptions
from cora.inference.generator import PanoramaGenerator
from cora.inference.protocols import (
    AnswerGenerator,
    BatchGenerator,
    Conversation,
    GeneratorInfo,
    Prompt,
    UnsupportedPrompt,
)

__all__ = [
    "AnswerGenerator",
    "BatchGenerator",
    "Conversation",
    "DecodingOptions",
    "GeneratorBase",
    "GeneratorInfo",
    "PanoramaGenerator",
    "Prompt",
    "UnsupportedPrompt",
]
