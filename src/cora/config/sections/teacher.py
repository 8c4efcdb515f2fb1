"""Pseudo-labelling: an OpenAI-compatible chat endpoint describes each view of a panorama.

``cora teach`` cuts every panorama into views (the config's ``image_processing``, with the
overrides below), asks the endpoint to describe each view, merges the answers into one
caption (labelled with the direction each view looks in) and writes a training CSV.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cora.config.base import StrictModel
from cora.config.sections.image import CropStrategy

DEFAULT_TILE_PROMPT = (
    "This is one view of a 360-degree panorama. Describe what is visible in it in one or two short "
    "sentences: the main objects, their colours and the setting. Do not guess beyond the image."
)
DEFAULT_MERGE_PROMPT = (
    "Below are descriptions of the views of one 360-degree panorama, each labelled with the direction it "
    "looks in, as seen by a viewer standing in the middle. Write one caption of the whole panorama in at most "
    "four sentences, keeping the directions (ahead, to the right, behind you, to the left). Reply with the "
    "caption only."
)


class TeacherConfig(StrictModel):
    """The teacher endpoint (any OpenAI-compatible server: Ollama, vLLM, ``cora serve``) and the prompts."""

    url: str = Field("http://localhost:11434/v1", description="base URL; POST {url}/chat/completions")
    model: str = Field("qwen2.5vl:7b", description="a vision-language model the endpoint serves")
    api_key_env: str = Field("OPENAI_API_KEY", description="env var holding the key; unset = no auth header")
    max_retries: int = Field(3, ge=0, description="retries on connection errors, timeouts, 429 and 5xx")
    timeout_s: float = Field(120.0, gt=0.0)
    retry_backoff_s: float = Field(1.0, ge=0.0, description="first retry delay, doubled each retry")
    concurrency: int = Field(4, ge=1, description="requests in flight")
    max_tokens: int = Field(200, ge=1, description="per answer")
    cache_dir: str | None = Field(None, description="answer cache (resume); default: <out CSV>.teacher_cache/")
    crop_strategy: CropStrategy | None = Field(
        None,
        description="views sent to the teacher: null = image_processing's crop_strategy (its fov, "
        "overlap, pitches), or any crop_strategy name (cubemap: 4 faces ahead/right/behind/left)",
    )
    image_size: int = Field(512, ge=32, description="side of each view sent to the teacher, pixels")
    include_global: bool = Field(False, description="also send the whole ERP (labelled 'overall')")
    image_format: Literal["jpeg", "png"] = "jpeg"
    jpeg_quality: int = Field(90, ge=1, le=100)
    tile_prompt: str = Field(DEFAULT_TILE_PROMPT, description="the question asked about each view")
    merge: Literal["directions", "llm"] = Field(
        "directions",
        description="directions: the views' answers joined as 'Ahead: … To the right: …'; llm: the "
        "endpoint rewrites those notes into one caption (merge_prompt)",
    )
    merge_prompt: str = DEFAULT_MERGE_PROMPT
    query: str = Field("Describe the panorama.", description="the query column of the written CSV")
