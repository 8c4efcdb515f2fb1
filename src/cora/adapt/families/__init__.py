"""Registry of off-the-shelf VLM families (one file each)."""

from __future__ import annotations

from cora.adapt.families.base import AdaptConfigError, VLMFamily
from cora.adapt.families.blip2 import Blip2Family
from cora.adapt.families.gemma3 import Gemma3Family
from cora.adapt.families.internvl import InternVLFamily
from cora.adapt.families.qwen2_5_vl import Qwen2_5VLFamily
from cora.adapt.families.qwen3_vl import Qwen3VLFamily

FAMILIES: dict[str, type[VLMFamily]] = {
    Qwen2_5VLFamily.name: Qwen2_5VLFamily,
    InternVLFamily.name: InternVLFamily,
    Gemma3Family.name: Gemma3Family,
    Blip2Family.name: Blip2Family,
    Qwen3VLFamily.name: Qwen3VLFamily,
}


def get_family(name: str) -> VLMFamily:
    """The family called ``name``; unknown names list the valid ones."""
    if name not in FAMILIES:
        raise AdaptConfigError(f"adapt.family {name!r} is unknown; valid: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]()


__all__ = ["FAMILIES", "AdaptConfigError", "VLMFamily", "get_family"]
